// Fused neuron kernels (every model of csrc/neurons/) for CUDA GPUs. No torch header: `nvcc -c` compiles this file alone.
//
// One thread per neuron loops over T with its state (v, or the temporal gradient gv) in
// registers; consecutive threads take consecutive neurons, so every load and store of a step
// is coalesced along the neuron axis, and the loads of kBatch steps are issued together. The
// rect mask is written with a warp ballot: one int32 word per warp per step, bit j = lane j,
// the layout of the CPU kernels (docs/design.md, section 3).
// Index arithmetic is 64-bit: T * N may exceed 2^31.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "../lif_dispatch.h"
#include "lif_cuda.h"

namespace sltt {

// Save::H16 on the GPU: round to nearest even; a nonzero d that would round to zero is kept as
// the smallest subnormal of its sign, so the spike decision stays exact; a finite d that would
// round to +-inf is kept as the largest finite value of its sign (an inf d would make the
// backward's h - v_r times a zero surrogate a NaN). An inf or NaN d stays what it is.
template <>
struct Store16<cuda::half_bits> {
  static constexpr bool kIs16 = true;
  __device__ static cuda::half_bits from(float d) {
    cuda::half_bits q{__half_as_ushort(__float2half_rn(d))};
    if ((q.bits & 0x7fffu) == 0 && d != 0.0f) q.bits = d > 0.0f ? 0x0001 : 0x8001;
    if ((q.bits & 0x7fffu) == 0x7c00u && isfinite(d)) q.bits = d > 0.0f ? 0x7bff : 0xfbff;  // +-65504
    return q;
  }
  __device__ static float to(cuda::half_bits q) { return __half2float(__ushort_as_half(q.bits)); }
};
template <>
struct Store16<cuda::bf16_bits> {
  static constexpr bool kIs16 = true;
  __device__ static cuda::bf16_bits from(float d) {
    cuda::bf16_bits q{__bfloat16_as_ushort(__float2bfloat16_rn(d))};
    if ((q.bits & 0x7fffu) == 0 && d != 0.0f) q.bits = d > 0.0f ? 0x0001 : 0x8001;
    if ((q.bits & 0x7fffu) == 0x7f80u && isfinite(d)) q.bits = d > 0.0f ? 0x7f7f : 0xff7f;  // +-max finite
    return q;
  }
  __device__ static float to(cuda::bf16_bits q) { return __bfloat162float(__ushort_as_bfloat16(q.bits)); }
};

namespace cuda {

namespace {

constexpr int kThreads = 256;  // a multiple of 32: warps never straddle two blocks
// Steps whose loads a thread issues together before their math. The stores of a step may alias
// the next step's inputs as far as the compiler knows, so without batching each step waits for its
// own load: one 4-byte load in flight per thread, too few to cover the memory's latency.
constexpr int kBatch = 4;

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

template <typename X, typename S, Neuron NM, Reset R, Save SV>
__global__ void __launch_bounds__(kThreads) lif_fwd_kernel(const FwdArgs<X, S> a) {
  using M = NeuronModel<NM>;
  constexpr bool kTwoPlanes = SV == Save::SgSpike || SV == Save::SgReset;
  constexpr bool kSpikeBit = SV == Save::SpikeState;  // plane 0 holds s[t] rather than sg != 0
  constexpr bool kMask = SV == Save::Sg || kTwoPlanes || kSpikeBit;
  constexpr bool kH = SV == Save::H || SV == Save::HV0;
  constexpr int64_t kRow0 = SV == Save::HV0 ? 1 : 0;  // HV0: row 0 is the state before step 0
  constexpr bool kD16 = SV == Save::H16 && Store16<X>::kIs16;
  const int64_t N = a.N;
  const int64_t T = a.T;
  const int64_t n = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  const bool live = n < N;
  const NeuronParams<S> p = params_at<M>(a, live ? n : 0);
  // Threads past N stay in the loop: every lane must take part in the ballots.
  const int64_t word = n >> 5;
  const int64_t W = lif_mask_words(N);
  const bool writes_word = kMask && (threadIdx.x & 31) == 0 && word < W;
  S v = p.v_r;
  if (live && a.v0) v = a.v0[n];
  if (SV == Save::HV0 && live) a.h[n] = v;
  // the input x * in_scale + in_shift (a batch norm's apply): the neuron's two values, read once
  const bool affine = a.in_scale.p != nullptr;
  const S in_scale = affine && live ? a.in_scale.at(n) : S(1);
  const S in_shift = affine && live ? a.in_shift.at(n) : S(0);
  for (int64_t t0 = 0; t0 < T; t0 += kBatch) {
    X xb[kBatch];
#pragma unroll
    for (int j = 0; j < kBatch; ++j) xb[j] = live && t0 + j < T ? a.x[(t0 + j) * N + n] : X{};
#pragma unroll
    for (int j = 0; j < kBatch; ++j) {
      const int64_t t = t0 + j;
      if (t >= T) break;  // the same for every lane, so the ballots below stay convergent
      const int64_t i = t * N + n;
      S h = S(0);
      bool spike = false;
      bool reset_flag = false;
      if (live) {
        reset_flag = M::reset_flag(p, v);
        const S xj = affine ? lif_affine_input(to_state(xb[j]), in_scale, in_shift) : to_state(xb[j]);
        h = M::template charge<R>(p, v, xj);
        spike = M::fire(p, h);
        a.spikes[i] = Store<X>::from(spike ? S(1) : S(0));
        if (kH) a.h[i + kRow0 * N] = h;
        if constexpr (kD16) a.d16[i] = Store16<X>::from(float(h - p.theta));
        v = M::template reset<R>(p, h, spike);
      }
      if (kMask) {
        const unsigned sg_bits = __ballot_sync(0xffffffffu, live && (kSpikeBit ? spike : lif_rect_window(p, h)));
        if (writes_word) a.mask[t * W + word] = int32_t(sg_bits);
      }
      if (kTwoPlanes) {
        const unsigned bits = __ballot_sync(0xffffffffu, SV == Save::SgSpike ? spike : reset_flag);
        if (writes_word) a.mask[(T + t) * W + word] = int32_t(bits);
      }
    }
  }
  if (live) a.v_last[n] = v;
}

// What one step of the backward reads, loaded for kBatch steps before their math; the fields a
// configuration does not read are never set and cost nothing.
template <typename X, typename S>
struct BwdLoads {
  X g;              // grad_spikes[t]
  S h;              // Save::H, HV0: h[t]
  S before;         // Save::HV0: the row before h[t]
  X d16;            // Save::H16: h[t] - theta in 16 bits
  S v;              // Save::SpikeState: the step's output state
  uint32_t plane0;  // the masks: this warp's word of row t (sg != 0)
  uint32_t plane1;  // and of the second plane (spike or reset flag)
};

template <typename X, typename S, Neuron NM, Reset R, bool Detach, Surrogate SG, Save SV, Grad G>
__global__ void __launch_bounds__(kThreads) lif_bwd_kernel(const BwdArgs<X, S> a) {
  using M = NeuronModel<NM>;
  constexpr bool kTwoPlanes = SV == Save::SgSpike || SV == Save::SgReset;
  constexpr bool kSpikeBit = SV == Save::SpikeState;  // s[t] bits and the output state (T = 1)
  constexpr bool kH = SV == Save::H || SV == Save::HV0;
  constexpr int64_t kRow0 = SV == Save::HV0 ? 1 : 0;
  constexpr bool kD16 = SV == Save::H16 && Store16<X>::kIs16;
  const int64_t N = a.N;
  const int64_t T = a.T;
  const int64_t n = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (n >= N) return;  // no warp collectives here
  const NeuronParams<S> p = params_at<M>(a, n);
  const int64_t W = lif_mask_words(N);
  const int64_t word = n >> 5;
  const int bit = int(n & 31);
  const bool learn_k = a.grad_k != nullptr;
  const bool learn_theta = a.grad_theta != nullptr;
  S gv = S(0);
  S gk = S(0);
  S gtheta = S(0);
  if (G == Grad::BPTT && a.grad_v_last) gv = a.grad_v_last[n];
  for (int64_t t0 = T - 1; t0 >= 0; t0 -= kBatch) {
    BwdLoads<X, S> in[kBatch];
#pragma unroll
    for (int j = 0; j < kBatch; ++j) {
      const int64_t t = t0 - j;
      if (t < 0) break;
      const int64_t i = t * N + n;
      in[j].g = a.grad_spikes[i];
      if (kH) in[j].h = a.h[i + kRow0 * N];
      if (SV == Save::HV0) in[j].before = a.h[i];  // h[t-1], or at t = 0 the state v[-1] itself
      if constexpr (kD16) in[j].d16 = a.d16[i];
      if (!kH && !kD16) {
        in[j].plane0 = uint32_t(a.mask[t * W + word]);  // one word for the whole warp: a broadcast
        if (kTwoPlanes) in[j].plane1 = uint32_t(a.mask[(T + t) * W + word]);
        if (kSpikeBit) in[j].v = a.v_new[n];
      }
    }
#pragma unroll
    for (int j = 0; j < kBatch; ++j) {
      const int64_t t = t0 - j;
      if (t < 0) break;
      S h = S(0);
      S sg;
      bool spike = false;
      bool reset_flag = false;
      if (kH) {
        h = in[j].h;
        sg = lif_surrogate<SG>(p, h);
        spike = M::fire(p, h);
      } else if constexpr (kD16) {
        // the decisions from d itself, whose sign the 16-bit store keeps exactly
        const S d = S(Store16<X>::to(in[j].d16));
        h = d + p.theta;
        sg = lif_surrogate_d<SG>(p, d);
        spike = M::fire_d(d);
      } else if constexpr (kSpikeBit) {
        // the forward's soft reset wrote v = h - theta where it fired and v = h where not, so
        // this is the forward's own subtraction h - theta, to the bit
        spike = (in[j].plane0 >> bit) & 1u;
        const S d = spike ? in[j].v : in[j].v - p.theta;
        h = d + p.theta;
        sg = lif_surrogate_d<SG>(p, d);
      } else {
        sg = ((in[j].plane0 >> bit) & 1u) ? p.inv_width : S(0);
        if (kTwoPlanes) {
          const bool plane1 = (in[j].plane1 >> bit) & 1u;
          if (SV == Save::SgSpike) spike = plane1;
          if (SV == Save::SgReset) reset_flag = plane1;
        }
      }
      S v_prev = S(0);
      if (SV == Save::HV0) {
        const S before = in[j].before;
        v_prev = t == 0 ? before : M::template reset<R>(p, before, M::fire(p, before));
        reset_flag = M::reset_flag(p, v_prev);
      }
      S gh = to_state(in[j].g) * sg;
      const S gv_in = gv;  // dL/dv[t] from the steps after t (0 for SLTT)
      if (G == Grad::BPTT) {
        gh = lif_fma(gv, M::template dv_dh<R, Detach>(p, h, spike, sg), gh);
        gv = M::template dcharge_dv<R>(p, reset_flag) * gh;
      }
      if (SV == Save::HV0 && learn_k) gk = lif_fma(gh, M::template dcharge_dk<R>(p, v_prev, h, reset_flag), gk);
      if (SV == Save::HV0 && learn_theta)
        gtheta += threshold_grad<M, R, Detach>(p, to_state(in[j].g), gv_in, gh, h, sg, spike, reset_flag);
      a.grad_x[t * N + n] = Store<X>::from(p.c * gh);
    }
  }
  if (G == Grad::BPTT && a.grad_v0) a.grad_v0[n] = gv;
  if (learn_k) a.grad_k[n] = gk;
  if (learn_theta) a.grad_theta[n] = gtheta;
}

inline unsigned blocks_for(int64_t n) { return unsigned((n + kThreads - 1) / kThreads); }

template <typename X, typename S>
struct FwdLauncher {
  static constexpr bool kSupportsH16 = Store16<X>::kIs16;
  const FwdArgs<X, S>& a;
  cudaStream_t stream;
  template <Neuron NM, Reset R, Save SV>
  void fwd() {
    lif_fwd_kernel<X, S, NM, R, SV><<<blocks_for(a.N), kThreads, 0, stream>>>(a);
  }
};

template <typename X, typename S>
struct BwdLauncher {
  static constexpr bool kSupportsH16 = Store16<X>::kIs16;
  const BwdArgs<X, S>& a;
  cudaStream_t stream;
  template <Neuron NM, Reset R, bool Detach, Surrogate SG, Save SV, Grad G>
  void bwd() {
    lif_bwd_kernel<X, S, NM, R, Detach, SG, SV, G><<<blocks_for(a.N), kThreads, 0, stream>>>(a);
  }
};

template <typename X, typename S>
cudaError_t launch_fwd(const FwdArgs<X, S>& a, Neuron nm, Reset reset, Save save, cudaStream_t stream) {
  if (a.N == 0 || a.T == 0) return cudaSuccess;
  if ((a.N + kThreads - 1) / kThreads > 0x7fffffff) return cudaErrorInvalidConfiguration;
  FwdLauncher<X, S> l{a, stream};
  if (!dispatch_fwd(l, nm, reset, save)) return cudaErrorNotSupported;
  return cudaGetLastError();
}

template <typename X, typename S>
cudaError_t launch_bwd(const BwdArgs<X, S>& a, const BwdConfig& c, cudaStream_t stream) {
  if (a.N == 0 || a.T == 0) return cudaSuccess;
  if ((a.N + kThreads - 1) / kThreads > 0x7fffffff) return cudaErrorInvalidConfiguration;
  BwdLauncher<X, S> l{a, stream};
  if (!dispatch_bwd(l, c.neuron, c.reset, c.detach_reset, c.surrogate, c.save, c.grad)) return cudaErrorNotSupported;
  return cudaGetLastError();
}

}  // namespace

cudaError_t lif_fwd_cuda(const FwdArgs<float, float>& a, Neuron nm, Reset r, Save s, cudaStream_t st) {
  return launch_fwd(a, nm, r, s, st);
}
cudaError_t lif_fwd_cuda(const FwdArgs<double, double>& a, Neuron nm, Reset r, Save s, cudaStream_t st) {
  return launch_fwd(a, nm, r, s, st);
}
cudaError_t lif_fwd_cuda(const FwdArgs<half_bits, float>& a, Neuron nm, Reset r, Save s, cudaStream_t st) {
  return launch_fwd(a, nm, r, s, st);
}
cudaError_t lif_fwd_cuda(const FwdArgs<bf16_bits, float>& a, Neuron nm, Reset r, Save s, cudaStream_t st) {
  return launch_fwd(a, nm, r, s, st);
}

cudaError_t lif_bwd_cuda(const BwdArgs<float, float>& a, const BwdConfig& c, cudaStream_t st) { return launch_bwd(a, c, st); }
cudaError_t lif_bwd_cuda(const BwdArgs<double, double>& a, const BwdConfig& c, cudaStream_t st) { return launch_bwd(a, c, st); }
cudaError_t lif_bwd_cuda(const BwdArgs<half_bits, float>& a, const BwdConfig& c, cudaStream_t st) { return launch_bwd(a, c, st); }
cudaError_t lif_bwd_cuda(const BwdArgs<bf16_bits, float>& a, const BwdConfig& c, cudaStream_t st) { return launch_bwd(a, c, st); }

}  // namespace cuda
}  // namespace sltt
