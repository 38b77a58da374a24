// Spike pack/unpack kernels for CUDA GPUs (the math of spike_pack.h). No torch header: `nvcc -c`
// compiles this file alone; the glue is spike_pack_cuda.cpp.
//
// Pack: one thread per element. A warp ballot gives one word per warp (bit j = lane j = element
// 32 w + j, the CPU layout); the range of nonzero values is reduced per warp with shuffles, then
// per block through shared memory, and each block writes its range to a scratch array. A second,
// single-block kernel merges those ranges into the scale, so the host never waits.
// Unpack: one thread per element, the scale read on the device. Indices are 64-bit.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "../spike_pack.h"
#include "spike_pack_cuda.h"

namespace sltt {
namespace cuda {

namespace {

constexpr int kThreads = 256;  // a multiple of 32: warps never straddle two blocks
constexpr int kWarps = kThreads / 32;

__device__ __forceinline__ float to_range(float x) { return x; }
__device__ __forceinline__ double to_range(double x) { return x; }
__device__ __forceinline__ float to_range(half_bits x) { return __half2float(__ushort_as_half(x.bits)); }
__device__ __forceinline__ float to_range(bf16_bits x) { return __bfloat162float(__ushort_as_bfloat16(x.bits)); }

__device__ __forceinline__ float from_range(float s, float*) { return s; }
__device__ __forceinline__ double from_range(double s, double*) { return s; }
__device__ __forceinline__ half_bits from_range(float s, half_bits*) {
  return half_bits{__half_as_ushort(__float2half_rn(s))};  // s is a value of x: exact
}
__device__ __forceinline__ bf16_bits from_range(float s, bf16_bits*) {
  return bf16_bits{__bfloat16_as_ushort(__float2bfloat16_rn(s))};
}

template <typename S>
__device__ __forceinline__ pack::Range<S> warp_merge(pack::Range<S> r) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    pack::Range<S> o;
    o.lo = __shfl_xor_sync(0xffffffffu, r.lo, offset);
    o.hi = __shfl_xor_sync(0xffffffffu, r.hi, offset);
    o.bad = __shfl_xor_sync(0xffffffffu, int(r.bad), offset) != 0;
    r = pack::range_merge(r, o);
  }
  return r;
}

// The block's range merged into lane 0 of warp 0.
template <typename S>
__device__ __forceinline__ pack::Range<S> block_merge(pack::Range<S> r) {
  __shared__ S lo[kWarps];
  __shared__ S hi[kWarps];
  __shared__ int bad[kWarps];
  r = warp_merge(r);
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (lane == 0) {
    lo[warp] = r.lo;
    hi[warp] = r.hi;
    bad[warp] = int(r.bad);
  }
  __syncthreads();
  r = pack::range_empty<S>();
  if (warp == 0) {
    if (lane < kWarps) r = pack::Range<S>{lo[lane], hi[lane], bad[lane] != 0};
    r = warp_merge(r);
  }
  return r;
}

template <typename X, typename S>
__global__ void __launch_bounds__(kThreads) pack_kernel(const X* __restrict x, int64_t n, int32_t* __restrict bits,
                                                        S* __restrict block_lo, S* __restrict block_hi,
                                                        int* __restrict block_bad) {
  const int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  // every lane takes part in the ballot and the shuffles; lanes past n add nothing
  pack::Range<S> r = pack::range_empty<S>();
  bool bit = false;
  if (i < n) {
    const S v = to_range(x[i]);
    bit = pack::spike_bit(v);
    pack::range_add(r, v);
  }
  const unsigned word = __ballot_sync(0xffffffffu, bit);
  if ((threadIdx.x & 31) == 0 && i < n) bits[i >> 5] = int32_t(word);
  r = block_merge(r);
  if (threadIdx.x == 0) {
    block_lo[blockIdx.x] = r.lo;
    block_hi[blockIdx.x] = r.hi;
    block_bad[blockIdx.x] = int(r.bad);
  }
}

template <typename X, typename S>
__global__ void __launch_bounds__(kThreads) scale_kernel(const S* __restrict block_lo, const S* __restrict block_hi,
                                                         const int* __restrict block_bad, int64_t blocks,
                                                         X* __restrict scale) {
  pack::Range<S> r = pack::range_empty<S>();
  for (int64_t b = threadIdx.x; b < blocks; b += kThreads)
    r = pack::range_merge(r, pack::Range<S>{block_lo[b], block_hi[b], block_bad[b] != 0});
  r = block_merge(r);
  if (threadIdx.x == 0) *scale = from_range(pack::range_scale(r), static_cast<X*>(nullptr));
}

template <typename X>
__global__ void __launch_bounds__(kThreads) unpack_kernel(const int32_t* __restrict bits, const X* __restrict scale,
                                                          int64_t n, X* __restrict out) {
  const int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (i >= n) return;
  const X s = *scale;
  X zero;
  memset(&zero, 0, sizeof zero);  // +0.0 in every float format
  out[i] = pack::unpack_bit(bits, i) ? s : zero;
}

template <typename X, typename S>
cudaError_t launch_pack(const X* x, int64_t n, int32_t* bits, void* scratch, X* scale, cudaStream_t stream) {
  const int64_t blocks = pack_cuda_blocks(n);
  S* lo = static_cast<S*>(scratch);
  S* hi = lo + blocks;
  int* bad = reinterpret_cast<int*>(hi + blocks);
  if (n > 0) pack_kernel<X, S><<<unsigned(blocks), kThreads, 0, stream>>>(x, n, bits, lo, hi, bad);
  scale_kernel<X, S><<<1, kThreads, 0, stream>>>(lo, hi, bad, blocks, scale);
  return cudaGetLastError();
}

template <typename X>
cudaError_t launch_unpack(const int32_t* bits, const X* scale, int64_t n, X* out, cudaStream_t stream) {
  if (n > 0) unpack_kernel<X><<<unsigned((n + kThreads - 1) / kThreads), kThreads, 0, stream>>>(bits, scale, n, out);
  return cudaGetLastError();
}

}  // namespace

int64_t pack_cuda_blocks(int64_t n) { return (n + kThreads - 1) / kThreads; }

int64_t pack_cuda_scratch_bytes(int64_t n, bool wide) {
  const int64_t blocks = pack_cuda_blocks(n);
  return blocks * (2 * int64_t(wide ? sizeof(double) : sizeof(float)) + int64_t(sizeof(int)));
}

cudaError_t spike_pack_cuda(const float* x, int64_t n, int32_t* bits, void* scratch, float* scale, cudaStream_t s) {
  return launch_pack<float, float>(x, n, bits, scratch, scale, s);
}
cudaError_t spike_pack_cuda(const double* x, int64_t n, int32_t* bits, void* scratch, double* scale, cudaStream_t s) {
  return launch_pack<double, double>(x, n, bits, scratch, scale, s);
}
cudaError_t spike_pack_cuda(const half_bits* x, int64_t n, int32_t* bits, void* scratch, half_bits* scale,
                            cudaStream_t s) {
  return launch_pack<half_bits, float>(x, n, bits, scratch, scale, s);
}
cudaError_t spike_pack_cuda(const bf16_bits* x, int64_t n, int32_t* bits, void* scratch, bf16_bits* scale,
                            cudaStream_t s) {
  return launch_pack<bf16_bits, float>(x, n, bits, scratch, scale, s);
}

cudaError_t spike_unpack_cuda(const int32_t* bits, const float* scale, int64_t n, float* out, cudaStream_t s) {
  return launch_unpack(bits, scale, n, out, s);
}
cudaError_t spike_unpack_cuda(const int32_t* bits, const double* scale, int64_t n, double* out, cudaStream_t s) {
  return launch_unpack(bits, scale, n, out, s);
}
cudaError_t spike_unpack_cuda(const int32_t* bits, const half_bits* scale, int64_t n, half_bits* out,
                              cudaStream_t s) {
  return launch_unpack(bits, scale, n, out, s);
}
cudaError_t spike_unpack_cuda(const int32_t* bits, const bf16_bits* scale, int64_t n, bf16_bits* out,
                              cudaStream_t s) {
  return launch_unpack(bits, scale, n, out, s);
}

}  // namespace cuda
}  // namespace sltt
