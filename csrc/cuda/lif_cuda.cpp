// Torch glue for the CUDA kernels: device guard, current stream, dtype dispatch, launch checks.
// Checks and output allocation are shared with the other backends (lif_options.h). Only c10/cuda
// headers: ATen/cuda/CUDAContext.h would pull in cuSPARSE/cuBLAS headers.
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../lif_options.h"
#include "lif_cuda.h"

namespace sltt {
namespace cuda {

namespace {

// The kernels' element type for a torch scalar type (same bits).
template <typename T>
struct kernel_type {
  using type = T;
};
template <>
struct kernel_type<at::Half> {
  using type = half_bits;
};
template <>
struct kernel_type<at::BFloat16> {
  using type = bf16_bits;
};
static_assert(sizeof(half_bits) == sizeof(at::Half) && sizeof(bf16_bits) == sizeof(at::BFloat16),
              "16-bit storage types must match torch's");

void check_cuda(const at::Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(t.is_cuda(), "sltt_kernels: ", name, " must be a CUDA tensor, got ", t.device());
}

// cudaErrorNotSupported is how the launchers say "no kernel for this configuration".
bool launch_checked(cudaError_t err) {
  if (err == cudaErrorNotSupported) return false;
  C10_CUDA_CHECK(err);
  return true;
}

struct RunFwd {
  bool operator()(const FwdTensors& t, const NeuronOptions& o) const {
    check_cuda(t.x, "x");
    bool ok = false;
    const c10::cuda::CUDAGuard guard(t.x.device());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(t.x.device().index()).stream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, t.x.scalar_type(), "neuron_multistep_fwd_cuda", [&] {
      using X = typename kernel_type<scalar_t>::type;
      const auto args = fwd_args<X, state_t<scalar_t>>(t, o);
      ok = launch_checked(lif_fwd_cuda(args, o.neuron, o.reset, o.save, stream));
    });
    return ok;
  }
};

struct RunBwd {
  bool operator()(const BwdTensors& t, const NeuronOptions& o) const {
    check_cuda(t.grad_spikes, "grad_spikes");
    bool ok = false;
    const c10::cuda::CUDAGuard guard(t.grad_spikes.device());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(t.grad_spikes.device().index()).stream();
    const BwdConfig config{o.neuron, o.reset, o.detach_reset, o.surrogate, o.save, o.grad};
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, t.grad_spikes.scalar_type(), "neuron_multistep_bwd_cuda", [&] {
      using X = typename kernel_type<scalar_t>::type;
      const auto args = bwd_args<X, state_t<scalar_t>>(t, o);
      ok = launch_checked(lif_bwd_cuda(args, config, stream));
    });
    return ok;
  }
};

SLTT_DEFINE_OPS(cuda, RunFwd{}, RunBwd{})

}  // namespace

}  // namespace cuda
}  // namespace sltt

TORCH_LIBRARY_IMPL(sltt_kernels, CUDA, m) {
  m.impl("neuron_multistep_fwd", &sltt::cuda::neuron_multistep_fwd_cuda);
  m.impl("neuron_multistep_bwd", &sltt::cuda::neuron_multistep_bwd_cuda);
  m.impl("neuron_step_fwd", &sltt::cuda::neuron_step_fwd_cuda);
  m.impl("neuron_step_bwd", &sltt::cuda::neuron_step_bwd_cuda);
}
