// Torch-side glue shared by the backend bindings: parsing and checking the op arguments,
// and allocating the outputs. The kernels themselves never see a torch type.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Optional.h>
#include <c10/util/string_view.h>

#include <cmath>
#include <string>
#include <tuple>
#include <type_traits>

#include "lif_args.h"
#include "lif_math.h"

namespace sltt {

struct LIFOptions {
  double tau;
  double v_threshold;
  double v_r;
  Reset reset;
  bool decay_input;
  bool detach_reset;
  Surrogate surrogate;
  double surrogate_param;
  Save save;
  Grad grad;

  LIFParams<double> params() const {
    LIFParams<double> p;
    p.lam = 1.0 - 1.0 / tau;
    p.c = decay_input ? 1.0 / tau : 1.0;
    p.theta = v_threshold;
    p.v_r = v_r;
    p.alpha = surrogate_param;
    p.alpha2 = surrogate_param * surrogate_param;
    p.half_width = surrogate_param * 0.5;
    p.inv_width = 1.0 / surrogate_param;
    return p;
  }
};

inline Surrogate parse_surrogate(c10::string_view s) {
  if (s == "rect") return Surrogate::Rect;
  if (s == "triangle") return Surrogate::Triangle;
  if (s == "sigmoid") return Surrogate::Sigmoid;
  if (s == "atan") return Surrogate::ATan;
  TORCH_CHECK(false, "sltt_kernels: surrogate must be one of 'rect', 'triangle', 'sigmoid', 'atan', got '",
              std::string(s), "'");
}

inline Save parse_save(c10::string_view s) {
  if (s == "none") return Save::None;
  if (s == "sg") return Save::Sg;
  if (s == "sg_spike") return Save::SgSpike;
  if (s == "h") return Save::H;
  TORCH_CHECK(false, "sltt_kernels: save must be one of 'none', 'sg', 'sg_spike', 'h', got '", std::string(s),
              "'");
}

inline Grad parse_grad(c10::string_view s) {
  if (s == "bptt") return Grad::BPTT;
  if (s == "sltt") return Grad::SLTT;
  TORCH_CHECK(false, "sltt_kernels: grad must be 'bptt' or 'sltt', got '", std::string(s), "'");
}

// The backward can be computed from what was saved (DESIGN.md section 3).
inline void check_backward_options(const LIFOptions& o) {
  TORCH_CHECK(o.save != Save::None, "sltt_kernels: the forward saved nothing (save='none'), so no backward");
  if (o.grad == Grad::SLTT) return;
  if (o.save == Save::Sg)
    TORCH_CHECK(o.reset == Reset::Soft,
                "sltt_kernels: BPTT with hard reset needs save='sg_spike' (detach_reset) or save='h'");
  if (o.save == Save::SgSpike)
    TORCH_CHECK(o.reset == Reset::Hard && o.detach_reset,
                "sltt_kernels: save='sg_spike' serves BPTT with hard reset and detach_reset only");
}

inline LIFOptions parse_options(double tau, double v_threshold, c10::optional<double> v_reset, bool decay_input,
                                bool detach_reset, c10::string_view surrogate, double surrogate_param,
                                c10::string_view save, c10::string_view grad) {
  TORCH_CHECK(std::isfinite(tau) && tau >= 1.0,
              "sltt_kernels: tau must be a finite number >= 1 (so that lambda = 1 - 1/tau lies in [0, 1)), got ",
              tau);
  TORCH_CHECK(std::isfinite(v_threshold), "sltt_kernels: v_threshold must be finite, got ", v_threshold);
  TORCH_CHECK(!v_reset.has_value() || std::isfinite(*v_reset), "sltt_kernels: v_reset must be finite or None, got ",
              *v_reset);
  TORCH_CHECK(std::isfinite(surrogate_param) && surrogate_param > 0.0,
              "sltt_kernels: surrogate_param (rect width or alpha) must be a finite number > 0, got ",
              surrogate_param);
  LIFOptions o;
  o.tau = tau;
  o.v_threshold = v_threshold;
  o.v_r = v_reset.has_value() ? *v_reset : 0.0;
  o.reset = v_reset.has_value() ? Reset::Hard : Reset::Soft;
  o.decay_input = decay_input;
  o.detach_reset = detach_reset;
  o.surrogate = parse_surrogate(surrogate);
  o.surrogate_param = surrogate_param;
  o.save = parse_save(save);
  o.grad = parse_grad(grad);
  if (o.save == Save::Sg || o.save == Save::SgSpike)
    TORCH_CHECK(o.surrogate == Surrogate::Rect, "sltt_kernels: save='", std::string(save),
                "' (a bit mask) needs the rect surrogate; save 'h' for '", std::string(surrogate), "'");
  if (o.save != Save::None) check_backward_options(o);
  return o;
}


// State type of the kernels for an input element type X: double for double, else float.
template <typename X>
using state_t = typename std::conditional<std::is_same<X, double>::value, double, float>::type;

// Float state type for an input dtype: float64 stays float64, everything else computes in float32.
inline at::ScalarType state_dtype(at::ScalarType x) {
  return x == at::kDouble ? at::kDouble : at::kFloat;
}

inline void check_input(const at::Tensor& x, const char* name, bool multistep) {
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble || x.scalar_type() == at::kHalf ||
                  x.scalar_type() == at::kBFloat16,
              "sltt_kernels: ", name, " must be float32, float64, float16 or bfloat16, got ", x.scalar_type());
  if (multistep) {
    TORCH_CHECK(x.dim() >= 1, "sltt_kernels: ", name, " must be [T, ...] with at least one dimension, got a scalar");
    TORCH_CHECK(x.size(0) >= 1, "sltt_kernels: ", name, " must have at least one time step, got shape ",
                x.sizes());
  }
}

inline void check_state(const at::Tensor& v, const char* name, const at::Tensor& like, at::IntArrayRef shape) {
  TORCH_CHECK(v.device() == like.device(), "sltt_kernels: ", name, " is on ", v.device(), " but the input is on ",
              like.device());
  TORCH_CHECK(v.scalar_type() == state_dtype(like.scalar_type()), "sltt_kernels: ", name, " must be ",
              state_dtype(like.scalar_type()), " (the state dtype for ", like.scalar_type(), " input), got ",
              v.scalar_type());
  TORCH_CHECK(v.sizes() == shape, "sltt_kernels: ", name, " must have shape ", shape, ", got ", v.sizes());
}

// Shape of the saved tensor for T steps of N neurons.
inline std::vector<int64_t> saved_shape(Save s, int64_t T, int64_t N) {
  switch (s) {
    case Save::Sg: return {T, lif_mask_words(N)};
    case Save::SgSpike: return {2, T, lif_mask_words(N)};
    case Save::H: return {T, N};
    default: return {0};
  }
}

inline void check_saved(const at::Tensor& saved, const LIFOptions& o, const at::Tensor& grad, int64_t T, int64_t N) {
  const auto want = saved_shape(o.save, T, N);
  TORCH_CHECK(saved.device() == grad.device(), "sltt_kernels: saved is on ", saved.device(),
              " but the gradient is on ", grad.device());
  TORCH_CHECK(saved.sizes() == at::IntArrayRef(want), "sltt_kernels: saved must have shape ", at::IntArrayRef(want),
              " for save kind ", int(o.save), ", got ", saved.sizes());
  const auto dt = o.save == Save::H ? state_dtype(grad.scalar_type()) : at::kInt;
  TORCH_CHECK(saved.scalar_type() == dt, "sltt_kernels: saved must be ", dt, ", got ", saved.scalar_type());
  TORCH_CHECK(saved.is_contiguous(), "sltt_kernels: saved must be contiguous");
}

// ---------------------------------------------------------------------------------------------
// The op bodies every backend shares: checks, contiguous inputs, output allocation, and the
// single-step ops as T = 1 views of the multi-step ones. A backend supplies only `launch`.

struct FwdTensors {
  at::Tensor x;       // [T, ...] contiguous
  at::Tensor v0;      // [...] contiguous, or undefined
  at::Tensor spikes;  // [T, ...]
  at::Tensor v_last;  // [...]
  at::Tensor saved;   // see ops.cpp
  int64_t T;
  int64_t N;
};

inline FwdTensors prepare_fwd(const at::Tensor& x_in, const c10::optional<at::Tensor>& v0, const LIFOptions& o) {
  check_input(x_in, "x", /*multistep=*/true);
  FwdTensors f;
  f.x = x_in.contiguous();
  f.T = f.x.size(0);
  f.N = f.x.numel() / f.T;
  const auto state_shape = f.x.sizes().slice(1);
  const auto sdt = state_dtype(f.x.scalar_type());
  if (v0.has_value() && v0->defined()) {
    check_state(*v0, "v0", f.x, state_shape);
    f.v0 = v0->contiguous();
  }
  f.spikes = at::empty(f.x.sizes(), f.x.options());
  f.v_last = at::empty(state_shape, f.x.options().dtype(sdt));
  f.saved = at::empty(saved_shape(o.save, f.T, f.N), f.x.options().dtype(o.save == Save::H ? sdt : at::kInt));
  return f;
}

template <typename X, typename S>
FwdArgs<X, S> fwd_args(const FwdTensors& f, const LIFOptions& o) {
  FwdArgs<X, S> a;
  a.x = static_cast<const X*>(f.x.const_data_ptr());
  a.v0 = f.v0.defined() ? static_cast<const S*>(f.v0.const_data_ptr()) : nullptr;
  a.spikes = static_cast<X*>(f.spikes.mutable_data_ptr());
  a.v_last = static_cast<S*>(f.v_last.mutable_data_ptr());
  a.mask = (o.save == Save::Sg || o.save == Save::SgSpike) ? f.saved.mutable_data_ptr<int32_t>() : nullptr;
  a.h = o.save == Save::H ? static_cast<S*>(f.saved.mutable_data_ptr()) : nullptr;
  a.T = f.T;
  a.N = f.N;
  a.p = cast_params<S>(o.params());
  return a;
}

struct BwdTensors {
  at::Tensor grad_spikes;  // [T, ...] contiguous
  at::Tensor grad_v_last;  // [...] contiguous, or undefined
  at::Tensor saved;
  at::Tensor grad_x;       // [T, ...]
  at::Tensor grad_v0;      // [...]
  int64_t T;
  int64_t N;
};

inline BwdTensors prepare_bwd(const at::Tensor& gs_in, const c10::optional<at::Tensor>& gv_last,
                              const at::Tensor& saved, const LIFOptions& o) {
  check_input(gs_in, "grad_spikes", /*multistep=*/true);
  TORCH_CHECK(o.save != Save::None, "sltt_kernels: the forward saved nothing (save='none'), so there is no backward");
  BwdTensors b;
  b.grad_spikes = gs_in.contiguous();
  b.T = b.grad_spikes.size(0);
  b.N = b.grad_spikes.numel() / b.T;
  const auto state_shape = b.grad_spikes.sizes().slice(1);
  const auto sdt = state_dtype(b.grad_spikes.scalar_type());
  check_saved(saved, o, b.grad_spikes, b.T, b.N);
  b.saved = saved;
  if (o.grad == Grad::BPTT && gv_last.has_value() && gv_last->defined()) {
    check_state(*gv_last, "grad_v_last", b.grad_spikes, state_shape);
    b.grad_v_last = gv_last->contiguous();
  }
  b.grad_x = at::empty(b.grad_spikes.sizes(), b.grad_spikes.options());
  // SLTT: no gradient reaches v0.
  b.grad_v0 = o.grad == Grad::BPTT ? at::empty(state_shape, b.grad_spikes.options().dtype(sdt))
                                   : at::zeros(state_shape, b.grad_spikes.options().dtype(sdt));
  return b;
}

template <typename X, typename S>
BwdArgs<X, S> bwd_args(const BwdTensors& b, const LIFOptions& o) {
  BwdArgs<X, S> a;
  a.grad_spikes = static_cast<const X*>(b.grad_spikes.const_data_ptr());
  a.grad_v_last = b.grad_v_last.defined() ? static_cast<const S*>(b.grad_v_last.const_data_ptr()) : nullptr;
  a.mask = o.save == Save::H ? nullptr : b.saved.const_data_ptr<int32_t>();
  a.h = o.save == Save::H ? static_cast<const S*>(b.saved.const_data_ptr()) : nullptr;
  a.grad_x = static_cast<X*>(b.grad_x.mutable_data_ptr());
  a.grad_v0 = o.grad == Grad::BPTT ? static_cast<S*>(b.grad_v0.mutable_data_ptr()) : nullptr;
  a.T = b.T;
  a.N = b.N;
  a.p = cast_params<S>(o.params());
  return a;
}

// The four ops, given a backend's multi-step forward and backward:
//   FwdFn: void(const FwdTensors&, const LIFOptions&)   BwdFn: void(const BwdTensors&, const LIFOptions&)
template <typename FwdFn>
std::tuple<at::Tensor, at::Tensor, at::Tensor> multistep_fwd_op(FwdFn run, const at::Tensor& x,
                                                               const c10::optional<at::Tensor>& v0,
                                                               const LIFOptions& o) {
  FwdTensors f = prepare_fwd(x, v0, o);
  if (f.N > 0) run(f, o);
  return {f.spikes, f.v_last, f.saved};
}

template <typename BwdFn>
std::tuple<at::Tensor, at::Tensor> multistep_bwd_op(BwdFn run, const at::Tensor& grad_spikes,
                                                   const c10::optional<at::Tensor>& grad_v_last,
                                                   const at::Tensor& saved, const LIFOptions& o) {
  BwdTensors b = prepare_bwd(grad_spikes, grad_v_last, saved, o);
  if (b.N > 0) run(b, o);
  return {b.grad_x, b.grad_v0};
}

// One step is the multi-step op with T = 1 on [1, N] views.
template <typename FwdFn>
std::tuple<at::Tensor, at::Tensor, at::Tensor> step_fwd_op(FwdFn run, const at::Tensor& x, const at::Tensor& v,
                                                          const LIFOptions& o) {
  check_input(x, "x", /*multistep=*/false);
  check_state(v, "v", x, x.sizes());
  auto out = multistep_fwd_op(run, x.reshape({1, x.numel()}), v.reshape({x.numel()}), o);
  return {std::get<0>(out).view(x.sizes()), std::get<1>(out).view(x.sizes()), std::get<2>(out)};
}

template <typename BwdFn>
std::tuple<at::Tensor, at::Tensor> step_bwd_op(BwdFn run, const at::Tensor& grad_spike,
                                              const c10::optional<at::Tensor>& grad_v_new, const at::Tensor& saved,
                                              const LIFOptions& o) {
  check_input(grad_spike, "grad_spike", /*multistep=*/false);
  const int64_t N = grad_spike.numel();
  c10::optional<at::Tensor> gv;
  if (grad_v_new.has_value() && grad_v_new->defined()) {
    check_state(*grad_v_new, "grad_v_new", grad_spike, grad_spike.sizes());
    gv = grad_v_new->reshape({N});
  }
  auto out = multistep_bwd_op(run, grad_spike.reshape({1, N}), gv, saved, o);
  return {std::get<0>(out).view(grad_spike.sizes()), std::get<1>(out).view(grad_spike.sizes())};
}

// Defines the four op functions NAME_multistep_fwd, ... for a backend whose multi-step kernels
// are the functors FWD and BWD (see multistep_fwd_op), so the bindings only write the launches.
#define SLTT_DEFINE_OPS(PREFIX, FWD, BWD)                                                                          \
  std::tuple<at::Tensor, at::Tensor, at::Tensor> lif_multistep_fwd_##PREFIX(                                       \
      const at::Tensor& x, const c10::optional<at::Tensor>& v0, double tau, double v_threshold,                    \
      c10::optional<double> v_reset, bool decay_input, bool detach_reset, c10::string_view surrogate,              \
      double surrogate_param, c10::string_view save, c10::string_view grad) {                                      \
    return ::sltt::multistep_fwd_op(FWD, x, v0,                                                                    \
                                    ::sltt::parse_options(tau, v_threshold, v_reset, decay_input, detach_reset,    \
                                                          surrogate, surrogate_param, save, grad));                \
  }                                                                                                                \
  std::tuple<at::Tensor, at::Tensor> lif_multistep_bwd_##PREFIX(                                                   \
      const at::Tensor& grad_spikes, const c10::optional<at::Tensor>& grad_v_last, const at::Tensor& saved,        \
      double tau, double v_threshold, c10::optional<double> v_reset, bool decay_input, bool detach_reset,          \
      c10::string_view surrogate, double surrogate_param, c10::string_view save, c10::string_view grad) {          \
    return ::sltt::multistep_bwd_op(BWD, grad_spikes, grad_v_last, saved,                                          \
                                    ::sltt::parse_options(tau, v_threshold, v_reset, decay_input, detach_reset,    \
                                                          surrogate, surrogate_param, save, grad));                \
  }                                                                                                                \
  std::tuple<at::Tensor, at::Tensor, at::Tensor> lif_step_fwd_##PREFIX(                                            \
      const at::Tensor& x, const at::Tensor& v, double tau, double v_threshold, c10::optional<double> v_reset,     \
      bool decay_input, bool detach_reset, c10::string_view surrogate, double surrogate_param,                     \
      c10::string_view save, c10::string_view grad) {                                                              \
    return ::sltt::step_fwd_op(FWD, x, v,                                                                          \
                               ::sltt::parse_options(tau, v_threshold, v_reset, decay_input, detach_reset,         \
                                                     surrogate, surrogate_param, save, grad));                     \
  }                                                                                                                \
  std::tuple<at::Tensor, at::Tensor> lif_step_bwd_##PREFIX(                                                        \
      const at::Tensor& grad_spike, const c10::optional<at::Tensor>& grad_v_new, const at::Tensor& saved,          \
      double tau, double v_threshold, c10::optional<double> v_reset, bool decay_input, bool detach_reset,          \
      c10::string_view surrogate, double surrogate_param, c10::string_view save, c10::string_view grad) {          \
    return ::sltt::step_bwd_op(BWD, grad_spike, grad_v_new, saved,                                                 \
                               ::sltt::parse_options(tau, v_threshold, v_reset, decay_input, detach_reset,         \
                                                     surrogate, surrogate_param, save, grad));                     \
  }

}  // namespace sltt
