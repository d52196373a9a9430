// Published Williamson-type quadruples (internal data).
#ifndef QUANTD_KERNELS_CPU_WILLIAMSON_TABLE_H_
#define QUANTD_KERNELS_CPU_WILLIAMSON_TABLE_H_

#include <array>
#include <cstdint>

namespace quantd::kernels {

// First rows of four circulant n×n ±1 matrices A, B, C, D with
// A·Aᵀ + B·Bᵀ + C·Cᵀ + D·Dᵀ = 4n·I, written as '+'/'-' strings. Returns nullptr when the table
// has no quadruple for n.
const std::array<const char*, 4>* WilliamsonQuadruple(int64_t n);

}  // namespace quantd::kernels

#endif  // QUANTD_KERNELS_CPU_WILLIAMSON_TABLE_H_
