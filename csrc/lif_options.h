// Torch-side glue shared by the backend bindings: parsing the op arguments, the checks that
// protect memory, and output allocation. The kernels themselves never see a torch type.
//
// The neuron's argument rules (ranges, which save kind serves which configuration) live once,
// in Python (sltt_kernels/_config.py). What is checked here is what a raw call could use to
// read or write out of bounds: every tensor's device, dtype, shape and layout against the
// others, and that the configuration has a kernel (docs/design.md, section 4).
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Optional.h>
#include <c10/util/string_view.h>

#include <cmath>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "lif_args.h"
#include "lif_math.h"

namespace sltt {

// The neuron arguments of every op, in schema order (sltt_kernels/_config.py, NeuronArgs).
struct LIFOptions {
  Neuron neuron;
  double lam;          // decay
  double c;            // input_gain
  bool c_is_k;         // decay_input, read only with a learnable k
  double theta;        // v_threshold
  Reset reset;
  double v_r;          // v_reset
  bool detach_reset;
  Surrogate surrogate;
  double alpha;        // surrogate_alpha
  Save save;
  Grad grad;

  LIFParams<double> params() const {
    LIFParams<double> p;
    p.lam = lam;
    p.c = c;
    p.theta = theta;
    p.v_r = v_r;
    p.alpha = alpha;
    p.alpha2 = alpha * alpha;
    p.half_width = alpha * 0.5;
    p.inv_width = 1.0 / alpha;
    p.c_is_k = c_is_k;
    return p;
  }
};

#define SLTT_PARSE_CASE(str, value) \
  if (s == str) return value;

inline Neuron parse_neuron(c10::string_view s) {
  SLTT_PARSE_CASE("lif", Neuron::LIF)
  SLTT_PARSE_CASE("if", Neuron::IF)
  SLTT_PARSE_CASE("leaky", Neuron::Leaky)
  TORCH_CHECK_VALUE(false, "sltt_kernels: neuron must be 'lif', 'if' or 'leaky', got '", std::string(s), "'");
}

inline Reset parse_reset(c10::string_view s) {
  SLTT_PARSE_CASE("soft", Reset::Soft)
  SLTT_PARSE_CASE("hard", Reset::Hard)
  SLTT_PARSE_CASE("none", Reset::None)
  TORCH_CHECK_VALUE(false, "sltt_kernels: reset must be 'soft', 'hard' or 'none', got '", std::string(s), "'");
}

inline Surrogate parse_surrogate(c10::string_view s) {
  SLTT_PARSE_CASE("rect", Surrogate::Rect)
  SLTT_PARSE_CASE("triangle", Surrogate::Triangle)
  SLTT_PARSE_CASE("sigmoid", Surrogate::Sigmoid)
  SLTT_PARSE_CASE("atan", Surrogate::ATan)
  TORCH_CHECK_VALUE(false, "sltt_kernels: surrogate must be 'rect', 'triangle', 'sigmoid' or 'atan', got '",
                    std::string(s), "'");
}

inline Save parse_save(c10::string_view s) {
  SLTT_PARSE_CASE("none", Save::None)
  SLTT_PARSE_CASE("sg", Save::Sg)
  SLTT_PARSE_CASE("sg_spike", Save::SgSpike)
  SLTT_PARSE_CASE("sg_reset", Save::SgReset)
  SLTT_PARSE_CASE("h", Save::H)
  SLTT_PARSE_CASE("h_v0", Save::HV0)
  SLTT_PARSE_CASE("h16", Save::H16)
  TORCH_CHECK_VALUE(false, "sltt_kernels: save must be 'none', 'sg', 'sg_spike', 'sg_reset', 'h', 'h_v0' or 'h16', got '",
                    std::string(s), "'");
}

inline Grad parse_grad(c10::string_view s) {
  SLTT_PARSE_CASE("bptt", Grad::BPTT)
  SLTT_PARSE_CASE("sltt", Grad::SLTT)
  TORCH_CHECK_VALUE(false, "sltt_kernels: grad must be 'bptt' or 'sltt', got '", std::string(s), "'");
}
#undef SLTT_PARSE_CASE

inline const char* neuron_name(Neuron n) {
  switch (n) {
    case Neuron::LIF: return "lif";
    case Neuron::IF: return "if";
    case Neuron::Leaky: return "leaky";
  }
  return "?";
}

inline const char* save_name(Save s) {
  switch (s) {
    case Save::None: return "none";
    case Save::Sg: return "sg";
    case Save::SgSpike: return "sg_spike";
    case Save::SgReset: return "sg_reset";
    case Save::H: return "h";
    case Save::HV0: return "h_v0";
    case Save::H16: return "h16";
  }
  return "?";
}

// A finite number in [low, high] (an exclusive low when low_inclusive is false).
inline void check_number(const char* name, double v, double low = -INFINITY, bool low_inclusive = true,
                         double high = INFINITY) {
  TORCH_CHECK_VALUE(std::isfinite(v), "sltt_kernels: ", name, " must be finite, got ", v);
  TORCH_CHECK_VALUE(low_inclusive ? v >= low : v > low, "sltt_kernels: ", name, " must be ",
                    low_inclusive ? ">= " : "> ", low, ", got ", v);
  TORCH_CHECK_VALUE(v <= high, "sltt_kernels: ", name, " must be <= ", high, ", got ", v);
}

// The value rules of the neuron arguments. sltt_kernels/_config.py (check_args) owns them and
// checks every Python-side call; the native ops repeat the ones a kernel relies on, with the
// same wording, because a raw call (from C++, or under inference_mode, where no Python wrapper
// runs) must not run a configuration the reference does not define: an IF neuron with
// input_gain 0.5 charged without it and scaled its gradient by it. A test draws random arguments
// and checks that the two accept the same ones (tests/test_raw_ops.py).
inline void check_values(const LIFOptions& o) {
  check_number("decay", o.lam, 0.0, true, 1.0);
  check_number("input_gain", o.c, 0.0, false);
  check_number("v_threshold", o.theta);
  check_number("v_reset", o.v_r);
  check_number("surrogate_alpha", o.alpha, 0.0, false);
  TORCH_CHECK_VALUE(o.neuron == Neuron::Leaky || o.reset != Reset::None,
                    "sltt_kernels: reset must be one of 'soft', 'hard' for this neuron, got 'none'");
  TORCH_CHECK_VALUE(o.neuron != Neuron::IF || (o.lam == 1.0 && o.c == 1.0),
                    "sltt_kernels: neuron='if' has no leak: decay and input_gain must be 1.0, got ", o.lam, ", ", o.c);
  TORCH_CHECK_VALUE(o.neuron != Neuron::Leaky || (o.c == 1.0 && o.detach_reset),
                    "sltt_kernels: neuron='leaky' needs input_gain=1.0 and detach_reset=True (its reset is detached)");
  TORCH_CHECK_VALUE(o.reset == Reset::Hard || o.v_r == 0.0, "sltt_kernels: v_reset must be 0.0 unless reset='hard', got ",
                    o.v_r);
}

inline LIFOptions parse_options(c10::string_view neuron, double decay, double input_gain, bool decay_input,
                                double v_threshold, c10::string_view reset, double v_reset, bool detach_reset,
                                c10::string_view surrogate, double surrogate_alpha, c10::string_view save,
                                c10::string_view grad) {
  LIFOptions o;
  o.neuron = parse_neuron(neuron);
  o.lam = decay;
  o.c = input_gain;
  o.c_is_k = decay_input;
  o.theta = v_threshold;
  o.reset = parse_reset(reset);
  o.v_r = v_reset;
  o.detach_reset = detach_reset;
  o.surrogate = parse_surrogate(surrogate);
  o.alpha = surrogate_alpha;
  o.save = parse_save(save);
  o.grad = parse_grad(grad);
  check_values(o);
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
  TORCH_CHECK_TYPE(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble || x.scalar_type() == at::kHalf ||
                       x.scalar_type() == at::kBFloat16,
                   "sltt_kernels: ", name, " must be float32, float64, float16 or bfloat16, got ", x.scalar_type());
  if (multistep) {
    TORCH_CHECK_VALUE(x.dim() >= 1, "sltt_kernels: ", name, " must be [T, ...] with at least one dimension, got a scalar");
    TORCH_CHECK_VALUE(x.size(0) >= 1, "sltt_kernels: ", name, " must have at least one time step, got shape ",
                      x.sizes());
  }
}

inline void check_device(const at::Tensor& t, const char* name, const at::Tensor& like, const char* like_name) {
  TORCH_CHECK_VALUE(t.device() == like.device(), "sltt_kernels: ", name, " is on ", t.device(), " but ", like_name,
                    " is on ", like.device());
}

inline void check_state(const at::Tensor& v, const char* name, const at::Tensor& like, at::IntArrayRef shape) {
  check_device(v, name, like, "the input");
  TORCH_CHECK_TYPE(v.scalar_type() == state_dtype(like.scalar_type()), "sltt_kernels: ", name, " must be ",
                   state_dtype(like.scalar_type()), " (the state dtype for ", like.scalar_type(), " input), got ",
                   v.scalar_type());
  TORCH_CHECK_VALUE(v.sizes() == shape, "sltt_kernels: ", name, " must have shape ", shape, ", got ", v.sizes());
}

// A learnable k = 1/tau: one element in the state dtype, on the input's device, for the LIF
// model only (an IF neuron has no time constant; the leaky one's decay is beta).
inline at::Tensor checked_k(const c10::optional<at::Tensor>& k, const at::Tensor& like, const LIFOptions& o) {
  if (!k.has_value() || !k->defined()) return at::Tensor();
  TORCH_CHECK_VALUE(o.neuron == Neuron::LIF, "sltt_kernels: k (a learnable time constant) is not supported by neuron='",
                    neuron_name(o.neuron), "'");
  check_device(*k, "k", like, "the input");
  TORCH_CHECK_TYPE(k->scalar_type() == state_dtype(like.scalar_type()), "sltt_kernels: k must be ",
                   state_dtype(like.scalar_type()), ", got ", k->scalar_type());
  TORCH_CHECK_VALUE(k->numel() == 1, "sltt_kernels: k must have one element, got shape ", k->sizes());
  return k->reshape({1}).contiguous();
}

// Shape of the saved tensor for T steps of N neurons.
inline std::vector<int64_t> saved_shape(Save s, int64_t T, int64_t N) {
  switch (s) {
    case Save::Sg: return {T, lif_mask_words(N)};
    case Save::SgSpike:
    case Save::SgReset: return {2, T, lif_mask_words(N)};
    case Save::H:
    case Save::H16: return {T, N};
    case Save::HV0: return {T + 1, N};
    default: return {0};
  }
}

inline bool saves_h(Save s) { return s == Save::H || s == Save::HV0; }

inline bool is_16bit(at::ScalarType t) { return t == at::kHalf || t == at::kBFloat16; }

// The dtype of `saved`: int32 masks, h in the state dtype, or h - theta in x's 16-bit dtype.
inline at::ScalarType saved_dtype(Save s, at::ScalarType x) {
  if (s == Save::H16) {
    TORCH_CHECK_TYPE(is_16bit(x), "sltt_kernels: save='h16' needs float16 or bfloat16 input, got ", x);
    return x;
  }
  return saves_h(s) ? state_dtype(x) : at::kInt;
}

inline void check_saved(const at::Tensor& saved, const LIFOptions& o, const at::Tensor& grad, int64_t T, int64_t N) {
  const auto want = saved_shape(o.save, T, N);
  check_device(saved, "saved", grad, "the gradient");
  TORCH_CHECK_VALUE(saved.sizes() == at::IntArrayRef(want), "sltt_kernels: saved must have shape ",
                    at::IntArrayRef(want), " for save='", save_name(o.save), "', got ", saved.sizes());
  const auto dt = saved_dtype(o.save, grad.scalar_type());
  TORCH_CHECK_TYPE(saved.scalar_type() == dt, "sltt_kernels: saved must be ", dt, " for save='", save_name(o.save),
                   "', got ", saved.scalar_type());
  TORCH_CHECK_VALUE(saved.is_contiguous(), "sltt_kernels: saved must be contiguous (as the forward returned it)");
}

// ---------------------------------------------------------------------------------------------
// The op bodies every backend shares: checks, contiguous inputs, output allocation, and the
// single-step ops as T = 1 views of the multi-step ones. A backend supplies only `launch`,
// which returns false when the configuration has no kernel.

struct FwdTensors {
  at::Tensor x;       // [T, ...] contiguous
  at::Tensor v0;      // [...] contiguous, or undefined
  at::Tensor k;       // [1], or undefined
  at::Tensor spikes;  // [T, ...]
  at::Tensor v_last;  // [...]
  at::Tensor saved;   // see lif_math.h, Save
  int64_t T;
  int64_t N;
};

inline FwdTensors prepare_fwd(const at::Tensor& x_in, const c10::optional<at::Tensor>& v0,
                              const c10::optional<at::Tensor>& k, const LIFOptions& o) {
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
  f.k = checked_k(k, f.x, o);
  f.spikes = at::empty(f.x.sizes(), f.x.options());
  f.v_last = at::empty(state_shape, f.x.options().dtype(sdt));
  f.saved = at::empty(saved_shape(o.save, f.T, f.N), f.x.options().dtype(saved_dtype(o.save, f.x.scalar_type())));
  return f;
}

template <typename X, typename S>
FwdArgs<X, S> fwd_args(const FwdTensors& f, const LIFOptions& o) {
  const bool mask = o.save == Save::Sg || o.save == Save::SgSpike || o.save == Save::SgReset;
  FwdArgs<X, S> a;
  a.x = static_cast<const X*>(f.x.const_data_ptr());
  a.v0 = f.v0.defined() ? static_cast<const S*>(f.v0.const_data_ptr()) : nullptr;
  a.k = f.k.defined() ? static_cast<const S*>(f.k.const_data_ptr()) : nullptr;
  a.spikes = static_cast<X*>(f.spikes.mutable_data_ptr());
  a.v_last = static_cast<S*>(f.v_last.mutable_data_ptr());
  a.mask = mask ? f.saved.mutable_data_ptr<int32_t>() : nullptr;
  a.h = saves_h(o.save) ? static_cast<S*>(f.saved.mutable_data_ptr()) : nullptr;
  a.d16 = o.save == Save::H16 ? static_cast<X*>(f.saved.mutable_data_ptr()) : nullptr;
  a.T = f.T;
  a.N = f.N;
  a.p = cast_params<S>(o.params());
  return a;
}

struct BwdTensors {
  at::Tensor grad_spikes;  // [T, ...] contiguous
  at::Tensor grad_v_last;  // [...] contiguous, or undefined
  at::Tensor saved;
  at::Tensor k;            // [1], or undefined
  at::Tensor grad_x;       // [T, ...]
  at::Tensor grad_v0;      // [...]
  at::Tensor grad_k_partial;  // [N] with k, else undefined
  int64_t T;
  int64_t N;
};

inline BwdTensors prepare_bwd(const at::Tensor& gs_in, const c10::optional<at::Tensor>& gv_last,
                              const at::Tensor& saved, const c10::optional<at::Tensor>& k, const LIFOptions& o) {
  check_input(gs_in, "grad_spikes", /*multistep=*/true);
  TORCH_CHECK_VALUE(o.save != Save::None,
                    "sltt_kernels: the forward saved nothing (save='none'), so there is no backward");
  BwdTensors b;
  b.grad_spikes = gs_in.contiguous();
  b.T = b.grad_spikes.size(0);
  b.N = b.grad_spikes.numel() / b.T;
  const auto state_shape = b.grad_spikes.sizes().slice(1);
  const auto sdt = state_dtype(b.grad_spikes.scalar_type());
  check_saved(saved, o, b.grad_spikes, b.T, b.N);
  b.saved = saved;
  b.k = checked_k(k, b.grad_spikes, o);
  if (gv_last.has_value() && gv_last->defined()) {
    // checked in both modes: a wrong tensor is a mistake even where SLTT does not read it
    check_state(*gv_last, "grad_v_last", b.grad_spikes, state_shape);
    if (o.grad == Grad::BPTT) b.grad_v_last = gv_last->contiguous();
  }
  b.grad_x = at::empty(b.grad_spikes.sizes(), b.grad_spikes.options());
  // SLTT: no gradient reaches v0.
  b.grad_v0 = o.grad == Grad::BPTT ? at::empty(state_shape, b.grad_spikes.options().dtype(sdt))
                                   : at::zeros(state_shape, b.grad_spikes.options().dtype(sdt));
  // The gradient of k is computed where the forward saved what it needs (h_v0); a constant k
  // only sets the parameters.
  if (b.k.defined() && o.save == Save::HV0) b.grad_k_partial = at::zeros({b.N}, b.grad_spikes.options().dtype(sdt));
  return b;
}

template <typename X, typename S>
BwdArgs<X, S> bwd_args(const BwdTensors& b, const LIFOptions& o) {
  BwdArgs<X, S> a;
  a.grad_spikes = static_cast<const X*>(b.grad_spikes.const_data_ptr());
  a.grad_v_last = b.grad_v_last.defined() ? static_cast<const S*>(b.grad_v_last.const_data_ptr()) : nullptr;
  const bool mask = o.save == Save::Sg || o.save == Save::SgSpike || o.save == Save::SgReset;
  a.mask = mask ? b.saved.const_data_ptr<int32_t>() : nullptr;
  a.h = saves_h(o.save) ? static_cast<const S*>(b.saved.const_data_ptr()) : nullptr;
  a.d16 = o.save == Save::H16 ? static_cast<const X*>(b.saved.const_data_ptr()) : nullptr;
  a.k = b.k.defined() ? static_cast<const S*>(b.k.const_data_ptr()) : nullptr;
  a.grad_x = static_cast<X*>(b.grad_x.mutable_data_ptr());
  a.grad_v0 = o.grad == Grad::BPTT ? static_cast<S*>(b.grad_v0.mutable_data_ptr()) : nullptr;
  a.grad_k = b.grad_k_partial.defined() ? static_cast<S*>(b.grad_k_partial.mutable_data_ptr()) : nullptr;
  a.T = b.T;
  a.N = b.N;
  a.p = cast_params<S>(o.params());
  return a;
}

inline at::Tensor grad_k_of(const BwdTensors& b, const at::Tensor& like) {
  if (!b.grad_k_partial.defined()) return at::empty({0}, like.options().dtype(state_dtype(like.scalar_type())));
  return b.grad_k_partial.sum();
}

// The four ops, given a backend's multi-step forward and backward:
//   FwdFn: bool(const FwdTensors&, const LIFOptions&)   BwdFn: bool(const BwdTensors&, const LIFOptions&)
// each returning false when the configuration has no kernel.
inline void check_launched(bool ok, const LIFOptions& o, const char* what) {
  TORCH_CHECK_VALUE(ok, "sltt_kernels: no ", what, " kernel for this configuration (save='", save_name(o.save),
                    "'); build the op arguments with sltt_kernels._config.neuron_args");
}

template <typename FwdFn>
std::tuple<at::Tensor, at::Tensor, at::Tensor> multistep_fwd_op(FwdFn run, const at::Tensor& x,
                                                               const c10::optional<at::Tensor>& v0,
                                                               const c10::optional<at::Tensor>& k,
                                                               const LIFOptions& o) {
  FwdTensors f = prepare_fwd(x, v0, k, o);
  if (f.N > 0) check_launched(run(f, o), o, "forward");
  return {f.spikes, f.v_last, f.saved};
}

template <typename BwdFn>
std::tuple<at::Tensor, at::Tensor, at::Tensor> multistep_bwd_op(BwdFn run, const at::Tensor& grad_spikes,
                                                               const c10::optional<at::Tensor>& grad_v_last,
                                                               const at::Tensor& saved,
                                                               const c10::optional<at::Tensor>& k,
                                                               const LIFOptions& o) {
  BwdTensors b = prepare_bwd(grad_spikes, grad_v_last, saved, k, o);
  if (b.N > 0) check_launched(run(b, o), o, "backward");
  return {b.grad_x, b.grad_v0, grad_k_of(b, b.grad_spikes)};
}

// One step is the multi-step op with T = 1 on [1, N] views.
template <typename FwdFn>
std::tuple<at::Tensor, at::Tensor, at::Tensor> step_fwd_op(FwdFn run, const at::Tensor& x, const at::Tensor& v,
                                                          const c10::optional<at::Tensor>& k, const LIFOptions& o) {
  check_input(x, "x", /*multistep=*/false);
  check_state(v, "v", x, x.sizes());
  auto out = multistep_fwd_op(run, x.reshape({1, x.numel()}), v.reshape({x.numel()}), k, o);
  return {std::get<0>(out).view(x.sizes()), std::get<1>(out).view(x.sizes()), std::get<2>(out)};
}

template <typename BwdFn>
std::tuple<at::Tensor, at::Tensor, at::Tensor> step_bwd_op(BwdFn run, const at::Tensor& grad_spike,
                                                          const c10::optional<at::Tensor>& grad_v_new,
                                                          const at::Tensor& saved, const c10::optional<at::Tensor>& k,
                                                          const LIFOptions& o) {
  check_input(grad_spike, "grad_spike", /*multistep=*/false);
  const int64_t N = grad_spike.numel();
  c10::optional<at::Tensor> gv;
  if (grad_v_new.has_value() && grad_v_new->defined()) {
    check_state(*grad_v_new, "grad_v_new", grad_spike, grad_spike.sizes());
    gv = grad_v_new->reshape({N});
  }
  auto out = multistep_bwd_op(run, grad_spike.reshape({1, N}), gv, saved, k, o);
  return {std::get<0>(out).view(grad_spike.sizes()), std::get<1>(out).view(grad_spike.sizes()), std::get<2>(out)};
}

// The neuron arguments of the schema as C++ parameters, and their forwarding to parse_options.
#define SLTT_NEURON_PARAMS                                                                                  \
  c10::string_view neuron, double decay, double input_gain, bool decay_input, double v_threshold,          \
      c10::string_view reset, double v_reset, bool detach_reset, c10::string_view surrogate,               \
      double surrogate_alpha, c10::string_view save, c10::string_view grad
#define SLTT_PARSE_NEURON_PARAMS                                                                         \
  ::sltt::parse_options(neuron, decay, input_gain, decay_input, v_threshold, reset, v_reset, detach_reset, \
                        surrogate, surrogate_alpha, save, grad)

// Defines the four op functions neuron_multistep_fwd_PREFIX, ... for a backend whose multi-step
// kernels are the functors FWD and BWD, so the bindings only write the launches.
#define SLTT_DEFINE_OPS(PREFIX, FWD, BWD)                                                                     \
  std::tuple<at::Tensor, at::Tensor, at::Tensor> neuron_multistep_fwd_##PREFIX(                                  \
      const at::Tensor& x, const c10::optional<at::Tensor>& v0, const c10::optional<at::Tensor>& k,           \
      SLTT_NEURON_PARAMS) {                                                                                   \
    return ::sltt::multistep_fwd_op(FWD, x, v0, k, SLTT_PARSE_NEURON_PARAMS);                                 \
  }                                                                                                           \
  std::tuple<at::Tensor, at::Tensor, at::Tensor> neuron_multistep_bwd_##PREFIX(                                  \
      const at::Tensor& grad_spikes, const c10::optional<at::Tensor>& grad_v_last, const at::Tensor& saved,   \
      const c10::optional<at::Tensor>& k, SLTT_NEURON_PARAMS) {                                               \
    return ::sltt::multistep_bwd_op(BWD, grad_spikes, grad_v_last, saved, k, SLTT_PARSE_NEURON_PARAMS);       \
  }                                                                                                           \
  std::tuple<at::Tensor, at::Tensor, at::Tensor> neuron_step_fwd_##PREFIX(                                       \
      const at::Tensor& x, const at::Tensor& v, const c10::optional<at::Tensor>& k, SLTT_NEURON_PARAMS) {     \
    return ::sltt::step_fwd_op(FWD, x, v, k, SLTT_PARSE_NEURON_PARAMS);                                       \
  }                                                                                                           \
  std::tuple<at::Tensor, at::Tensor, at::Tensor> neuron_step_bwd_##PREFIX(                                       \
      const at::Tensor& grad_spike, const c10::optional<at::Tensor>& grad_v_new, const at::Tensor& saved,     \
      const c10::optional<at::Tensor>& k, SLTT_NEURON_PARAMS) {                                               \
    return ::sltt::step_bwd_op(BWD, grad_spike, grad_v_new, saved, k, SLTT_PARSE_NEURON_PARAMS);              \
  }

}  // namespace sltt
