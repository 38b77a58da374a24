// Entry points of the CUDA kernels (lif_cuda_kernels.cu), callable from plain C++: no torch
// header, no CUDA header beyond the runtime API's cudaStream_t / cudaError_t.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "../lif_args.h"
#include "../lif_math.h"
#include "../neurons/neurons.h"

namespace sltt {
namespace cuda {

// 16-bit float storage, bit-compatible with at::Half / __half and at::BFloat16 / __nv_bfloat16.
struct half_bits {
  uint16_t bits;
};
struct bf16_bits {
  uint16_t bits;
};

// Each launches one kernel on `stream` and returns cudaGetLastError() after the launch, or
// cudaErrorNotSupported when the configuration has no kernel.
cudaError_t lif_fwd_cuda(const FwdArgs<float, float>& a, Neuron nm, Reset reset, Save save, cudaStream_t stream);
cudaError_t lif_fwd_cuda(const FwdArgs<double, double>& a, Neuron nm, Reset reset, Save save, cudaStream_t stream);
cudaError_t lif_fwd_cuda(const FwdArgs<half_bits, float>& a, Neuron nm, Reset reset, Save save, cudaStream_t stream);
cudaError_t lif_fwd_cuda(const FwdArgs<bf16_bits, float>& a, Neuron nm, Reset reset, Save save, cudaStream_t stream);

struct BwdConfig {
  Neuron neuron;
  Reset reset;
  bool detach_reset;
  Surrogate surrogate;
  Save save;
  Grad grad;
};

cudaError_t lif_bwd_cuda(const BwdArgs<float, float>& a, const BwdConfig& c, cudaStream_t stream);
cudaError_t lif_bwd_cuda(const BwdArgs<double, double>& a, const BwdConfig& c, cudaStream_t stream);
cudaError_t lif_bwd_cuda(const BwdArgs<half_bits, float>& a, const BwdConfig& c, cudaStream_t stream);
cudaError_t lif_bwd_cuda(const BwdArgs<bf16_bits, float>& a, const BwdConfig& c, cudaStream_t stream);

}  // namespace cuda
}  // namespace sltt
