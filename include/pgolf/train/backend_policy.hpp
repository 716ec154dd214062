// TrainerBackend<Backend>: what the one training loop needs from the backend a model runs on, so the
// Trainer never asks a model which backend it is. Every model names its backend (Model::Backend):
//
//   muon(model, options), adam(model, group, options)   the optimizers over the model's parameter
//                                                       buffer (its storage layout)
//   clip(model, max_norm)                               global-norm clipping; returns the norm
//   params_to_host(model), params_from_host(model, p)   the parameters in the table layout
//   state_to_host(x), state_from_host(x, v, what)       optimizer state for checkpoints
//   all_reduce_grads(model, comm)                       sums the gradient buffer over the ranks
//   all_reduce(span, comm)                              sums a buffer in the backend's memory (a
//                                                       sharded Muon step's updates) over the ranks
//   MuonWire                                            the type those updates travel in: T on the
//                                                       CPU, bf16 on the GPU (as the reference's)
//   synchronize()                                       waits for the work queued on the device
//   Mirror, mirror(model), zeros(model)                 a buffer shaped like the parameters (EMA,
//                                                       SWA sum): a copy of them, or zeros
//   ema_update(ema, model, d), accumulate_params(sum, model), accumulate(sum, src)
//   load(model, mirror), load_average(model, sum, count) the parameters := a mirror, or sum / count
//   mirror_to_host(model, x), mirror_from_host(model, x, v, what)   table layout, for checkpoints
//   fake_quant(model)                                   late QAT over the Muon matrices (train/qat.hpp)
//
// Cpu<T> steps host spans with Muon<T> / Adam<T>; Cuda (under nvcc) steps device buffers with the
// GPU optimizers.
#pragma once

#include <algorithm>
#include <span>
#include <type_traits>
#include <vector>

#include "pgolf/backend/cpu.hpp"
#include "pgolf/core/error.hpp"
#include "pgolf/dist/communicator.hpp"
#include "pgolf/nn/param_table.hpp"
#include "pgolf/optim/adam.hpp"
#include "pgolf/optim/clip.hpp"
#include "pgolf/optim/muon.hpp"
#include "pgolf/train/qat.hpp"
#include "pgolf/train/weight_average.hpp"

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
  static void all_reduce(std::span<T> x, dist::Communicator& comm) { comm.all_reduce_sum(x); }
  using MuonWire = T;
  static void synchronize() {}
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
  using Mirror = std::vector<T>;
  template <class M>
  static Mirror mirror(M& m) {
    return {m.params().begin(), m.params().end()};
  }
  template <class M>
  static Mirror zeros(M& m) {
    return Mirror(m.params().size(), T(0));
  }
  template <class M>
  static void ema_update(Mirror& ema, M& m, double decay) {
    pgolf::ema_update(std::span<T>(ema), std::span<const T>(m.params()), decay);
  }
  template <class M>
  static void accumulate_params(Mirror& sum, M& m) {
    pgolf::accumulate(std::span<T>(sum), std::span<const T>(m.params()));
  }
  static void accumulate(Mirror& sum, const Mirror& src) { pgolf::accumulate(std::span<T>(sum), std::span<const T>(src)); }
  template <class M>
  static void load(M& m, const Mirror& src) {
    params_from_host(m, std::span<const T>(src));
  }
  template <class M>
  static void load_average(M& m, const Mirror& sum, long long count) {
    pgolf::average_into(std::span<T>(m.params()), std::span<const T>(sum), count);
  }
  template <class M>
  static std::vector<T> mirror_to_host(M&, const Mirror& x) {
    return x;
  }
  template <class M>
  static void mirror_from_host(M&, Mirror& x, const std::vector<T>& v, const char* what) {
    state_from_host(x, v, what);
  }
  template <class M>
  static FakeQuant<T> fake_quant(M&) {
    return FakeQuant<T>(M::param_table);
  }
};

}  // namespace pgolf

#ifdef __CUDACC__
#include "pgolf/backend/cuda/backend.cuh"
#include "pgolf/optim/cuda/adam.cuh"
#include "pgolf/optim/cuda/clip.cuh"
#include "pgolf/optim/cuda/muon.cuh"
#include "pgolf/train/cuda/qat.cuh"
#include "pgolf/train/cuda/weight_average.cuh"

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
  static void synchronize() { PGOLF_CUDA_CHECK(cudaDeviceSynchronize()); }
  template <class M>
  static void all_reduce_grads(M& m, dist::Communicator& comm) {
    const cuda::DeviceParamSpan g = m.grads();
    all_reduce(std::span<float>(g.data, g.size), comm);
  }
  // x in device memory (fp32 gradients; a split Muon step's bf16 updates, half the bytes): in place
  // with NCCL; with a host communicator (MPI) through a host copy summed in fp32, bf16 rounded back
  // (exact where one rank holds the only nonzero, as in a split Muon step).
  using MuonWire = ops::cuda::bf16;
  static void all_reduce(std::span<float> x, dist::Communicator& comm) {
    if (comm.reduces_device_memory()) return comm.all_reduce_sum_device(x.data(), x.size());
    all_reduce_via_host(x, comm);
  }
  static void all_reduce(std::span<ops::cuda::bf16> x, dist::Communicator& comm) {
    if (comm.reduces_device_memory()) return comm.all_reduce_sum_device_bf16(x.data(), x.size());
    all_reduce_via_host(x, comm);
  }
  template <class E>
  static void all_reduce_via_host(std::span<E> x, dist::Communicator& comm) {
    synchronize();  // the kernels that wrote x may run on another stream than the copy's
    std::vector<E> h(x.size());
    PGOLF_CUDA_CHECK(cudaMemcpy(h.data(), x.data(), x.size_bytes(), cudaMemcpyDeviceToHost));
    if constexpr (std::is_same_v<E, float>) {
      comm.all_reduce_sum(std::span<float>(h));
    } else {
      std::vector<float> f(h.size());
      for (std::size_t i = 0; i < f.size(); ++i) f[i] = __bfloat162float(h[i]);
      comm.all_reduce_sum(std::span<float>(f));
      for (std::size_t i = 0; i < f.size(); ++i) h[i] = __float2bfloat16_rn(f[i]);
    }
    PGOLF_CUDA_CHECK(cudaMemcpy(x.data(), h.data(), x.size_bytes(), cudaMemcpyHostToDevice));
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
  // Averaging buffers in the device layout, like the parameters (padding included).
  using Mirror = cuda::DeviceBuffer<float>;
  template <class M>
  static Mirror mirror(M& m) {
    const cuda::DeviceParamSpan p = m.params();
    Mirror x(p.size);
    if (p.size > 0) PGOLF_CUDA_CHECK(cudaMemcpy(x.data(), p.data, p.size * sizeof(float), cudaMemcpyDeviceToDevice));
    return x;
  }
  template <class M>
  static Mirror zeros(M& m) {
    Mirror x(m.params().size);
    x.fill_bytes(0);
    return x;
  }
  template <class M>
  static void ema_update(Mirror& ema, M& m, double decay) {
    cuda::ema_update(ema.data(), m.params().data, ema.size(), decay);
  }
  template <class M>
  static void accumulate_params(Mirror& sum, M& m) {
    cuda::accumulate(sum.data(), m.params().data, sum.size());
  }
  static void accumulate(Mirror& sum, const Mirror& src) { cuda::accumulate(sum.data(), src.data(), sum.size()); }
  template <class M>
  static void load(M& m, const Mirror& src) {
    const cuda::DeviceParamSpan p = m.params();
    PGOLF_CHECK(p.size == src.size(), "load: ", src.size(), " values for ", p.size, " parameters");
    if (p.size > 0) PGOLF_CUDA_CHECK(cudaMemcpy(p.data, src.data(), p.size * sizeof(float), cudaMemcpyDeviceToDevice));
  }
  template <class M>
  static void load_average(M& m, const Mirror& sum, long long count) {
    cuda::average_into(m.params().data, sum.data(), sum.size(), count);
  }
  template <class M>
  static std::vector<float> mirror_to_host(M&, const Mirror& x) {
    return cuda::to_table_layout<float>(M::param_table, M::storage_table, x.data());
  }
  template <class M>
  static void mirror_from_host(M&, Mirror& x, const std::vector<float>& v, const char* what) {
    PGOLF_CHECK(v.size() == table_size(M::param_table), "checkpoint ", what, " holds ", v.size(), " values, expected ",
                table_size(M::param_table));
    cuda::to_device_layout<float>(M::param_table, M::storage_table, std::span<const float>(v), x.data(), x.size());
  }
  template <class M>
  static cuda::CudaFakeQuant fake_quant(M&) {
    return cuda::CudaFakeQuant(M::storage_table);
  }
};

}  // namespace pgolf
#endif
