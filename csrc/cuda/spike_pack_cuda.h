// Entry points of the CUDA pack/unpack kernels (spike_pack_cuda.cu), callable from plain C++:
// no torch header, no CUDA header beyond the runtime API's cudaStream_t / cudaError_t.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "lif_cuda.h"  // half_bits, bf16_bits

namespace sltt {
namespace cuda {

// Blocks of the pack kernel for n elements, and the bytes of device scratch it needs (one range
// per block; wide: the float64 input, whose range is kept in double).
int64_t pack_cuda_blocks(int64_t n);
int64_t pack_cuda_scratch_bytes(int64_t n, bool wide);

// x: n elements; bits: ceil(n / 32) int32 words; scratch: pack_cuda_scratch_bytes(n, ...)
// bytes; scale: one element, written on the device (NaN when x is not two-valued). Each
// returns cudaGetLastError() after its launches on `stream`.
cudaError_t spike_pack_cuda(const float* x, int64_t n, int32_t* bits, void* scratch, float* scale, cudaStream_t s);
cudaError_t spike_pack_cuda(const double* x, int64_t n, int32_t* bits, void* scratch, double* scale, cudaStream_t s);
cudaError_t spike_pack_cuda(const half_bits* x, int64_t n, int32_t* bits, void* scratch, half_bits* scale,
                            cudaStream_t s);
cudaError_t spike_pack_cuda(const bf16_bits* x, int64_t n, int32_t* bits, void* scratch, bf16_bits* scale,
                            cudaStream_t s);

// out[i] = bit i ? *scale : +0.0 for i < n.
cudaError_t spike_unpack_cuda(const int32_t* bits, const float* scale, int64_t n, float* out, cudaStream_t s);
cudaError_t spike_unpack_cuda(const int32_t* bits, const double* scale, int64_t n, double* out, cudaStream_t s);
cudaError_t spike_unpack_cuda(const int32_t* bits, const half_bits* scale, int64_t n, half_bits* out,
                              cudaStream_t s);
cudaError_t spike_unpack_cuda(const int32_t* bits, const bf16_bits* scale, int64_t n, bf16_bits* out,
                              cudaStream_t s);

}  // namespace cuda
}  // namespace sltt
