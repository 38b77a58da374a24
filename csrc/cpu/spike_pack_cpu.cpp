// Torch glue for the CPU pack/unpack kernels of spike_pack.h: argument checks, dtype dispatch,
// threading. The schemas are defined in Python (sltt_kernels/_registration.py, the pack section).
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <type_traits>
#include <vector>

#include "../spike_pack.h"
#include "../spike_pack_options.h"
#include "lif_cpu_kernels.h"  // cpu_has_avx2_fma, LIF_CPU_X86

namespace sltt {
namespace cpu {

namespace {

// Blocks per task: enough elements that a thread's start-up cost is noise.
constexpr int64_t kGrainBlocks = std::max<int64_t>(1, (int64_t(1) << 16) / pack::kBlockElems);

// Drivers over blocks [b0, b1), generic and compiled for AVX2 (the same code, 8 or 16 lanes
// wide; the generic copy keeps the library loadable on any x86-64).
template <typename U>
void pack_blocks_generic(const U* x, int64_t n, int32_t* bits, pack::Patterns<U>* parts, int64_t b0, int64_t b1) {
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t e0 = b * pack::kBlockElems;
    pack::pack_block<U>(x, e0, std::min(pack::kBlockElems, n - e0), bits, parts[b]);
  }
}

template <typename U>
void unpack_blocks_generic(const int32_t* bits, U s, int64_t n, U* out, int64_t b0, int64_t b1) {
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t e0 = b * pack::kBlockElems;
    pack::unpack_block<U>(bits, s, e0, std::min(pack::kBlockElems, n - e0), out);
  }
}

#if LIF_CPU_X86
template <typename U>
__attribute__((target("avx2,fma"))) void pack_blocks_avx2(const U* x, int64_t n, int32_t* bits,
                                                          pack::Patterns<U>* parts, int64_t b0, int64_t b1) {
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t e0 = b * pack::kBlockElems;
    pack::pack_block<U>(x, e0, std::min(pack::kBlockElems, n - e0), bits, parts[b]);
  }
}

template <typename U>
__attribute__((target("avx2,fma"))) void unpack_blocks_avx2(const int32_t* bits, U s, int64_t n, U* out, int64_t b0,
                                                            int64_t b1) {
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t e0 = b * pack::kBlockElems;
    pack::unpack_block<U>(bits, s, e0, std::min(pack::kBlockElems, n - e0), out);
  }
}
#endif

template <typename U>
void pack_blocks(const U* x, int64_t n, int32_t* bits, pack::Patterns<U>* parts, int64_t b0, int64_t b1) {
#if LIF_CPU_X86
  if (cpu_has_avx2_fma()) return pack_blocks_avx2<U>(x, n, bits, parts, b0, b1);
#endif
  pack_blocks_generic<U>(x, n, bits, parts, b0, b1);
}

template <typename U>
void unpack_blocks(const int32_t* bits, U s, int64_t n, U* out, int64_t b0, int64_t b1) {
#if LIF_CPU_X86
  if (cpu_has_avx2_fma()) return unpack_blocks_avx2<U>(bits, s, n, out, b0, b1);
#endif
  unpack_blocks_generic<U>(bits, s, n, out, b0, b1);
}

void check_cpu(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK_VALUE(t.device().is_cpu(), "sltt_kernels.", op, ": ", name, " must be a CPU tensor, got ", t.device());
}

std::tuple<at::Tensor, at::Tensor> spike_pack_cpu(const at::Tensor& x_in) {
  check_cpu(x_in, "spike_pack", "x");
  check_pack_floating(x_in, "spike_pack", "x");
  const at::Tensor x = x_in.contiguous();  // packs in row-major order, whatever x's strides
  const int64_t n = x.numel();
  at::Tensor bits = at::empty({pack::pack_words(n)}, x.options().dtype(at::kInt));
  at::Tensor scale = at::empty({}, x.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "spike_pack_cpu", [&] {
    using U = pattern_t<scalar_t>;
    const int64_t blocks = pack::pack_blocks(n);
    std::vector<pack::Patterns<U>> parts(size_t(blocks), pack::patterns_empty<U>());
    const U* xp = reinterpret_cast<const U*>(x.const_data_ptr<scalar_t>());
    int32_t* bp = bits.mutable_data_ptr<int32_t>();
    at::parallel_for(0, blocks, kGrainBlocks,
                     [&](int64_t b0, int64_t b1) { pack_blocks<U>(xp, n, bp, parts.data(), b0, b1); });
    // one pair per block (a 2048th of the elements): merged here, serially
    pack::Patterns<U> all = pack::patterns_empty<U>();
    for (const auto& p : parts) all = pack::patterns_merge(all, p);
    const U one = pack::pattern_of<U>(scalar_t(1.0f));
    const U nan = pack::pattern_of<U>(scalar_t(std::numeric_limits<float>::quiet_NaN()));
    *reinterpret_cast<U*>(scale.mutable_data_ptr<scalar_t>()) = pack::scale_pattern(all, one, nan);
  });
  return {bits, scale};
}

at::Tensor spike_unpack_cpu(const at::Tensor& bits_in, const at::Tensor& scale, at::IntArrayRef shape) {
  check_cpu(bits_in, "spike_unpack", "bits");
  check_cpu(scale, "spike_unpack", "scale");
  const int64_t n = check_unpack_args(bits_in, scale, shape);
  const at::Tensor bits = bits_in.contiguous();
  at::Tensor out = at::empty(shape, scale.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, scale.scalar_type(), "spike_unpack_cpu", [&] {
    using U = pattern_t<scalar_t>;
    const U s = *reinterpret_cast<const U*>(scale.const_data_ptr<scalar_t>());
    const int32_t* bp = bits.const_data_ptr<int32_t>();
    U* op = reinterpret_cast<U*>(out.mutable_data_ptr<scalar_t>());
    at::parallel_for(0, pack::pack_blocks(n), kGrainBlocks,
                     [&](int64_t b0, int64_t b1) { unpack_blocks<U>(bp, s, n, op, b0, b1); });
  });
  return out;
}

}  // namespace

}  // namespace cpu
}  // namespace sltt

TORCH_LIBRARY_IMPL(sltt_kernels, CPU, m) {
  m.impl("spike_pack", &sltt::cpu::spike_pack_cpu);
  m.impl("spike_unpack", &sltt::cpu::spike_unpack_cpu);
}
