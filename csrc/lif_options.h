// Torch-side glue shared by the backend bindings: parsing and checking the op arguments,
// and allocating the outputs. The kernels themselves never see a torch type.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Optional.h>
#include <c10/util/string_view.h>

#include <cmath>
#include <string>
#include <tuple>

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

  template <typename S>
  LIFParams<S> params() const {
    LIFParams<S> p;
    p.lam = S(1.0 - 1.0 / tau);
    p.c = decay_input ? S(1.0 / tau) : S(1);
    p.theta = S(v_threshold);
    p.v_r = S(v_r);
    p.alpha = S(surrogate_param);
    p.alpha2 = S(surrogate_param * surrogate_param);
    p.half_width = S(surrogate_param * 0.5);
    p.inv_width = S(1.0 / surrogate_param);
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

}  // namespace sltt
