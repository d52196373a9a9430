// Conversions between LibTorch dtypes and safetensors dtypes (dtype names: model/dtype_names.h).
#ifndef QUANTD_WORKER_EXPORT_TENSOR_IO_H_
#define QUANTD_WORKER_EXPORT_TENSOR_IO_H_

#include <torch/torch.h>

#include "worker/model/safetensors_header.h"

namespace quantd::exporter {

// F32, F16, BF16, I32, I8, U8 (others map to F32; callers pass only these).
model::StDType StDTypeOf(torch::ScalarType dtype);

}  // namespace quantd::exporter

#endif  // QUANTD_WORKER_EXPORT_TENSOR_IO_H_
