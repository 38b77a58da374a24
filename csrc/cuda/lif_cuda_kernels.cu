// Fused LIF kernels for CUDA GPUs. No torch header: `nvcc -c` compiles this file alone.
//
// One thread per neuron loops over T with its state (v, or the temporal gradient gv) in
// registers; consecutive threads take consecutive neurons, so every load and store of a step
// is coalesced along the neuron axis. The rect mask is written with a warp ballot: one int32
// word per warp per step, bit j = lane j, the layout of the CPU kernels (DESIGN.md section 3).
// Index arithmetic is 64-bit: T * N may exceed 2^31.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "../lif_dispatch.h"
#include "lif_cuda.h"

namespace sltt {
namespace cuda {

namespace {

constexpr int kThreads = 256;  // a multiple of 32: warps never straddle two blocks

__device__ __forceinline__ float to_state(float x) { return x; }
__device__ __forceinline__ double to_state(double x) { return x; }
__device__ __forceinline__ float to_state(half_bits x) { return __half2float(__ushort_as_half(x.bits)); }
__device__ __forceinline__ float to_state(bf16_bits x) { return __bfloat162float(__ushort_as_bfloat16(x.bits)); }

template <typename X>
struct Store;
template <>
struct Store<float> {
  __device__ static float from(float s) { return s; }
};
template <>
struct Store<double> {
  __device__ static double from(double s) { return s; }
};
template <>
struct Store<half_bits> {
  __device__ static half_bits from(float s) { return half_bits{__half_as_ushort(__float2half_rn(s))}; }
};
template <>
struct Store<bf16_bits> {
  __device__ static bf16_bits from(float s) { return bf16_bits{__bfloat16_as_ushort(__float2bfloat16_rn(s))}; }
};

template <typename X, typename S, Reset R, Save SV>
__global__ void __launch_bounds__(kThreads) lif_fwd_kernel(const FwdArgs<X, S> a) {
  constexpr bool kMask = SV == Save::Sg || SV == Save::SgSpike;
  const LIFParams<S> p = a.p;
  const int64_t N = a.N;
  const int64_t T = a.T;
  const int64_t n = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  const bool live = n < N;
  // Threads past N stay in the loop: every lane must take part in the ballots.
  const int64_t word = n >> 5;
  const int64_t W = lif_mask_words(N);
  const bool writes_word = kMask && (threadIdx.x & 31) == 0 && word < W;
  S v = p.v_r;
  if (live && a.v0) v = a.v0[n];
  X x_next = live ? a.x[n] : X{};
  for (int64_t t = 0; t < T; ++t) {
    const int64_t i = t * N + n;
    const X x_now = x_next;
    if (live && t + 1 < T) x_next = a.x[i + N];  // issue the next load before this step's math
    S h = S(0);
    bool spike = false;
    if (live) {
      h = lif_charge(p, v, to_state(x_now));
      spike = lif_fire(p, h);
      a.spikes[i] = Store<X>::from(spike ? S(1) : S(0));
      if (SV == Save::H) a.h[i] = h;
      v = lif_reset<R>(p, h, spike);
    }
    if (kMask) {
      const unsigned sg_bits = __ballot_sync(0xffffffffu, live && lif_rect_window(p, h));
      if (writes_word) a.mask[t * W + word] = int32_t(sg_bits);
    }
    if (SV == Save::SgSpike) {
      const unsigned spike_bits = __ballot_sync(0xffffffffu, spike);
      if (writes_word) a.mask[(T + t) * W + word] = int32_t(spike_bits);
    }
  }
  if (live) a.v_last[n] = v;
}

template <typename X, typename S, Reset R, bool Detach, Surrogate SG, Save SV, Grad G>
__global__ void __launch_bounds__(kThreads) lif_bwd_kernel(const BwdArgs<X, S> a) {
  const LIFParams<S> p = a.p;
  const int64_t N = a.N;
  const int64_t T = a.T;
  const int64_t n = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (n >= N) return;  // no warp collectives here
  const int64_t W = lif_mask_words(N);
  const int64_t word = n >> 5;
  const int bit = int(n & 31);
  S gv = S(0);
  if (G == Grad::BPTT && a.grad_v_last) gv = a.grad_v_last[n];
  for (int64_t t = T - 1; t >= 0; --t) {
    const int64_t i = t * N + n;
    S h = S(0);
    S sg;
    bool spike = false;
    if (SV == Save::H) {
      h = a.h[i];
      sg = lif_surrogate<SG>(p, h);
      spike = lif_fire(p, h);
    } else {
      // every lane of a warp reads the same word: one broadcast transaction
      sg = ((uint32_t(a.mask[t * W + word]) >> bit) & 1u) ? p.inv_width : S(0);
      if (SV == Save::SgSpike) spike = (uint32_t(a.mask[(T + t) * W + word]) >> bit) & 1u;
    }
    S gh = to_state(a.grad_spikes[i]) * sg;
    if (G == Grad::BPTT) {
      gh = lif_fma(gv, lif_dv_dh<R, Detach>(p, h, spike, sg), gh);
      gv = p.lam * gh;
    }
    a.grad_x[i] = Store<X>::from(p.c * gh);
  }
  if (G == Grad::BPTT && a.grad_v0) a.grad_v0[n] = gv;
}

inline unsigned blocks_for(int64_t n) { return unsigned((n + kThreads - 1) / kThreads); }

template <typename X, typename S>
struct FwdLauncher {
  const FwdArgs<X, S>& a;
  cudaStream_t stream;
  template <Reset R, Save SV>
  void fwd() {
    lif_fwd_kernel<X, S, R, SV><<<blocks_for(a.N), kThreads, 0, stream>>>(a);
  }
};

template <typename X, typename S>
struct BwdLauncher {
  const BwdArgs<X, S>& a;
  cudaStream_t stream;
  template <Reset R, bool Detach, Surrogate SG, Save SV, Grad G>
  void bwd() {
    lif_bwd_kernel<X, S, R, Detach, SG, SV, G><<<blocks_for(a.N), kThreads, 0, stream>>>(a);
  }
};

template <typename X, typename S>
cudaError_t launch_fwd(const FwdArgs<X, S>& a, Reset reset, Save save, cudaStream_t stream) {
  if (a.N == 0 || a.T == 0) return cudaSuccess;
  if ((a.N + kThreads - 1) / kThreads > 0x7fffffff) return cudaErrorInvalidConfiguration;
  FwdLauncher<X, S> l{a, stream};
  dispatch_fwd(l, reset, save);
  return cudaGetLastError();
}

template <typename X, typename S>
cudaError_t launch_bwd(const BwdArgs<X, S>& a, const BwdConfig& c, cudaStream_t stream) {
  if (a.N == 0 || a.T == 0) return cudaSuccess;
  if ((a.N + kThreads - 1) / kThreads > 0x7fffffff) return cudaErrorInvalidConfiguration;
  BwdLauncher<X, S> l{a, stream};
  dispatch_bwd(l, c.reset, c.detach_reset, c.surrogate, c.save, c.grad);
  return cudaGetLastError();
}

}  // namespace

cudaError_t lif_fwd_cuda(const FwdArgs<float, float>& a, Reset r, Save s, cudaStream_t st) { return launch_fwd(a, r, s, st); }
cudaError_t lif_fwd_cuda(const FwdArgs<double, double>& a, Reset r, Save s, cudaStream_t st) { return launch_fwd(a, r, s, st); }
cudaError_t lif_fwd_cuda(const FwdArgs<half_bits, float>& a, Reset r, Save s, cudaStream_t st) { return launch_fwd(a, r, s, st); }
cudaError_t lif_fwd_cuda(const FwdArgs<bf16_bits, float>& a, Reset r, Save s, cudaStream_t st) { return launch_fwd(a, r, s, st); }

cudaError_t lif_bwd_cuda(const BwdArgs<float, float>& a, const BwdConfig& c, cudaStream_t st) { return launch_bwd(a, c, st); }
cudaError_t lif_bwd_cuda(const BwdArgs<double, double>& a, const BwdConfig& c, cudaStream_t st) { return launch_bwd(a, c, st); }
cudaError_t lif_bwd_cuda(const BwdArgs<half_bits, float>& a, const BwdConfig& c, cudaStream_t st) { return launch_bwd(a, c, st); }
cudaError_t lif_bwd_cuda(const BwdArgs<bf16_bits, float>& a, const BwdConfig& c, cudaStream_t st) { return launch_bwd(a, c, st); }

}  // namespace cuda
}  // namespace sltt
