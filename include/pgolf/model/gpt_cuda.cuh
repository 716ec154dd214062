// GptCuda<Spec>: the same model as Gpt<Spec> (model/gpt.hpp) on the CUDA backend, with the same
// parameter table, initialisation, schedule of virtual layers over physical blocks and U-Net skips.
//
// Precision as the reference trainer under autocast: fp32 master weights and gradients (in the
// device layout of backend/cuda/param_layout.hpp), a bf16 copy of every weight made at the start
// of each forward, bf16 matrix-product inputs and outputs, fp32 accumulation, fp32 residual stream,
// norms, softmax statistics and loss. Per virtual layer the forward is
//   mix_norm -> qkv product -> qk_norm_rope -> attention -> proj -> scale_add_norm -> fc -> relu^2
//   -> mlp proj -> scale_add
// and the backward mirrors it; weight gradients are accumulated by the products themselves (beta 1),
// per-channel gradients by the deterministic column reduction, the embedding's by the sorted
// segment sum, so a step gives the same bits every run.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "pgolf/backend/cuda/buffer.hpp"
#include "pgolf/backend/cuda/gemm.hpp"
#include "pgolf/backend/cuda/param_layout.hpp"
#include "pgolf/model/gpt_params.hpp"
#include "pgolf/model/gpt_spec.hpp"
#include "pgolf/nn/param_table.hpp"
#include "pgolf/ops/cpu/rope.hpp"
#include "pgolf/ops/cuda/activation.cuh"
#include "pgolf/ops/cuda/attention.cuh"
#include "pgolf/ops/cuda/channel.cuh"
#include "pgolf/ops/cuda/common.cuh"
#include "pgolf/ops/cuda/cross_entropy.cuh"
#include "pgolf/ops/cuda/embedding.cuh"
#include "pgolf/ops/cuda/rmsnorm.cuh"
#include "pgolf/ops/cuda/rope.cuh"
#include "pgolf/optim/cuda/adam.cuh"
#include "pgolf/optim/cuda/clip.cuh"
#include "pgolf/optim/cuda/muon.cuh"

namespace pgolf {

template <GptSpec S>
class GptCuda {
  static_assert(validate_spec<S>());
  static_assert(S.dim % 32 == 0, "GptSpec.dim must be a multiple of 32 for the CUDA kernels");
  static_assert(S.head_dim() % 32 == 0, "GptSpec head dim (dim / heads) must be a multiple of 32 for the CUDA kernels");
  static_assert(S.vocab % 256 == 0, "GptSpec.vocab must be a multiple of 256 for the CUDA kernels");

  using bf16 = ops::cuda::bf16;
  template <class X>
  using Buf = cuda::DeviceBuffer<X>;

 public:
  using Scalar = float;
  static constexpr GptSpec spec = S;
  static constexpr auto param_table = gpt_param_table<S>();
  static constexpr auto device_table = cuda::device_param_table(param_table);
  static constexpr std::size_t num_params = table_size(param_table);
  static constexpr std::size_t device_size = cuda::device_table_size(device_table);
  using Index = GptParamIndex<S>;

  static constexpr int kDim = S.dim, kVocab = S.vocab, kLayers = S.depth.layers;
  static constexpr int kHeads = S.attention.heads, kKvHeads = S.attention.kv_heads, kHeadDim = S.head_dim();
  static constexpr int kKvDim = S.kv_dim(), kHidden = S.hidden(), kQkv = kDim + 2 * kKvDim;
  static constexpr int kEncoder = S.encoder_layers(), kSkips = S.skip_count();
  static constexpr int kRopeDims = S.attention.rope_dims;
  static_assert(device_table[Index::block(0, BlockParam::c_k)].offset ==
                        device_table[Index::block(0, BlockParam::c_q)].offset + std::size_t(kDim) * kDim &&
                    device_table[Index::block(0, BlockParam::c_v)].offset ==
                        device_table[Index::block(0, BlockParam::c_k)].offset + std::size_t(kKvDim) * kDim,
                "c_q, c_k, c_v must be adjacent in the device layout (one fused qkv product)");

  GptCuda(int batch, int seq_len)
      : batch_(batch),
        seq_(seq_len),
        attn_(gemm_, ops::cuda::AttentionDims{batch, seq_len, kHeads, kKvHeads, kHeadDim}),
        embed_back_(std::size_t(batch) * seq_len, kVocab) {
    PGOLF_CHECK(batch > 0 && seq_len > 0, "GptCuda: batch and sequence length must be positive, got ", batch, " and ",
                seq_len);
    params_ = Buf<float>(device_size);
    grads_ = Buf<float>(device_size);
    wbf_ = Buf<bf16>(device_size);
    params_.fill_bytes(0);
    grads_.fill_bytes(0);
    const ops::cpu::RopeTable<float> rt(seq_len, kRopeDims, S.attention.rope_base);
    cos_ = Buf<float>(rt.cos.size());
    sin_ = Buf<float>(rt.sin.size());
    if (!rt.cos.empty()) {
      cos_.upload(rt.cos);
      sin_.upload(rt.sin);
    }
    allocate();
  }

  static bool device_available() { return cuda::device_count() > 0; }

  void init(std::uint64_t seed) {
    std::vector<float> host(num_params);
    init_params<float>(param_table, seed, std::span<float>(host));
    set_params(host);
  }

  // Host copies in the table layout (checkpoints, export, tests).
  void set_params(std::span<const float> host) {
    cuda::to_device_layout<float>(param_table, device_table, host, params_.data(), device_size);
  }
  std::vector<float> params_host() const { return cuda::to_table_layout(param_table, device_table, params_.data()); }
  std::vector<float> grads_host() const { return cuda::to_table_layout(param_table, device_table, grads_.data()); }

  float* device_params() { return params_.data(); }
  float* device_grads() { return grads_.data(); }
  // What the Trainer steps: device buffers in the device layout, and optimizers that read it.
  cuda::DeviceParamSpan params() { return {params_.data(), device_size}; }
  cuda::DeviceParamSpan grads() { return {grads_.data(), device_size}; }
  cuda::CudaMuon make_muon(const MuonOptions& o) { return cuda::CudaMuon(device_table, o, gemm_); }
  cuda::CudaAdam make_adam(OptimGroup g, const AdamOptions& o) { return cuda::CudaAdam(device_table, g, o); }
  void zero_grad() { grads_.fill_bytes(0); }

  int batch() const { return batch_; }
  int seq_len() const { return seq_; }
  std::size_t tokens() const { return std::size_t(batch_) * seq_; }
  cuda::Gemm& gemm() { return gemm_; }

  // Per-token losses (nats) of the last forward, copied to the host on first request.
  std::span<const float> row_losses() const {
    if (!row_loss_fresh_) {
      row_loss_host_.resize(tokens());
      row_loss_.download(row_loss_host_);
      row_loss_fresh_ = true;
    }
    return row_loss_host_;
  }

  double forward(std::span<const std::int32_t> ids, std::span<const std::int32_t> targets) {
    namespace op = ops::cuda;
    const std::size_t N = tokens();
    PGOLF_CHECK(ids.size() == N, "GptCuda::forward: got ", ids.size(), " input ids, expected batch*seq_len = ", N);
    PGOLF_CHECK(targets.size() == N, "GptCuda::forward: got ", targets.size(), " targets, expected ", N);
    for (std::size_t n = 0; n < N; ++n) {
      PGOLF_CHECK(ids[n] >= 0 && ids[n] < kVocab, "input id ", ids[n], " at position ", n,
                  " is outside the vocabulary [0, ", kVocab, ")");
      PGOLF_CHECK(targets[n] >= 0 && targets[n] < kVocab, "target id ", targets[n], " at position ", n,
                  " is outside the vocabulary [0, ", kVocab, ")");
    }
    ids_.upload(ids);
    targets_.upload(targets);
    row_loss_fresh_ = false;
    const float eps = float(S.norm.eps);

    op::cast_to_bf16(params_.data(), device_size, wbf_.data());
    op::embedding_forward<kDim>(ids_.data(), N, p(Index::tok_emb), emb_.data());
    op::rmsnorm_forward<kDim>(emb_.data(), N, eps, x0_.data(), rstd0_.data());
    const float* x = x0_.data();
    for (int v = 0; v < kLayers; ++v) {
      Layer& L = layers_[v];
      L.x_prev = x;
      if (const int i = v - kEncoder; v >= kEncoder && i < kSkips) {
        op::scale_add_forward<kDim>(x, p(Index::skip_weights) + std::size_t(i) * kDim, layers_[kEncoder - 1 - i].out.data(),
                                    N, L.skip_in.data());
        L.x_prev = L.skip_in.data();
      }
      block_forward(S.block_of(v), L);
      x = L.out.data();
    }
    x_final_ = x;
    op::rmsnorm_forward<kDim>(x, N, eps, hf_.data(), rstd_f_.data());
    linear(hf_.data(), head_w(), logits_.data(), kDim, kVocab, cuda::DType::bf16);
    op::softcap_ce_forward<kVocab>(logits_.data(), targets_.data(), N, float(S.head.softcap), row_loss_.data(),
                                   lse_ce_.data());
    op::ordered_sum(row_loss_.data(), N, loss_sum_.data());
    double sum = 0;
    PGOLF_CUDA_CHECK(cudaMemcpy(&sum, loss_sum_.data(), sizeof(double), cudaMemcpyDeviceToHost));
    forwarded_ = true;
    return sum / double(N);
  }

  // Adds d(grad_scale * loss)/d(params) into the device gradients for the last forward.
  void backward(double grad_scale = 1.0) {
    namespace op = ops::cuda;
    PGOLF_CHECK(forwarded_, "GptCuda::backward called before forward");
    forwarded_ = false;  // the logits are overwritten by their gradient
    const std::size_t N = tokens(), ND = N * kDim;
    op::softcap_ce_backward<kVocab>(logits_.data(), targets_.data(), lse_ce_.data(), N, float(S.head.softcap),
                                    float(grad_scale / double(N)));
    linear_backward(logits_.data(), hf_.data(), head_w(), head_g(), dn_.data(), cuda::DType::f32, kDim, kVocab);
    op::rmsnorm_backward<kDim>(dn_.data(), x_final_, rstd_f_.data(), N, nullptr, gx_.data());
    PGOLF_CUDA_CHECK(cudaMemset(gx0_.data(), 0, ND * sizeof(float)));
    if (kSkips > 0) PGOLF_CUDA_CHECK(cudaMemset(gskip_.data(), 0, std::size_t(kSkips) * ND * sizeof(float)));
    for (int v = kLayers - 1; v >= 0; --v) {
      Layer& L = layers_[v];
      if (v < kSkips) op::add_into(gskip_.data() + std::size_t(kEncoder - 1 - v) * ND, ND, gx_.data());
      block_backward(S.block_of(v), L);
      if (const int i = v - kEncoder; v >= kEncoder && i < kSkips) {
        const float* w = p(Index::skip_weights) + std::size_t(i) * kDim;
        op::scale_accumulate<kDim>(gx_.data(), w, N, gskip_.data() + std::size_t(i) * ND);
        colgrad_.add(gx_.data(), layers_[kEncoder - 1 - i].out.data(), N, kDim,
                     g(Index::skip_weights) + std::size_t(i) * kDim);
      }
    }
    op::add_into(gx_.data(), ND, gx0_.data());
    op::rmsnorm_backward<kDim>(gx0_.data(), emb_.data(), rstd0_.data(), N, nullptr, dn_.data());
    embed_back_.run<kDim>(ids_.data(), N, dn_.data(), g(Index::tok_emb));
  }

 private:
  struct Layer {
    const float* x_prev = nullptr;
    Buf<float> skip_in, xin, rstd1, rstd_q, rstd_k, lse, x1, rstd2, out;
    Buf<bf16> n1, qkv, q, k, v, y_tok, o, n2, u, act, m;
  };

  float* p(std::size_t row) { return params_.data() + device_table[row].offset; }
  float* g(std::size_t row) { return grads_.data() + device_table[row].offset; }
  const bf16* w(std::size_t row) const { return wbf_.data() + device_table[row].offset; }
  float* bp(int b, BlockParam q) { return p(Index::block(b, q)); }
  float* bg(int b, BlockParam q) { return g(Index::block(b, q)); }
  const bf16* bw(int b, BlockParam q) const { return w(Index::block(b, q)); }
  const bf16* head_w() const { return S.embedding.tied ? w(Index::tok_emb) : w(Index::lm_head); }
  float* head_g() { return S.embedding.tied ? g(Index::tok_emb) : g(Index::lm_head); }

  // Y[N, out] = X[N, in] W[out, in]^T
  void linear(const bf16* X, const bf16* W, void* Y, int in, int out, cuda::DType ytype) {
    const int n = int(tokens());
    gemm_.run({.ta = false, .tb = true, .M = n, .N = out, .K = in, .lda = in, .ldb = in, .ldc = out,
               .a = cuda::DType::bf16, .b = cuda::DType::bf16, .c = ytype},
              X, W, Y, 1.f, 0.f);
  }
  // dW[out, in] += dY^T X;  dX[N, in] = dY W (in dx's type).
  void linear_backward(const bf16* dY, const bf16* X, const bf16* W, float* dW, void* dX, cuda::DType dxtype, int in,
                       int out) {
    const int n = int(tokens());
    gemm_.run({.ta = true, .tb = false, .M = out, .N = in, .K = n, .lda = out, .ldb = in, .ldc = in,
               .a = cuda::DType::bf16, .b = cuda::DType::bf16, .c = cuda::DType::f32},
              dY, X, dW, 1.f, 1.f);
    gemm_.run({.ta = false, .tb = false, .M = n, .N = in, .K = out, .lda = out, .ldb = in, .ldc = in,
               .a = cuda::DType::bf16, .b = cuda::DType::bf16, .c = dxtype},
              dY, W, dX, 1.f, 0.f);
  }

  ops::cuda::QkvShape qkv_shape() const { return {batch_, seq_, kHeads, kKvHeads}; }

  void block_forward(int b, Layer& L) {
    namespace op = ops::cuda;
    using P = BlockParam;
    const std::size_t N = tokens();
    const float eps = float(S.norm.eps);
    op::mix_norm_forward<kDim>(L.x_prev, x0_.data(), bp(b, P::resid_mix), N, eps, L.xin.data(), L.n1.data(),
                               L.rstd1.data());
    linear(L.n1.data(), bw(b, P::c_q), L.qkv.data(), kDim, kQkv, cuda::DType::bf16);  // c_q|c_k|c_v are adjacent
    op::qk_norm_rope_forward<kHeadDim, kRopeDims>(L.qkv.data(), qkv_shape(), cos_.data(), sin_.data(), eps,
                                                  L.q.data(), L.k.data(), L.v.data(), L.rstd_q.data(),
                                                  L.rstd_k.data());
    attn_.forward(L.q.data(), L.k.data(), L.v.data(), bp(b, P::q_gain), L.y_tok.data(), L.lse.data());
    linear(L.y_tok.data(), bw(b, P::attn_proj), L.o.data(), kDim, kDim, cuda::DType::bf16);
    op::scale_add_norm_forward<kDim>(L.xin.data(), bp(b, P::attn_scale), L.o.data(), N, eps, L.x1.data(),
                                     L.n2.data(), L.rstd2.data());
    linear(L.n2.data(), bw(b, P::fc), L.u.data(), kDim, kHidden, cuda::DType::bf16);
    op::activation_forward<S.mlp.activation>(L.u.data(), N * kHidden, L.act.data());
    linear(L.act.data(), bw(b, P::mlp_proj), L.m.data(), kHidden, kDim, cuda::DType::bf16);
    op::scale_add_forward<kDim>(L.x1.data(), bp(b, P::mlp_scale), L.m.data(), N, L.out.data());
  }

  // In: gx_ = d loss / d L.out. Out: gx_ = d loss / d L.x_prev; gx0_ and block grads accumulate.
  void block_backward(int b, Layer& L) {
    namespace op = ops::cuda;
    using P = BlockParam;
    const std::size_t N = tokens();
    // out = x1 + mlp_scale * m
    colgrad_.add(gx_.data(), L.m.data(), N, kDim, bg(b, P::mlp_scale));
    op::scale_grad<kDim>(gx_.data(), bp(b, P::mlp_scale), N, dbf_.data());
    linear_backward(dbf_.data(), L.act.data(), bw(b, P::mlp_proj), bg(b, P::mlp_proj), dact_.data(),
                    cuda::DType::bf16, kHidden, kDim);
    op::activation_backward<S.mlp.activation>(dact_.data(), L.u.data(), N * kHidden);
    linear_backward(dact_.data(), L.n2.data(), bw(b, P::fc), bg(b, P::fc), dn_.data(), cuda::DType::f32, kDim, kHidden);
    op::rmsnorm_backward<kDim>(dn_.data(), L.x1.data(), L.rstd2.data(), N, gx_.data(), gx1_.data());
    // x1 = xin + attn_scale * o
    colgrad_.add(gx1_.data(), L.o.data(), N, kDim, bg(b, P::attn_scale));
    op::scale_grad<kDim>(gx1_.data(), bp(b, P::attn_scale), N, dbf_.data());
    linear_backward(dbf_.data(), L.y_tok.data(), bw(b, P::attn_proj), bg(b, P::attn_proj), dytok_.data(),
                    cuda::DType::bf16, kDim, kDim);
    attn_.backward(dytok_.data(), L.q.data(), L.k.data(), L.v.data(), bp(b, P::q_gain), L.lse.data(), dq_.data(),
                   dk_.data(), dv_.data(), bg(b, P::q_gain));
    op::qk_norm_rope_backward<kHeadDim, kRopeDims>(dq_.data(), dk_.data(), dv_.data(), L.qkv.data(), qkv_shape(),
                                                   cos_.data(), sin_.data(), L.rstd_q.data(), L.rstd_k.data(),
                                                   dqkv_.data());
    linear_backward(dqkv_.data(), L.n1.data(), bw(b, P::c_q), bg(b, P::c_q), dn_.data(), cuda::DType::f32, kDim, kQkv);
    op::rmsnorm_backward<kDim>(dn_.data(), L.xin.data(), L.rstd1.data(), N, gx1_.data(), gxin_.data());
    // xin = m0 * x_prev + m1 * x0
    colgrad_.add(gxin_.data(), L.x_prev, N, kDim, bg(b, P::resid_mix));
    colgrad_.add(gxin_.data(), x0_.data(), N, kDim, bg(b, P::resid_mix) + kDim);
    op::resid_mix_backward<kDim>(gxin_.data(), bp(b, P::resid_mix), N, gx_.data(), gx0_.data());
  }

  void allocate() {
    const std::size_t N = tokens(), ND = N * kDim, NKV = N * kKvDim, NH = N * kHidden;
    ids_ = Buf<std::int32_t>(N);
    targets_ = Buf<std::int32_t>(N);
    emb_ = Buf<float>(ND), x0_ = Buf<float>(ND), rstd0_ = Buf<float>(N), hf_ = Buf<bf16>(ND), rstd_f_ = Buf<float>(N);
    logits_ = Buf<bf16>(N * kVocab), row_loss_ = Buf<float>(N), lse_ce_ = Buf<float>(N);
    loss_sum_ = Buf<double>(1);
    layers_.resize(kLayers);
    for (int v = 0; v < kLayers; ++v) {
      Layer& L = layers_[v];
      if (v >= kEncoder && v - kEncoder < kSkips) L.skip_in = Buf<float>(ND);
      L.xin = Buf<float>(ND), L.rstd1 = Buf<float>(N), L.n1 = Buf<bf16>(ND), L.qkv = Buf<bf16>(N * kQkv);
      L.q = Buf<bf16>(ND), L.k = Buf<bf16>(NKV), L.v = Buf<bf16>(NKV);
      L.rstd_q = Buf<float>(N * kHeads), L.rstd_k = Buf<float>(N * kKvHeads), L.lse = Buf<float>(N * kHeads);
      L.y_tok = Buf<bf16>(ND), L.o = Buf<bf16>(ND), L.x1 = Buf<float>(ND);
      L.rstd2 = Buf<float>(N), L.n2 = Buf<bf16>(ND), L.u = Buf<bf16>(NH), L.act = Buf<bf16>(NH);
      L.m = Buf<bf16>(ND), L.out = Buf<float>(ND);
    }
    gx_ = Buf<float>(ND), gx1_ = Buf<float>(ND), gxin_ = Buf<float>(ND), gx0_ = Buf<float>(ND), dn_ = Buf<float>(ND);
    gskip_ = Buf<float>(std::max<std::size_t>(1, std::size_t(kSkips) * ND));
    dbf_ = Buf<bf16>(ND), dact_ = Buf<bf16>(NH), dytok_ = Buf<bf16>(ND), dqkv_ = Buf<bf16>(N * kQkv);
    dq_ = Buf<float>(ND), dk_ = Buf<float>(NKV), dv_ = Buf<float>(NKV);
  }

  int batch_, seq_;
  cuda::Gemm gemm_;
  ops::cuda::Attention<kHeadDim> attn_;
  ops::cuda::EmbeddingBackward embed_back_;
  ops::cuda::ColumnGrad colgrad_;
  Buf<float> params_, grads_, cos_, sin_;
  Buf<bf16> wbf_;
  Buf<std::int32_t> ids_, targets_;
  Buf<float> emb_, x0_, rstd0_, rstd_f_, row_loss_, lse_ce_;
  Buf<bf16> hf_, logits_;
  Buf<double> loss_sum_;
  std::vector<Layer> layers_;
  const float* x_final_ = nullptr;
  Buf<float> gx_, gx1_, gxin_, gx0_, dn_, gskip_, dq_, dk_, dv_;
  Buf<bf16> dbf_, dact_, dytok_, dqkv_;
  bool forwarded_ = false;
  mutable bool row_loss_fresh_ = false;
  mutable std::vector<float> row_loss_host_;
};

}  // namespace pgolf
