// Torch glue for the CPU kernels: checks, dtype and configuration dispatch, threading.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <atomic>
#include <type_traits>

#include "../lif_options.h"
#include "lif_cpu_kernels.h"

namespace sltt {
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
int64_t grain_blocks(int64_t T) { return std::max<int64_t>(1, (int64_t(1) << 15) / (kBlock * std::max<int64_t>(T, 1))); }

template <typename X, typename S, Reset R, Save SV>
void run_fwd(const FwdArgs<X, S>& a) {
  const bool avx2 = use_avx2();
  at::parallel_for(0, num_blocks(a.N), grain_blocks(a.T),
                   [&](int64_t b0, int64_t b1) { lif_fwd_blocks<X, S, R, SV>(a, b0, b1, avx2); });
}

template <typename X, typename S, Reset R, bool Detach, Surrogate SG, Save SV, Grad G>
void run_bwd(const BwdArgs<X, S>& a) {
  const bool avx2 = use_avx2();
  at::parallel_for(0, num_blocks(a.N), grain_blocks(a.T),
                   [&](int64_t b0, int64_t b1) { lif_bwd_blocks<X, S, R, Detach, SG, SV, G>(a, b0, b1, avx2); });
}

template <typename X, typename S, Reset R>
void dispatch_fwd_save(const FwdArgs<X, S>& a, Save save) {
  switch (save) {
    case Save::None: return run_fwd<X, S, R, Save::None>(a);
    case Save::Sg: return run_fwd<X, S, R, Save::Sg>(a);
    case Save::SgSpike: return run_fwd<X, S, R, Save::SgSpike>(a);
    case Save::H: return run_fwd<X, S, R, Save::H>(a);
  }
}

template <typename X, typename S>
void dispatch_fwd(const FwdArgs<X, S>& a, const LIFOptions& o) {
  if (o.reset == Reset::Soft) return dispatch_fwd_save<X, S, Reset::Soft>(a, o.save);
  return dispatch_fwd_save<X, S, Reset::Hard>(a, o.save);
}

// Backward from saved h, for every surrogate.
template <typename X, typename S, Reset R, bool Detach, Grad G>
void dispatch_bwd_from_h(const BwdArgs<X, S>& a, Surrogate sg) {
  switch (sg) {
    case Surrogate::Rect: return run_bwd<X, S, R, Detach, Surrogate::Rect, Save::H, G>(a);
    case Surrogate::Triangle: return run_bwd<X, S, R, Detach, Surrogate::Triangle, Save::H, G>(a);
    case Surrogate::Sigmoid: return run_bwd<X, S, R, Detach, Surrogate::Sigmoid, Save::H, G>(a);
    case Surrogate::ATan: return run_bwd<X, S, R, Detach, Surrogate::ATan, Save::H, G>(a);
  }
}

// Only the combinations that can occur are instantiated: SLTT ignores reset and detach
// (canonically soft + detach), and a bit mask implies the rect surrogate.
template <typename X, typename S>
void dispatch_bwd(const BwdArgs<X, S>& a, const LIFOptions& o) {
  const Grad g = o.grad;
  constexpr Surrogate kRect = Surrogate::Rect;
  if (g == Grad::SLTT) {
    if (o.save == Save::H) return dispatch_bwd_from_h<X, S, Reset::Soft, true, Grad::SLTT>(a, o.surrogate);
    return run_bwd<X, S, Reset::Soft, true, kRect, Save::Sg, Grad::SLTT>(a);  // plane 0 of sg_spike is sg
  }
  if (o.save == Save::Sg) {
    if (o.detach_reset) return run_bwd<X, S, Reset::Soft, true, kRect, Save::Sg, Grad::BPTT>(a);
    return run_bwd<X, S, Reset::Soft, false, kRect, Save::Sg, Grad::BPTT>(a);
  }
  if (o.save == Save::SgSpike) return run_bwd<X, S, Reset::Hard, true, kRect, Save::SgSpike, Grad::BPTT>(a);
  if (o.reset == Reset::Soft) {
    if (o.detach_reset) return dispatch_bwd_from_h<X, S, Reset::Soft, true, Grad::BPTT>(a, o.surrogate);
    return dispatch_bwd_from_h<X, S, Reset::Soft, false, Grad::BPTT>(a, o.surrogate);
  }
  if (o.detach_reset) return dispatch_bwd_from_h<X, S, Reset::Hard, true, Grad::BPTT>(a, o.surrogate);
  return dispatch_bwd_from_h<X, S, Reset::Hard, false, Grad::BPTT>(a, o.surrogate);
}

template <typename X>
using state_t = typename std::conditional<std::is_same<X, double>::value, double, float>::type;

// x: [T, ...] -> spikes [T, ...], v_last [...], saved (see ops.cpp).
std::tuple<at::Tensor, at::Tensor, at::Tensor> fwd_impl(const at::Tensor& x_in, const c10::optional<at::Tensor>& v0,
                                                        const LIFOptions& o) {
  check_input(x_in, "x", /*multistep=*/true);
  const at::Tensor x = x_in.contiguous();
  const int64_t T = x.size(0);
  const int64_t N = x.numel() / T;
  const auto state_shape = x.sizes().slice(1);
  const auto sdt = state_dtype(x.scalar_type());
  at::Tensor v0c;
  if (v0.has_value() && v0->defined()) {
    check_state(*v0, "v0", x, state_shape);
    v0c = v0->contiguous();
  }
  at::Tensor spikes = at::empty(x.sizes(), x.options());
  at::Tensor v_last = at::empty(state_shape, x.options().dtype(sdt));
  at::Tensor saved = at::empty(saved_shape(o.save, T, N), x.options().dtype(o.save == Save::H ? sdt : at::kInt));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "lif_multistep_fwd_cpu", [&] {
    using S = state_t<scalar_t>;
    FwdArgs<scalar_t, S> a;
    a.x = x.const_data_ptr<scalar_t>();
    a.v0 = v0c.defined() ? v0c.const_data_ptr<S>() : nullptr;
    a.spikes = spikes.mutable_data_ptr<scalar_t>();
    a.v_last = v_last.mutable_data_ptr<S>();
    a.mask = (o.save == Save::Sg || o.save == Save::SgSpike) ? saved.mutable_data_ptr<int32_t>() : nullptr;
    a.h = o.save == Save::H ? saved.mutable_data_ptr<S>() : nullptr;
    a.T = T;
    a.N = N;
    a.p = o.params<S>();
    dispatch_fwd(a, o);
  });
  return {spikes, v_last, saved};
}

// grad_spikes: [T, ...] -> grad_x [T, ...], grad_v0 [...].
std::tuple<at::Tensor, at::Tensor> bwd_impl(const at::Tensor& gs_in, const c10::optional<at::Tensor>& gv_last,
                                            const at::Tensor& saved, const LIFOptions& o) {
  check_input(gs_in, "grad_spikes", /*multistep=*/true);
  TORCH_CHECK(o.save != Save::None, "sltt_kernels: the forward saved nothing (save='none'), so there is no backward");
  const Grad g = o.grad;
  const at::Tensor gs = gs_in.contiguous();
  const int64_t T = gs.size(0);
  const int64_t N = gs.numel() / T;
  const auto state_shape = gs.sizes().slice(1);
  const auto sdt = state_dtype(gs.scalar_type());
  check_saved(saved, o, gs, T, N);
  at::Tensor gvl;
  if (g == Grad::BPTT && gv_last.has_value() && gv_last->defined()) {
    check_state(*gv_last, "grad_v_last", gs, state_shape);
    gvl = gv_last->contiguous();
  }
  at::Tensor grad_x = at::empty(gs.sizes(), gs.options());
  at::Tensor grad_v0 = g == Grad::BPTT ? at::empty(state_shape, gs.options().dtype(sdt))
                                       : at::zeros(state_shape, gs.options().dtype(sdt));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, gs.scalar_type(), "lif_multistep_bwd_cpu", [&] {
    using S = state_t<scalar_t>;
    BwdArgs<scalar_t, S> a;
    a.grad_spikes = gs.const_data_ptr<scalar_t>();
    a.grad_v_last = gvl.defined() ? gvl.const_data_ptr<S>() : nullptr;
    a.mask = o.save == Save::H ? nullptr : saved.const_data_ptr<int32_t>();
    a.h = o.save == Save::H ? saved.const_data_ptr<S>() : nullptr;
    a.grad_x = grad_x.mutable_data_ptr<scalar_t>();
    a.grad_v0 = g == Grad::BPTT ? grad_v0.mutable_data_ptr<S>() : nullptr;
    a.T = T;
    a.N = N;
    a.p = o.params<S>();
    dispatch_bwd(a, o);
  });
  return {grad_x, grad_v0};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lif_multistep_fwd_cpu(const at::Tensor& x,
                                                                     const c10::optional<at::Tensor>& v0, double tau,
                                                                     double v_threshold, c10::optional<double> v_reset,
                                                                     bool decay_input, bool detach_reset,
                                                                     c10::string_view surrogate,
                                                                     double surrogate_param, c10::string_view save,
                                                                     c10::string_view grad) {
  const auto o =
      parse_options(tau, v_threshold, v_reset, decay_input, detach_reset, surrogate, surrogate_param, save, grad);
  return fwd_impl(x, v0, o);
}

std::tuple<at::Tensor, at::Tensor> lif_multistep_bwd_cpu(const at::Tensor& grad_spikes,
                                                         const c10::optional<at::Tensor>& grad_v_last,
                                                         const at::Tensor& saved, double tau, double v_threshold,
                                                         c10::optional<double> v_reset, bool decay_input,
                                                         bool detach_reset, c10::string_view surrogate,
                                                         double surrogate_param, c10::string_view save,
                                                         c10::string_view grad) {
  const auto o =
      parse_options(tau, v_threshold, v_reset, decay_input, detach_reset, surrogate, surrogate_param, save, grad);
  return bwd_impl(grad_spikes, grad_v_last, saved, o);
}

// One step is the multi-step kernel with T = 1 on a [1, N] view.
std::tuple<at::Tensor, at::Tensor, at::Tensor> lif_step_fwd_cpu(const at::Tensor& x, const at::Tensor& v, double tau,
                                                                double v_threshold, c10::optional<double> v_reset,
                                                                bool decay_input, bool detach_reset,
                                                                c10::string_view surrogate, double surrogate_param,
                                                                c10::string_view save, c10::string_view grad) {
  const auto o =
      parse_options(tau, v_threshold, v_reset, decay_input, detach_reset, surrogate, surrogate_param, save, grad);
  check_input(x, "x", /*multistep=*/false);
  check_state(v, "v", x, x.sizes());
  auto out = fwd_impl(x.reshape({1, x.numel()}), v.reshape({x.numel()}), o);
  return {std::get<0>(out).view(x.sizes()), std::get<1>(out).view(x.sizes()), std::get<2>(out)};
}

std::tuple<at::Tensor, at::Tensor> lif_step_bwd_cpu(const at::Tensor& grad_spike,
                                                    const c10::optional<at::Tensor>& grad_v_new,
                                                    const at::Tensor& saved, double tau, double v_threshold,
                                                    c10::optional<double> v_reset, bool decay_input, bool detach_reset,
                                                    c10::string_view surrogate, double surrogate_param,
                                                    c10::string_view save, c10::string_view grad) {
  const auto o =
      parse_options(tau, v_threshold, v_reset, decay_input, detach_reset, surrogate, surrogate_param, save, grad);
  check_input(grad_spike, "grad_spike", /*multistep=*/false);
  const int64_t N = grad_spike.numel();
  c10::optional<at::Tensor> gv;
  if (grad_v_new.has_value() && grad_v_new->defined()) {
    check_state(*grad_v_new, "grad_v_new", grad_spike, grad_spike.sizes());
    gv = grad_v_new->reshape({N});
  }
  auto out = bwd_impl(grad_spike.reshape({1, N}), gv, saved, o);
  return {std::get<0>(out).view(grad_spike.sizes()), std::get<1>(out).view(grad_spike.sizes())};
}

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
  m.impl("lif_multistep_fwd", &sltt::cpu::lif_multistep_fwd_cpu);
  m.impl("lif_multistep_bwd", &sltt::cpu::lif_multistep_bwd_cpu);
  m.impl("lif_step_fwd", &sltt::cpu::lif_step_fwd_cpu);
  m.impl("lif_step_bwd", &sltt::cpu::lif_step_bwd_cpu);
}
