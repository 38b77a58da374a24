// Torch-side glue shared by the pack/unpack bindings (cpu/spike_pack_cpu.cpp,
// cuda/spike_pack_cuda.cpp): the element patterns the kernels see and the argument checks, so
// both backends refuse the same calls with the same messages. Each binding adds its device check.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <type_traits>

namespace sltt {

// The kernels see only bit patterns: an unsigned integer of the element's size.
template <typename X>
using pattern_t = std::conditional_t<sizeof(X) == 2, uint16_t, std::conditional_t<sizeof(X) == 4, uint32_t, uint64_t>>;

inline void check_pack_floating(const at::Tensor& t, const char* op, const char* name) {
  const auto st = t.scalar_type();
  TORCH_CHECK_TYPE(st == at::kFloat || st == at::kDouble || st == at::kHalf || st == at::kBFloat16, "sltt_kernels.",
                   op, ": ", name, " must be float16, bfloat16, float32 or float64, got ", st);
}

// The checks of spike_unpack(bits, scale, shape) but the device; returns the element count.
inline int64_t check_unpack_args(const at::Tensor& bits, const at::Tensor& scale, at::IntArrayRef shape) {
  TORCH_CHECK_TYPE(bits.scalar_type() == at::kInt, "sltt_kernels.spike_unpack: bits must be int32, got ",
                   bits.scalar_type());
  check_pack_floating(scale, "spike_unpack", "scale");
  TORCH_CHECK_VALUE(scale.dim() == 0, "sltt_kernels.spike_unpack: scale must be a 0-dim tensor, got shape ",
                    scale.sizes());
  int64_t n = 1;
  for (const int64_t d : shape) {
    TORCH_CHECK_VALUE(d >= 0, "sltt_kernels.spike_unpack: shape must not be negative, got ", shape);
    n *= d;
  }
  const int64_t words = (n + 31) / 32;
  TORCH_CHECK_VALUE(bits.dim() == 1 && bits.size(0) == words, "sltt_kernels.spike_unpack: bits must have shape [",
                    words, "] (ceil(", n, " / 32) words) for shape ", shape, ", got ", bits.sizes());
  return n;
}

}  // namespace sltt
