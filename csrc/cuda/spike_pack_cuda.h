// Entry points of the CUDA pack/unpack kernels (spike_pack_cuda_kernels.cu), callable from plain C++:
// no torch header, no CUDA header beyond the runtime API's cudaStream_t / cudaError_t.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>


namespace sltt {
namespace cuda {

// Blocks of the pack kernel for n elements, and the bytes of device scratch it needs (two
// patterns per block).
int64_t pack_cuda_blocks(int64_t n);
int64_t pack_cuda_scratch_bytes(int64_t n, int64_t pattern_bytes);

// The kernels see only bit patterns U: uint16_t (float16, bfloat16), uint32_t (float32),
// uint64_t (float64). x: n elements; bits: ceil(n / 32) int32 words; scratch:
// pack_cuda_scratch_bytes(n, sizeof(U)) bytes; one, nan: the dtype's 1.0 and NaN; scale: one
// element, written on the device (nan when x is not two-valued). Each returns cudaGetLastError()
// after its launches on `stream`.
cudaError_t spike_pack_cuda(const uint16_t* x, int64_t n, int32_t* bits, void* scratch, uint16_t one, uint16_t nan,
                            uint16_t* scale, cudaStream_t s);
cudaError_t spike_pack_cuda(const uint32_t* x, int64_t n, int32_t* bits, void* scratch, uint32_t one, uint32_t nan,
                            uint32_t* scale, cudaStream_t s);
cudaError_t spike_pack_cuda(const uint64_t* x, int64_t n, int32_t* bits, void* scratch, uint64_t one, uint64_t nan,
                            uint64_t* scale, cudaStream_t s);

// out[i] = bit i ? *scale : 0 for i < n.
cudaError_t spike_unpack_cuda(const int32_t* bits, const uint16_t* scale, int64_t n, uint16_t* out, cudaStream_t s);
cudaError_t spike_unpack_cuda(const int32_t* bits, const uint32_t* scale, int64_t n, uint32_t* out, cudaStream_t s);
cudaError_t spike_unpack_cuda(const int32_t* bits, const uint64_t* scale, int64_t n, uint64_t* out, cudaStream_t s);

}  // namespace cuda
}  // namespace sltt
