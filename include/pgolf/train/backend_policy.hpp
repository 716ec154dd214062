// TrainerBackend<Backend>: what the one training loop needs from the backend a model runs on, so the
// Trainer never asks a model which backend it is. Every model names its backend (Model::Backend):
//
//   muon(model, options), adam(model, group, options)   the optimizers over the model's parameter
//                                                       buffer (its storage layout)
//   clip(model, max_norm)                               global-norm clipping; returns the norm
//   params_to_host(model), params_from_host(model, p)   the parameters in the table layout
//   state_to_host(x), state_from_host(x, v, what)       optimizer state for checkpoints
//   all_reduce_grads(model, comm)                       sums the gradient buffer over the ranks
//
// Cpu<T> steps host spans with Muon<T> / Adam<T>; Cuda (under nvcc) steps device buffers with the
// GPU optimizers.
#pragma once

#include <algorithm>
#include <span>
#include <vector>

#include "pgolf/backend/cpu.hpp"
#include "pgolf/core/error.hpp"
#include "pgolf/dist/communicator.hpp"
#include "pgolf/nn/param_table.hpp"
#include "pgolf/optim/adam.hpp"
#include "pgolf/optim/clip.hpp"
#include "pgolf/optim/muon.hpp"

namespace pgolf {

template <class B>
struct TrainerBackend;

template <class T>
struct TrainerBackend<Cpu<T>> {
  template <class M>
  static Muon<T> muon(M&, const MuonOptions& o) {
    return Muon<T>(M::param_table, o);
  }
  template <class M>
  static Adam<T> adam(M&, OptimGroup g, const AdamOptions& o) {
    return Adam<T>(M::param_table, g, o);
  }
  template <class M>
  static double clip(M& m, double max_norm) {
    return clip_grad_norm(m.grads(), max_norm);
  }
  template <class M>
  static void all_reduce_grads(M& m, dist::Communicator& comm) {
    comm.all_reduce_sum(m.grads());
  }
  template <class M>
  static std::vector<T> params_to_host(const M& m) {
    return {m.params().begin(), m.params().end()};
  }
  template <class M>
  static void params_from_host(M& m, std::span<const T> p) {
    PGOLF_CHECK(p.size() == table_size(M::param_table), "parameters: got ", p.size(), " values, the model has ",
                table_size(M::param_table));
    std::copy(p.begin(), p.end(), m.params().begin());
  }
  template <class X>
  static std::vector<T> state_to_host(const X& x) {
    return {x.begin(), x.end()};
  }
  template <class X>
  static void state_from_host(X&& x, const std::vector<T>& v, const char* what) {
    PGOLF_CHECK(v.size() == std::size_t(x.size()), "checkpoint ", what, " holds ", v.size(), " values, expected ",
                x.size());
    std::copy(v.begin(), v.end(), x.begin());
  }
};

}  // namespace pgolf

#ifdef __CUDACC__
#include "pgolf/backend/cuda/backend.cuh"
#include "pgolf/optim/cuda/adam.cuh"
#include "pgolf/optim/cuda/clip.cuh"
#include "pgolf/optim/cuda/muon.cuh"

namespace pgolf {

template <>
struct TrainerBackend<Cuda> {
  template <class M>
  static cuda::CudaMuon muon(M& m, const MuonOptions& o) {
    return cuda::CudaMuon(M::storage_table, o, m.runtime().gemm);
  }
  template <class M>
  static cuda::CudaAdam adam(M&, OptimGroup g, const AdamOptions& o) {
    return cuda::CudaAdam(M::storage_table, g, o);
  }
  template <class M>
  static double clip(M& m, double max_norm) {
    return cuda::clip_grad_norm(m.grads(), max_norm);
  }
  // In place on the device with NCCL; through a host copy with a host communicator (MPI).
  template <class M>
  static void all_reduce_grads(M& m, dist::Communicator& comm) {
    const cuda::DeviceParamSpan g = m.grads();
    if (comm.reduces_device_memory()) return comm.all_reduce_sum_device(g.data, g.size);
    std::vector<float> h(g.size);
    PGOLF_CUDA_CHECK(cudaMemcpy(h.data(), g.data, g.size * sizeof(float), cudaMemcpyDeviceToHost));
    comm.all_reduce_sum(std::span<float>(h));
    PGOLF_CUDA_CHECK(cudaMemcpy(g.data, h.data(), g.size * sizeof(float), cudaMemcpyHostToDevice));
  }
  template <class M>
  static std::vector<float> params_to_host(const M& m) {
    return m.params_host();
  }
  template <class M>
  static void params_from_host(M& m, std::span<const float> p) {
    PGOLF_CHECK(p.size() == table_size(M::param_table), "parameters: got ", p.size(), " values, the model has ",
                table_size(M::param_table));
    m.set_params(p);
  }
  template <class X>
  static std::vector<float> state_to_host(const X& x) {
    std::vector<float> v(x.size());
    if (!v.empty()) x.download(std::span<float>(v));
    return v;
  }
  template <class X>
  static void state_from_host(X&& x, const std::vector<float>& v, const char* what) {
    PGOLF_CHECK(v.size() == std::size_t(x.size()), "checkpoint ", what, " holds ", v.size(), " values, expected ",
                x.size());
    if (!v.empty()) x.upload(std::span<const float>(v));
  }
};

}  // namespace pgolf
#endif
