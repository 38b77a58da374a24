// Torch-side glue shared by the backend bindings: parsing the op arguments, their checks, and
// output allocation. The kernels themselves never see a torch type.
//
// The neuron's argument rules live in Python (sltt_kernels/_config.py, check_args), which checks
// every call that passes through Python. The native ops check, first, what a raw call could use
// to read or write out of bounds: every tensor's device, dtype, shape and layout against the
// others, and that the configuration has a kernel (docs/design.md, section 4). They also repeat,
// on purpose and with the same wording, the value rules a kernel relies on (check_values,
// checked_k): a raw call (from C++, or under inference_mode, where no Python wrapper runs) must
// not run a configuration the reference does not define. A test draws random arguments and
// checks that both sides accept the same ones (tests/test_raw_ops.py).
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
#include "neurons/neurons.h"

namespace sltt {

// The neuron arguments of every op, in schema order: X(type in the schema, name, parsed type).
// The one C++ record of sltt_kernels._config.NeuronArgs (a test reads this list and compares
// it with NeuronArgs' fields and types: tests/test_csrc_lists.py); the op parameters
// (SLTT_NEURON_PARAMS), their forwarding (SLTT_PARSE_NEURON_PARAMS) and NeuronOptions are made
// from it. A string argument is parsed into the enum of its list (lif_math.h, neurons.h).
#define SLTT_NEURON_ARGS(X)                       \
  X(c10::string_view, neuron, Neuron)             \
  X(double, decay, double)                        \
  X(double, input_gain, double)                   \
  X(bool, decay_input, bool)                      \
  X(double, v_threshold, double)                  \
  X(c10::string_view, reset, Reset)               \
  X(double, v_reset, double)                      \
  X(bool, detach_reset, bool)                     \
  X(c10::string_view, surrogate, Surrogate)       \
  X(double, surrogate_alpha, double)              \
  X(c10::string_view, save, Save)                 \
  X(c10::string_view, grad, Grad)

// The arguments as the schema passes them.
struct NeuronArgs {
#define SLTT_ARG_FIELD_(type, name, parsed) type name;
  SLTT_NEURON_ARGS(SLTT_ARG_FIELD_)
#undef SLTT_ARG_FIELD_
};

// The model's traits at run time (csrc/neurons/neurons.h says what each means).
struct ModelTraits {
  bool learnable_k;
  bool no_leak;
  bool unit_gain_detached_reset;
  bool k_sets_gain;
  bool (*has_reset)(Reset);
};

inline ModelTraits traits_of(Neuron nm) {
  ModelTraits t{false, false, false, false, [](Reset) { return false; }};
  with_constant(nm, [&](auto nm_c) {
    using M = NeuronModel<decltype(nm_c)::value>;
    t = ModelTraits{M::kLearnableK, M::kNoLeak, M::kUnitGainDetachedReset, M::kKSetsGain,
                    [](Reset r) { return M::has_reset(r); }};
    return true;
  });
  return t;
}

// The arguments parsed: strings become enums (decay is lam, input_gain c, v_threshold theta,
// v_reset v_r, surrogate_alpha alpha in the kernels' NeuronParams).
struct NeuronOptions {
#define SLTT_OPTION_FIELD_(type, name, parsed) parsed name;
  SLTT_NEURON_ARGS(SLTT_OPTION_FIELD_)
#undef SLTT_OPTION_FIELD_

  NeuronParams<double> params() const {
    NeuronParams<double> p;
    p.lam = decay;
    p.c = input_gain;
    p.theta = v_threshold;
    p.v_r = v_reset;
    p.alpha = surrogate_alpha;
    p.alpha2 = surrogate_alpha * surrogate_alpha;
    p.half_width = surrogate_alpha * 0.5;
    p.inv_width = 1.0 / surrogate_alpha;
    // read only with a k tensor, and only for a model whose k sets the gain (kKSetsGain), whatever
    // a raw call passes for another (SLTT's shared kernel reads every model's k as the LIF's)
    p.c_is_k = decay_input && traits_of(neuron).k_sets_gain;
    return p;
  }
};

// "'a', 'b' or 'c'" (last_separator " or "; ", " gives "'a', 'b', 'c'"): the names of E's
// values that `keep` accepts, in list order.
template <typename E, typename Keep>
std::string quoted_names(Keep keep, const char* last_separator = " or ") {
  std::vector<std::string> names;
  for (const auto& item : EnumInfo<E>::kItems)
    if (keep(item.value)) names.push_back(std::string("'") + item.name + "'");
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += i + 1 == names.size() ? last_separator : ", ";
    out += names[i];
  }
  return out;
}

// A string argument's value in the list of E, else an error naming the argument and its values.
template <typename E>
E parse_enum(c10::string_view s) {
  for (const auto& item : EnumInfo<E>::kItems)
    if (s == c10::string_view(item.name)) return item.value;
  TORCH_CHECK_VALUE(false, "sltt_kernels: ", EnumInfo<E>::kArg, " must be ",
                    quoted_names<E>([](E) { return true; }), ", got '", std::string(s), "'");
}

template <typename Parsed, typename Raw>
Parsed parse_arg(Raw raw) {
  if constexpr (std::is_enum<Parsed>::value) {
    return parse_enum<Parsed>(raw);
  } else {
    return raw;
  }
}

// A finite number in [low, high] (an exclusive low when low_inclusive is false).
inline void check_number(const char* name, double v, double low = -INFINITY, bool low_inclusive = true,
                         double high = INFINITY) {
  TORCH_CHECK_VALUE(std::isfinite(v), "sltt_kernels: ", name, " must be finite, got ", v);
  TORCH_CHECK_VALUE(low_inclusive ? v >= low : v > low, "sltt_kernels: ", name, " must be ",
                    low_inclusive ? ">= " : "> ", low, ", got ", v);
  TORCH_CHECK_VALUE(v <= high, "sltt_kernels: ", name, " must be <= ", high, ", got ", v);
}

// The value rules of the neuron arguments, read from the model's traits. sltt_kernels/_config.py
// (check_args) owns them and checks every Python-side call; the native ops repeat the ones a
// kernel relies on, with the same wording, because a raw call must not run a configuration the
// reference does not define: an IF neuron with input_gain 0.5 charged without it and scaled its
// gradient by it (see the comment at the top of this file).
inline void check_values(const NeuronOptions& o) {
  check_number("decay", o.decay, 0.0, true, 1.0);
  check_number("input_gain", o.input_gain, 0.0, false);
  check_number("v_threshold", o.v_threshold);
  check_number("v_reset", o.v_reset);
  check_number("surrogate_alpha", o.surrogate_alpha, 0.0, false);
  const ModelTraits m = traits_of(o.neuron);
  TORCH_CHECK_VALUE(m.has_reset(o.reset), "sltt_kernels: reset must be one of ", quoted_names<Reset>(m.has_reset, ", "),
                    " for this neuron, got '", name_of(o.reset), "'");
  TORCH_CHECK_VALUE(!m.no_leak || (o.decay == 1.0 && o.input_gain == 1.0), "sltt_kernels: neuron='",
                    name_of(o.neuron), "' has no leak: decay and input_gain must be 1.0, got ", o.decay, ", ",
                    o.input_gain);
  TORCH_CHECK_VALUE(!m.unit_gain_detached_reset || (o.input_gain == 1.0 && o.detach_reset), "sltt_kernels: neuron='",
                    name_of(o.neuron), "' needs input_gain=1.0 and detach_reset=True (its reset is detached)");
  TORCH_CHECK_VALUE(o.reset == Reset::Hard || o.v_reset == 0.0,
                    "sltt_kernels: v_reset must be 0.0 unless reset='hard', got ", o.v_reset);
}

inline NeuronOptions parse_options(const NeuronArgs& a) {
  NeuronOptions o;
#define SLTT_PARSE_FIELD_(type, name, parsed) o.name = parse_arg<parsed>(a.name);
  SLTT_NEURON_ARGS(SLTT_PARSE_FIELD_)
#undef SLTT_PARSE_FIELD_
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

// A per-neuron parameter tensor as the kernels read it: one element (step 0) or one per neuron
// (step 1), contiguous; undefined when the op was not given one.
struct ParamTensor {
  at::Tensor t;
  int64_t step = 0;
  bool defined() const { return t.defined(); }
  template <typename S>
  const S* ptr() const { return t.defined() ? static_cast<const S*>(t.const_data_ptr()) : nullptr; }
};

// k or threshold: in the state dtype, on the input's device, with one element or the state's
// shape (one per neuron).
// A per-neuron tensor argument (k, threshold, in_scale, in_shift): on the input's device, in the
// state dtype, with one element or the state's shape.
inline void check_param_tensor(const at::Tensor& t, const char* name, const at::Tensor& like,
                               at::IntArrayRef state_shape) {
  check_device(t, name, like, "the input");
  TORCH_CHECK_TYPE(t.scalar_type() == state_dtype(like.scalar_type()), "sltt_kernels: ", name, " must be ",
                   state_dtype(like.scalar_type()), ", got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.numel() == 1 || t.sizes() == state_shape, "sltt_kernels: ", name,
                    " must have one element or the state's shape ", state_shape, " (one per neuron), got shape ",
                    t.sizes());
}

inline ParamTensor checked_param(const c10::optional<at::Tensor>& given, const char* name, const at::Tensor& like,
                                 at::IntArrayRef state_shape) {
  ParamTensor out;
  if (!given.has_value() || !given->defined()) return out;
  const at::Tensor& t = *given;
  check_param_tensor(t, name, like, state_shape);
  if (t.numel() == 1) {
    out.t = t.reshape({1}).contiguous();
    out.step = 0;
    return out;
  }
  out.t = t.reshape({t.numel()}).contiguous();
  out.step = 1;
  return out;
}

// in_scale or in_shift as the kernels read it (lif_args.h, ChannelValues), the rule of
// sltt_kernels._config.channel_values: one value; a tensor of the state's shape that varies along
// one dimension only (a per-channel value expanded to the state, stride 0 elsewhere), read in
// place; anything else from a contiguous copy.
struct ChannelTensor {
  at::Tensor t;  // what the kernels read (kept alive here), or undefined
  int64_t inner = 1;
  int64_t count = 1;
  int64_t stride = 0;
  template <typename S>
  ChannelValues<S> values() const {
    ChannelValues<S> v;
    if (!t.defined()) return v;
    v.p = static_cast<const S*>(t.const_data_ptr());
    v.inner = inner;
    v.count = count;
    v.stride = stride;
    return v;
  }
};

inline ChannelTensor channel_tensor(const at::Tensor& t, at::IntArrayRef state_shape) {
  ChannelTensor out;
  out.t = t;
  if (t.numel() <= 1) return out;  // one value (an empty state launches nothing)
  std::vector<int64_t> varying;
  for (int64_t d = 0; d < t.dim(); ++d)
    if (t.size(d) > 1 && t.stride(d) != 0) varying.push_back(d);
  if (varying.empty()) return out;  // every element is the first
  if (varying.size() == 1) {
    const int64_t d = varying[0];
    int64_t inner = 1;
    for (size_t i = size_t(d) + 1; i < state_shape.size(); ++i) inner *= state_shape[i];
    out.inner = inner;
    out.count = t.size(d);
    out.stride = t.stride(d);
    return out;
  }
  out.t = t.contiguous();
  out.count = t.numel();
  out.stride = 1;
  return out;
}

// The forward ops' in_scale and in_shift (the neuron's input is x * in_scale + in_shift): given
// together or not at all, in the state dtype, on the input's device, one element or the state's
// shape.
struct InputAffine {
  ChannelTensor scale;
  ChannelTensor shift;
};

inline InputAffine checked_input_affine(const c10::optional<at::Tensor>& in_scale,
                                        const c10::optional<at::Tensor>& in_shift, const at::Tensor& like,
                                        at::IntArrayRef state_shape) {
  const bool has_scale = in_scale.has_value() && in_scale->defined();
  const bool has_shift = in_shift.has_value() && in_shift->defined();
  TORCH_CHECK_VALUE(has_scale == has_shift, "sltt_kernels: ", has_scale ? "in_scale" : "in_shift", " was given without ",
                    has_scale ? "in_shift" : "in_scale",
                    ": the two are given together (the neuron's input is x * in_scale + in_shift)");
  InputAffine out;
  if (!has_scale) return out;
  const std::pair<const char*, const at::Tensor*> both[] = {{"in_scale", &*in_scale}, {"in_shift", &*in_shift}};
  for (const auto& named : both) check_param_tensor(*named.second, named.first, like, state_shape);
  out.scale = channel_tensor(*in_scale, state_shape);
  out.shift = channel_tensor(*in_shift, state_shape);
  return out;
}

// The model's k (LIF: 1/tau, lam = 1 - k; leaky: beta = lam), for a model that takes one
// (kLearnableK; an IF neuron has no time constant).
inline ParamTensor checked_k(const c10::optional<at::Tensor>& k, const at::Tensor& like, const NeuronOptions& o,
                             at::IntArrayRef state_shape) {
  if (!k.has_value() || !k->defined()) return ParamTensor();
  TORCH_CHECK_VALUE(traits_of(o.neuron).learnable_k,
                    "sltt_kernels: k (a learnable time constant) is not supported by neuron='", name_of(o.neuron), "'");
  return checked_param(k, "k", like, state_shape);
}

// Shape of the saved tensor for T steps of N neurons.
inline std::vector<int64_t> saved_shape(Save s, int64_t T, int64_t N) {
  switch (s) {
    case Save::Sg:
    case Save::SpikeState: return {T, lif_mask_words(N)};
    case Save::SgSpike:
    case Save::SgReset: return {2, T, lif_mask_words(N)};
    case Save::H:
    case Save::H16: return {T, N};
    case Save::HV0: return {T + 1, N};
    default: return {0};
  }
}

inline bool saves_h(Save s) { return s == Save::H || s == Save::HV0; }

// The save kinds kept as int32 bit planes.
inline bool saves_mask(Save s) {
  return s == Save::Sg || s == Save::SgSpike || s == Save::SgReset || s == Save::SpikeState;
}

// Save::SpikeState rebuilds d from the step's output state, which exists for one step only: the
// multi-step ops refuse it (a raw call would otherwise read a state it was never given).
inline void check_not_spike_state(const NeuronOptions& o, const char* op) {
  TORCH_CHECK_VALUE(o.save != Save::SpikeState, "sltt_kernels: save='spike_state' serves the single-step ops only (",
                    op, " got it)");
}

inline bool is_16bit(at::ScalarType t) { return t == at::kHalf || t == at::kBFloat16; }

// The dtype of `saved`: int32 masks, h in the state dtype, or h - theta in x's 16-bit dtype.
inline at::ScalarType saved_dtype(Save s, at::ScalarType x) {
  if (s == Save::H16) {
    TORCH_CHECK_TYPE(is_16bit(x), "sltt_kernels: save='h16' needs float16 or bfloat16 input, got ", x);
    return x;
  }
  return saves_h(s) ? state_dtype(x) : at::kInt;
}

inline void check_saved(const at::Tensor& saved, const NeuronOptions& o, const at::Tensor& grad, int64_t T, int64_t N) {
  const auto want = saved_shape(o.save, T, N);
  check_device(saved, "saved", grad, "the gradient");
  TORCH_CHECK_VALUE(saved.sizes() == at::IntArrayRef(want), "sltt_kernels: saved must have shape ",
                    at::IntArrayRef(want), " for save='", name_of(o.save), "', got ", saved.sizes());
  const auto dt = saved_dtype(o.save, grad.scalar_type());
  TORCH_CHECK_TYPE(saved.scalar_type() == dt, "sltt_kernels: saved must be ", dt, " for save='", name_of(o.save),
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
  ParamTensor k;          // [1] or [N], or undefined
  ParamTensor threshold;  // [1] or [N], or undefined
  InputAffine affine;     // in_scale, in_shift, or undefined
  at::Tensor spikes;  // [T, ...]
  at::Tensor v_last;  // [...]
  at::Tensor saved;   // see lif_math.h, Save
  int64_t T;
  int64_t N;
};

inline FwdTensors prepare_fwd(const at::Tensor& x_in, const c10::optional<at::Tensor>& v0,
                              const c10::optional<at::Tensor>& k, const NeuronOptions& o,
                              const c10::optional<at::Tensor>& threshold, InputAffine affine) {
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
  f.k = checked_k(k, f.x, o, state_shape);
  f.threshold = checked_param(threshold, "threshold", f.x, state_shape);
  f.affine = std::move(affine);
  f.spikes = at::empty(f.x.sizes(), f.x.options());
  f.v_last = at::empty(state_shape, f.x.options().dtype(sdt));
  f.saved = at::empty(saved_shape(o.save, f.T, f.N), f.x.options().dtype(saved_dtype(o.save, f.x.scalar_type())));
  return f;
}

template <typename X, typename S>
FwdArgs<X, S> fwd_args(const FwdTensors& f, const NeuronOptions& o) {
  const bool mask = saves_mask(o.save);
  FwdArgs<X, S> a;
  a.x = static_cast<const X*>(f.x.const_data_ptr());
  a.v0 = f.v0.defined() ? static_cast<const S*>(f.v0.const_data_ptr()) : nullptr;
  a.k = f.k.ptr<S>();
  a.k_step = f.k.step;
  a.theta = f.threshold.ptr<S>();
  a.theta_step = f.threshold.step;
  a.in_scale = f.affine.scale.values<S>();
  a.in_shift = f.affine.shift.values<S>();
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
  ParamTensor k;           // [1] or [N], or undefined
  ParamTensor threshold;   // [1] or [N], or undefined
  at::Tensor v_new;        // [N] contiguous (Save::SpikeState), or undefined
  at::Tensor grad_x;       // [T, ...]
  at::Tensor grad_v0;      // [...]
  at::Tensor grad_k_partial;  // [N] with k, else undefined
  at::Tensor grad_theta_partial;  // [N] with a threshold tensor, else undefined
  std::vector<int64_t> state_shape;
  int64_t T;
  int64_t N;
};

inline BwdTensors prepare_bwd(const at::Tensor& gs_in, const c10::optional<at::Tensor>& gv_last,
                              const at::Tensor& saved, const c10::optional<at::Tensor>& k, const NeuronOptions& o,
                              const c10::optional<at::Tensor>& v_new,
                              const c10::optional<at::Tensor>& threshold) {
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
  b.state_shape = state_shape.vec();
  b.k = checked_k(k, b.grad_spikes, o, state_shape);
  b.threshold = checked_param(threshold, "threshold", b.grad_spikes, state_shape);
  const bool has_v_new = v_new.has_value() && v_new->defined();
  if (o.save == Save::SpikeState) {
    // d = h - theta is rebuilt from the step's output state: without it there is nothing to read
    TORCH_CHECK_VALUE(has_v_new, "sltt_kernels: v_new (the step's output state) is needed by save='spike_state'");
    check_state(*v_new, "v_new", b.grad_spikes, state_shape);
    b.v_new = v_new->contiguous();
  } else {
    TORCH_CHECK_VALUE(!has_v_new, "sltt_kernels: v_new is read only with save='spike_state', got save='",
                      name_of(o.save), "'");
  }
  if (gv_last.has_value() && gv_last->defined()) {
    // checked in both modes: a wrong tensor is a mistake even where SLTT does not read it
    check_state(*gv_last, "grad_v_last", b.grad_spikes, state_shape);
    if (o.grad == Grad::BPTT) b.grad_v_last = gv_last->contiguous();
  }
  b.grad_x = at::empty(b.grad_spikes.sizes(), b.grad_spikes.options());
  // SLTT: no gradient reaches v0.
  b.grad_v0 = o.grad == Grad::BPTT ? at::empty(state_shape, b.grad_spikes.options().dtype(sdt))
                                   : at::zeros(state_shape, b.grad_spikes.options().dtype(sdt));
  // The gradients of k and the threshold are computed where the forward saved what they need
  // (h_v0); elsewhere they only set the parameters.
  if (b.k.defined() && o.save == Save::HV0) b.grad_k_partial = at::zeros({b.N}, b.grad_spikes.options().dtype(sdt));
  if (b.threshold.defined() && o.save == Save::HV0)
    b.grad_theta_partial = at::zeros({b.N}, b.grad_spikes.options().dtype(sdt));
  return b;
}

template <typename X, typename S>
BwdArgs<X, S> bwd_args(const BwdTensors& b, const NeuronOptions& o) {
  BwdArgs<X, S> a;
  a.grad_spikes = static_cast<const X*>(b.grad_spikes.const_data_ptr());
  a.grad_v_last = b.grad_v_last.defined() ? static_cast<const S*>(b.grad_v_last.const_data_ptr()) : nullptr;
  a.mask = saves_mask(o.save) ? b.saved.const_data_ptr<int32_t>() : nullptr;
  a.h = saves_h(o.save) ? static_cast<const S*>(b.saved.const_data_ptr()) : nullptr;
  a.d16 = o.save == Save::H16 ? static_cast<const X*>(b.saved.const_data_ptr()) : nullptr;
  a.k = b.k.ptr<S>();
  a.k_step = b.k.step;
  a.theta = b.threshold.ptr<S>();
  a.theta_step = b.threshold.step;
  a.v_new = b.v_new.defined() ? static_cast<const S*>(b.v_new.const_data_ptr()) : nullptr;
  a.grad_x = static_cast<X*>(b.grad_x.mutable_data_ptr());
  a.grad_v0 = o.grad == Grad::BPTT ? static_cast<S*>(b.grad_v0.mutable_data_ptr()) : nullptr;
  a.grad_k = b.grad_k_partial.defined() ? static_cast<S*>(b.grad_k_partial.mutable_data_ptr()) : nullptr;
  a.grad_theta = b.grad_theta_partial.defined() ? static_cast<S*>(b.grad_theta_partial.mutable_data_ptr()) : nullptr;
  a.T = b.T;
  a.N = b.N;
  a.p = cast_params<S>(o.params());
  return a;
}

// The gradient of a parameter tensor from its per-neuron sums: summed for one element (a
// 0-dim tensor), else in the state's shape; empty where it was not computed.
inline at::Tensor param_grad(const at::Tensor& partial, const ParamTensor& param, const BwdTensors& b) {
  if (!partial.defined())
    return at::empty({0}, b.grad_spikes.options().dtype(state_dtype(b.grad_spikes.scalar_type())));
  if (param.step == 0) return partial.sum();
  return partial.view(b.state_shape);
}

// The four ops, given a backend's multi-step forward and backward:
//   FwdFn: bool(const FwdTensors&, const NeuronOptions&)   BwdFn: bool(const BwdTensors&, const NeuronOptions&)
// each returning false when the configuration has no kernel.
inline void check_launched(bool ok, const NeuronOptions& o, const char* what) {
  TORCH_CHECK_VALUE(ok, "sltt_kernels: no ", what, " kernel for this configuration (save='", name_of(o.save),
                    "'); sltt_kernels._config.check_args says which save kinds serve a configuration");
}

template <typename FwdFn>
std::tuple<at::Tensor, at::Tensor, at::Tensor> multistep_fwd_op(FwdFn run, const at::Tensor& x,
                                                               const c10::optional<at::Tensor>& v0,
                                                               const c10::optional<at::Tensor>& k,
                                                               const NeuronOptions& o,
                                                               const c10::optional<at::Tensor>& threshold,
                                                               InputAffine affine) {
  FwdTensors f = prepare_fwd(x, v0, k, o, threshold, std::move(affine));
  if (f.N > 0) check_launched(run(f, o), o, "forward");
  return {f.spikes, f.v_last, f.saved};
}

using BwdOut = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

template <typename BwdFn>
BwdOut multistep_bwd_op(BwdFn run, const at::Tensor& grad_spikes, const c10::optional<at::Tensor>& grad_v_last,
                        const at::Tensor& saved, const c10::optional<at::Tensor>& k, const NeuronOptions& o,
                        const c10::optional<at::Tensor>& v_new, const c10::optional<at::Tensor>& threshold) {
  BwdTensors b = prepare_bwd(grad_spikes, grad_v_last, saved, k, o, v_new, threshold);
  if (b.N > 0) check_launched(run(b, o), o, "backward");
  return {b.grad_x, b.grad_v0, param_grad(b.grad_k_partial, b.k, b), param_grad(b.grad_theta_partial, b.threshold, b)};
}

// One step is the multi-step op with T = 1 on [1, N] views; a per-neuron k or threshold of the
// step's shape is read as [N], and its gradient comes back in that shape.
inline c10::optional<at::Tensor> flat_param(const c10::optional<at::Tensor>& t, int64_t N) {
  if (!t.has_value() || !t->defined() || t->numel() == 1 || t->numel() != N) return t;
  return t->reshape({N});
}

inline at::Tensor unflat_grad(const at::Tensor& g, const c10::optional<at::Tensor>& param) {
  if (g.dim() == 1 && g.numel() > 0 && param.has_value() && param->defined() && param->numel() == g.numel())
    return g.view(param->sizes());
  return g;
}

template <typename FwdFn>
std::tuple<at::Tensor, at::Tensor, at::Tensor> step_fwd_op(FwdFn run, const at::Tensor& x, const at::Tensor& v,
                                                          const c10::optional<at::Tensor>& k, const NeuronOptions& o,
                                                          const c10::optional<at::Tensor>& threshold,
                                                          const c10::optional<at::Tensor>& in_scale,
                                                          const c10::optional<at::Tensor>& in_shift) {
  check_input(x, "x", /*multistep=*/false);
  check_state(v, "v", x, x.sizes());
  const int64_t N = x.numel();
  // a parameter of the wrong shape is refused by name before the flattening could hide it
  checked_param(threshold, "threshold", x, x.sizes());
  if (k.has_value() && k->defined()) checked_k(k, x, o, x.sizes());
  // read against the step's own shape (its channel dimension), not the flattened [1, N]
  auto affine = checked_input_affine(in_scale, in_shift, x, x.sizes());
  auto out = multistep_fwd_op(run, x.reshape({1, N}), v.reshape({N}), flat_param(k, N), o, flat_param(threshold, N),
                              std::move(affine));
  return {std::get<0>(out).view(x.sizes()), std::get<1>(out).view(x.sizes()), std::get<2>(out)};
}

template <typename BwdFn>
BwdOut step_bwd_op(BwdFn run, const at::Tensor& grad_spike, const c10::optional<at::Tensor>& grad_v_new,
                   const at::Tensor& saved, const c10::optional<at::Tensor>& k, const NeuronOptions& o,
                   const c10::optional<at::Tensor>& v_new, const c10::optional<at::Tensor>& threshold) {
  check_input(grad_spike, "grad_spike", /*multistep=*/false);
  const int64_t N = grad_spike.numel();
  c10::optional<at::Tensor> gv;
  if (grad_v_new.has_value() && grad_v_new->defined()) {
    check_state(*grad_v_new, "grad_v_new", grad_spike, grad_spike.sizes());
    gv = grad_v_new->reshape({N});
  }
  c10::optional<at::Tensor> state;
  if (v_new.has_value() && v_new->defined()) {
    check_state(*v_new, "v_new", grad_spike, grad_spike.sizes());
    state = v_new->reshape({N});
  }
  checked_param(threshold, "threshold", grad_spike, grad_spike.sizes());
  if (k.has_value() && k->defined()) checked_k(k, grad_spike, o, grad_spike.sizes());
  auto out = multistep_bwd_op(run, grad_spike.reshape({1, N}), gv, saved, flat_param(k, N), o, state,
                              flat_param(threshold, N));
  return {std::get<0>(out).view(grad_spike.sizes()), std::get<1>(out).view(grad_spike.sizes()),
          unflat_grad(std::get<2>(out), k), unflat_grad(std::get<3>(out), threshold)};
}

// The neuron arguments of the schema as C++ parameters, from SLTT_NEURON_ARGS. Each comes with
// its leading comma (a parameter list cannot end in one), so they follow the last tensor
// parameter without a comma: f(const at::Tensor& x SLTT_NEURON_PARAMS).
#define SLTT_NEURON_PARAM_(type, name, parsed) , type name
#define SLTT_NEURON_PARAMS SLTT_NEURON_ARGS(SLTT_NEURON_PARAM_)
// Their forwarding to parse_options (a braced list may end in a comma).
#define SLTT_NEURON_ARG_NAME_(type, name, parsed) name,
#define SLTT_PARSE_NEURON_PARAMS ::sltt::parse_options(::sltt::NeuronArgs{SLTT_NEURON_ARGS(SLTT_NEURON_ARG_NAME_)})

// Defines the four op functions neuron_multistep_fwd_PREFIX, ... for a backend whose multi-step
// kernels are the functors FWD and BWD, so the bindings only write the launches.
#define SLTT_DEFINE_OPS(PREFIX, FWD, BWD)                                                                     \
  std::tuple<at::Tensor, at::Tensor, at::Tensor> neuron_multistep_fwd_##PREFIX(                                  \
      const at::Tensor& x, const c10::optional<at::Tensor>& v0, const c10::optional<at::Tensor>& k            \
          SLTT_NEURON_PARAMS, const c10::optional<at::Tensor>& threshold,                                      \
      const c10::optional<at::Tensor>& in_scale, const c10::optional<at::Tensor>& in_shift) {                 \
    const auto o = SLTT_PARSE_NEURON_PARAMS;                                                                  \
    ::sltt::check_not_spike_state(o, "neuron_multistep_fwd");                                                 \
    ::sltt::check_input(x, "x", /*multistep=*/true);                                                          \
    auto affine = ::sltt::checked_input_affine(in_scale, in_shift, x, x.sizes().slice(1));                    \
    return ::sltt::multistep_fwd_op(FWD, x, v0, k, o, threshold, std::move(affine));                          \
  }                                                                                                           \
  ::sltt::BwdOut neuron_multistep_bwd_##PREFIX(                                                                \
      const at::Tensor& grad_spikes, const c10::optional<at::Tensor>& grad_v_last, const at::Tensor& saved,   \
      const c10::optional<at::Tensor>& k SLTT_NEURON_PARAMS, const c10::optional<at::Tensor>& threshold) {   \
    const auto o = SLTT_PARSE_NEURON_PARAMS;                                                                  \
    ::sltt::check_not_spike_state(o, "neuron_multistep_bwd");                                                 \
    return ::sltt::multistep_bwd_op(BWD, grad_spikes, grad_v_last, saved, k, o, c10::nullopt, threshold);    \
  }                                                                                                           \
  std::tuple<at::Tensor, at::Tensor, at::Tensor> neuron_step_fwd_##PREFIX(                                       \
      const at::Tensor& x, const at::Tensor& v, const c10::optional<at::Tensor>& k SLTT_NEURON_PARAMS,      \
      const c10::optional<at::Tensor>& threshold, const c10::optional<at::Tensor>& in_scale,                  \
      const c10::optional<at::Tensor>& in_shift) {                                                            \
    return ::sltt::step_fwd_op(FWD, x, v, k, SLTT_PARSE_NEURON_PARAMS, threshold, in_scale, in_shift);        \
  }                                                                                                           \
  ::sltt::BwdOut neuron_step_bwd_##PREFIX(                                                                     \
      const at::Tensor& grad_spike, const c10::optional<at::Tensor>& grad_v_new, const at::Tensor& saved,     \
      const c10::optional<at::Tensor>& k SLTT_NEURON_PARAMS, const c10::optional<at::Tensor>& v_new,        \
      const c10::optional<at::Tensor>& threshold) {                                                           \
    return ::sltt::step_bwd_op(BWD, grad_spike, grad_v_new, saved, k, SLTT_PARSE_NEURON_PARAMS, v_new,       \
                               threshold);                                                                    \
  }

}  // namespace sltt
