// What the CUDA twins of the kernels share: availability and the element types they take.
//
// CUDA entry points (kernels/*.h, suffix Cuda) work on device pointers, enqueue on `stream` (a
// cudaStream_t; nullptr = the legacy default stream), check the launch, and return an empty
// string on success or the CUDA error text. They do not synchronise. In a build without nvcc
// they return "built without CUDA". They never include LibTorch.
#ifndef QUANTD_KERNELS_DEVICE_H_
#define QUANTD_KERNELS_DEVICE_H_

namespace quantd::kernels {

// True when this build has the CUDA kernels and a CUDA device is visible.
bool CudaKernelsAvailable();

// Free and total bytes of visible CUDA device `index` (cudaMemGetInfo; the current device is
// restored). False without CUDA, for a bad index or on any CUDA error.
bool CudaMemoryInfo(int index, long long* free_bytes, long long* total_bytes);  // NOLINT

// Element type of a raw device buffer. Arithmetic is fp32 for every type.
enum class DeviceDType { kFloat32, kFloat16, kBFloat16 };

}  // namespace quantd::kernels

#endif  // QUANTD_KERNELS_DEVICE_H_
