// Torch glue for the CPU kernels of every neuron model: dtype and configuration dispatch, threading.
// Checks and output allocation are shared with the other backends (lif_options.h).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <atomic>
#include <cmath>
#include <limits>

#include "../lif_dispatch.h"
#include "../lif_options.h"
#include "lif_cpu_kernels.h"

namespace sltt {

// Save::H16 on the CPU: c10's conversions round to nearest even; a nonzero d that would round
// to zero is kept as the smallest subnormal of its sign, so the spike decision stays exact; a
// finite d that would round to +-inf (float16: |d| >= 65520) is kept as the largest finite value
// of its sign, because the backward's h - v_r times a zero surrogate would make an inf a NaN. An
// inf or NaN d stays what it is.
template <typename H>
struct C10Store16 {
  static constexpr bool kIs16 = true;
  static H from(float d) {
    const H q(d);
    const float r = float(q);
    if (r == 0.0f && d != 0.0f) return H(d > 0.0f ? 0x0001 : 0x8001, H::from_bits());
    if (std::isinf(r) && std::isfinite(d))
      return d > 0.0f ? std::numeric_limits<H>::max() : std::numeric_limits<H>::lowest();
    return q;
  }
  static float to(H q) { return float(q); }
};
template <>
struct Store16<at::Half> : C10Store16<at::Half> {};
template <>
struct Store16<at::BFloat16> : C10Store16<at::BFloat16> {};

namespace cpu {

namespace {

// -1: auto (AVX2+FMA when the CPU has it), 0: generic, 1: AVX2+FMA.
std::atomic<int> g_isa{-1};

bool use_avx2() {
  const int isa = g_isa.load();
  return isa < 0 ? cpu_has_avx2_fma() : (isa == 1);
}

const char* isa_name(int isa) { return isa < 0 ? "auto" : (isa == 1 ? "avx2" : "generic"); }

// Blocks per task: enough element-steps that a thread's start-up cost is noise.
int64_t grain_blocks(int64_t T) {
  return std::max<int64_t>(1, (int64_t(1) << 15) / (kBlock * std::max<int64_t>(T, 1)));
}

template <typename X, typename S>
struct FwdLauncher {
  static constexpr bool kSupportsH16 = Store16<X>::kIs16;
  const FwdArgs<X, S>& a;
  template <Neuron NM, Reset R, Save SV>
  void fwd() {
    const bool avx2 = use_avx2();
    at::parallel_for(0, num_blocks(a.N), grain_blocks(a.T),
                     [&](int64_t b0, int64_t b1) { lif_fwd_blocks<X, S, NM, R, SV>(a, b0, b1, avx2); });
  }
};

template <typename X, typename S>
struct BwdLauncher {
  static constexpr bool kSupportsH16 = Store16<X>::kIs16;
  const BwdArgs<X, S>& a;
  template <Neuron NM, Reset R, bool Detach, Surrogate SG, Save SV, Grad G>
  void bwd() {
    const bool avx2 = use_avx2();
    at::parallel_for(0, num_blocks(a.N), grain_blocks(a.T), [&](int64_t b0, int64_t b1) {
      lif_bwd_blocks<X, S, NM, R, Detach, SG, SV, G>(a, b0, b1, avx2);
    });
  }
};

struct RunFwd {
  bool operator()(const FwdTensors& t, const NeuronOptions& o) const {
    bool ok = false;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, t.x.scalar_type(), "neuron_multistep_fwd_cpu", [&] {
      const auto args = fwd_args<scalar_t, state_t<scalar_t>>(t, o);
      FwdLauncher<scalar_t, state_t<scalar_t>> launcher{args};
      ok = dispatch_fwd(launcher, o.neuron, o.reset, o.save);
    });
    return ok;
  }
};

struct RunBwd {
  bool operator()(const BwdTensors& t, const NeuronOptions& o) const {
    bool ok = false;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, t.grad_spikes.scalar_type(), "neuron_multistep_bwd_cpu", [&] {
      const auto args = bwd_args<scalar_t, state_t<scalar_t>>(t, o);
      BwdLauncher<scalar_t, state_t<scalar_t>> launcher{args};
      ok = dispatch_bwd(launcher, o.neuron, o.reset, o.detach_reset, o.surrogate, o.save, o.grad);
    });
    return ok;
  }
};

SLTT_DEFINE_OPS(cpu, RunFwd{}, RunBwd{})

}  // namespace

std::string select_isa(c10::string_view isa) {
  const std::string before = isa_name(g_isa.load());
  if (isa == "auto") {
    g_isa = -1;
  } else if (isa == "generic") {
    g_isa = 0;
  } else if (isa == "avx2") {
    TORCH_CHECK(cpu_has_avx2_fma(), "sltt_kernels: isa='avx2' but this CPU lacks AVX2 or FMA");
    g_isa = 1;
  } else {
    TORCH_CHECK(false, "sltt_kernels: isa must be 'auto', 'avx2' or 'generic', got '", std::string(isa), "'");
  }
  return before;
}

}  // namespace cpu
}  // namespace sltt

TORCH_LIBRARY_IMPL(sltt_kernels, CPU, m) {
  m.impl("neuron_multistep_fwd", &sltt::cpu::neuron_multistep_fwd_cpu);
  m.impl("neuron_multistep_bwd", &sltt::cpu::neuron_multistep_bwd_cpu);
  m.impl("neuron_step_fwd", &sltt::cpu::neuron_step_fwd_cpu);
  m.impl("neuron_step_bwd", &sltt::cpu::neuron_step_bwd_cpu);
}
