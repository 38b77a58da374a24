// Torch glue for the CUDA pack/unpack kernels (spike_pack_cuda_kernels.cu): argument checks, device
// guard, current stream, dtype dispatch. Only c10/cuda headers, as in lif_cuda.cpp.
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cstring>
#include <limits>
#include <type_traits>

#include "../spike_pack_options.h"
#include "spike_pack_cuda.h"

namespace sltt {
namespace cuda {

namespace {

template <typename U, typename X>
U pattern_of(X v) {
  static_assert(sizeof(U) == sizeof(X), "a pattern has the size of its value");
  U u;
  std::memcpy(&u, &v, sizeof u);
  return u;
}

void check_cuda(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK_VALUE(t.is_cuda(), "sltt_kernels.", op, ": ", name, " must be a CUDA tensor, got ", t.device());
}

std::tuple<at::Tensor, at::Tensor> spike_pack_cuda_op(const at::Tensor& x_in) {
  check_cuda(x_in, "spike_pack", "x");
  check_pack_floating(x_in, "spike_pack", "x");
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  const int64_t n = x.numel();
  at::Tensor bits = at::empty({(n + 31) / 32}, x.options().dtype(at::kInt));
  at::Tensor scale = at::empty({}, x.options());
  // the per-block ranges, merged on the device into the scale: no host synchronisation
  at::Tensor scratch = at::empty({pack_cuda_scratch_bytes(n, int64_t(x.element_size()))}, x.options().dtype(at::kByte));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(x.device().index()).stream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "spike_pack_cuda", [&] {
    using U = pattern_t<scalar_t>;
    const U one = pattern_of<U>(scalar_t(1.0f));
    const U nan = pattern_of<U>(scalar_t(std::numeric_limits<float>::quiet_NaN()));
    C10_CUDA_CHECK(spike_pack_cuda(reinterpret_cast<const U*>(x.const_data_ptr<scalar_t>()), n,
                                   bits.mutable_data_ptr<int32_t>(), scratch.mutable_data_ptr(), one, nan,
                                   reinterpret_cast<U*>(scale.mutable_data_ptr<scalar_t>()), stream));
  });
  return {bits, scale};
}

at::Tensor spike_unpack_cuda_op(const at::Tensor& bits_in, const at::Tensor& scale, at::IntArrayRef shape) {
  check_cuda(bits_in, "spike_unpack", "bits");
  check_cuda(scale, "spike_unpack", "scale");
  TORCH_CHECK_VALUE(scale.device() == bits_in.device(), "sltt_kernels.spike_unpack: bits and scale must be on one "
                    "device, got ", bits_in.device(), " and ", scale.device());
  const int64_t n = check_unpack_args(bits_in, scale, shape);
  const c10::cuda::CUDAGuard guard(bits_in.device());
  const at::Tensor bits = bits_in.contiguous();
  at::Tensor out = at::empty(shape, scale.options());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(bits.device().index()).stream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, scale.scalar_type(), "spike_unpack_cuda", [&] {
    using U = pattern_t<scalar_t>;
    C10_CUDA_CHECK(spike_unpack_cuda(bits.const_data_ptr<int32_t>(),
                                     reinterpret_cast<const U*>(scale.const_data_ptr<scalar_t>()), n,
                                     reinterpret_cast<U*>(out.mutable_data_ptr<scalar_t>()), stream));
  });
  return out;
}

}  // namespace

}  // namespace cuda
}  // namespace sltt

TORCH_LIBRARY_IMPL(sltt_kernels, CUDA, m) {
  m.impl("spike_pack", &sltt::cuda::spike_pack_cuda_op);
  m.impl("spike_unpack", &sltt::cuda::spike_unpack_cuda_op);
}
