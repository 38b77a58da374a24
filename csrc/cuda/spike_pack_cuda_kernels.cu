// Spike pack/unpack kernels for CUDA GPUs (the math of spike_pack.h). No torch header: `nvcc -c`
// compiles this file alone; the glue is spike_pack_cuda.cpp.
//
// Pack: one thread per element, on the elements' bit patterns (spike_pack.h). A warp ballot gives
// one word per warp (bit j = lane j = element 32 w + j, the CPU layout); the OR and AND of the
// nonzero patterns are reduced per warp with shuffles, then per block through shared memory, and
// each block writes its pair to a scratch array. A second, single-block kernel merges the pairs
// into the scale, so the host never waits. Unpack: one thread per element, the scale read on the
// device. Indices are 64-bit.
#include <cuda_runtime.h>

#include "../spike_pack.h"
#include "spike_pack_cuda.h"

namespace sltt {
namespace cuda {

namespace {

constexpr int kThreads = 256;  // a multiple of 32: warps never straddle two blocks
constexpr int kWarps = kThreads / 32;

// Shuffles move 32- or 64-bit values; 16-bit patterns travel widened.
__device__ __forceinline__ uint16_t shfl_xor(uint16_t v, int m) {
  return uint16_t(__shfl_xor_sync(0xffffffffu, unsigned(v), m));
}
__device__ __forceinline__ uint32_t shfl_xor(uint32_t v, int m) { return __shfl_xor_sync(0xffffffffu, v, m); }
__device__ __forceinline__ uint64_t shfl_xor(uint64_t v, int m) {
  return uint64_t(__shfl_xor_sync(0xffffffffu, (unsigned long long)v, m));
}

template <typename U>
__device__ __forceinline__ pack::Patterns<U> warp_merge(pack::Patterns<U> p) {
  for (int offset = 16; offset > 0; offset >>= 1)
    p = pack::patterns_merge(p, pack::Patterns<U>{shfl_xor(p.any, offset), shfl_xor(p.all, offset)});
  return p;
}

// The block's pair merged into thread 0.
template <typename U>
__device__ __forceinline__ pack::Patterns<U> block_merge(pack::Patterns<U> p) {
  __shared__ U any[kWarps];
  __shared__ U all[kWarps];
  p = warp_merge(p);
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (lane == 0) {
    any[warp] = p.any;
    all[warp] = p.all;
  }
  __syncthreads();
  p = pack::patterns_empty<U>();
  if (warp == 0) {
    if (lane < kWarps) p = pack::Patterns<U>{any[lane], all[lane]};
    p = warp_merge(p);
  }
  return p;
}

template <typename U>
__global__ void __launch_bounds__(kThreads) pack_kernel(const U* __restrict x, int64_t n, int32_t* __restrict bits,
                                                        U* __restrict block_any, U* __restrict block_all) {
  const int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  // every lane takes part in the ballot and the shuffles; lanes past n add nothing
  pack::Patterns<U> p = pack::patterns_empty<U>();
  const U u = i < n ? x[i] : U(0);
  pack::patterns_add(p, u);
  const unsigned word = __ballot_sync(0xffffffffu, u != U(0));
  if ((threadIdx.x & 31) == 0 && i < n) bits[i >> 5] = int32_t(word);
  p = block_merge(p);
  if (threadIdx.x == 0) {
    block_any[blockIdx.x] = p.any;
    block_all[blockIdx.x] = p.all;
  }
}

template <typename U>
__global__ void __launch_bounds__(kThreads) scale_kernel(const U* __restrict block_any, const U* __restrict block_all,
                                                         int64_t blocks, U one, U nan, U* __restrict scale) {
  pack::Patterns<U> p = pack::patterns_empty<U>();
  for (int64_t b = threadIdx.x; b < blocks; b += kThreads)
    p = pack::patterns_merge(p, pack::Patterns<U>{block_any[b], block_all[b]});
  p = block_merge(p);
  if (threadIdx.x == 0) *scale = pack::scale_pattern(p, one, nan);
}

template <typename U>
__global__ void __launch_bounds__(kThreads) unpack_kernel(const int32_t* __restrict bits, const U* __restrict scale,
                                                          int64_t n, U* __restrict out) {
  const int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (i >= n) return;
  out[i] = pack::unpack_bit(bits, i) ? *scale : U(0);
}

template <typename U>
cudaError_t launch_pack(const U* x, int64_t n, int32_t* bits, void* scratch, U one, U nan, U* scale,
                        cudaStream_t stream) {
  const int64_t blocks = pack_cuda_blocks(n);
  U* any = static_cast<U*>(scratch);
  U* all = any + blocks;
  if (n > 0) pack_kernel<U><<<unsigned(blocks), kThreads, 0, stream>>>(x, n, bits, any, all);
  scale_kernel<U><<<1, kThreads, 0, stream>>>(any, all, blocks, one, nan, scale);
  return cudaGetLastError();
}

template <typename U>
cudaError_t launch_unpack(const int32_t* bits, const U* scale, int64_t n, U* out, cudaStream_t stream) {
  if (n > 0) unpack_kernel<U><<<unsigned((n + kThreads - 1) / kThreads), kThreads, 0, stream>>>(bits, scale, n, out);
  return cudaGetLastError();
}

}  // namespace

int64_t pack_cuda_blocks(int64_t n) { return (n + kThreads - 1) / kThreads; }

int64_t pack_cuda_scratch_bytes(int64_t n, int64_t pattern_bytes) { return pack_cuda_blocks(n) * 2 * pattern_bytes; }

#define SLTT_PACK_ENTRY(U)                                                                                        \
  cudaError_t spike_pack_cuda(const U* x, int64_t n, int32_t* bits, void* scratch, U one, U nan, U* scale,       \
                              cudaStream_t s) {                                                                   \
    return launch_pack<U>(x, n, bits, scratch, one, nan, scale, s);                                              \
  }                                                                                                               \
  cudaError_t spike_unpack_cuda(const int32_t* bits, const U* scale, int64_t n, U* out, cudaStream_t s) {        \
    return launch_unpack<U>(bits, scale, n, out, s);                                                              \
  }
SLTT_PACK_ENTRY(uint16_t)
SLTT_PACK_ENTRY(uint32_t)
SLTT_PACK_ENTRY(uint64_t)
#undef SLTT_PACK_ENTRY

}  // namespace cuda
}  // namespace sltt
