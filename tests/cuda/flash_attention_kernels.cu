#include "flash_attention_kernels.hpp"

#include "pgolf/backend/cuda/buffer.hpp"
#include "pgolf/backend/cuda/gemm.hpp"
#include "pgolf/core/error.hpp"
#include "pgolf/ops/cuda/attention.cuh"
#include "pgolf/ops/cuda/flash_attention.cuh"

namespace {
using pgolf::cuda::DeviceBuffer;
using bf16 = __nv_bfloat16;

// [B,T,X,D] (float) -> [B,X,T,D] (bf16); rounds the host values in place.
DeviceBuffer<bf16> to_heads(std::vector<float>& h, int B, int T, int X, int D) {
  std::vector<bf16> out(h.size());
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t)
      for (int x = 0; x < X; ++x)
        for (int d = 0; d < D; ++d) {
          float& v = h[((std::size_t(b) * T + t) * X + x) * D + d];
          const bf16 r = __float2bfloat16(v);
          v = __bfloat162float(r);
          out[((std::size_t(b) * X + x) * T + t) * D + d] = r;
        }
  DeviceBuffer<bf16> d(out.size());
  d.upload(out);
  return d;
}
std::vector<float> from_heads(const DeviceBuffer<float>& d, int B, int T, int X, int D) {
  std::vector<float> h(d.size()), out(d.size());
  d.download(h);
  for (int b = 0; b < B; ++b)
    for (int x = 0; x < X; ++x)
      for (int t = 0; t < T; ++t)
        for (int e = 0; e < D; ++e)
          out[((std::size_t(b) * T + t) * X + x) * D + e] = h[((std::size_t(b) * X + x) * T + t) * D + e];
  return out;
}
std::vector<float> download(const DeviceBuffer<float>& d) {
  std::vector<float> h(d.size());
  d.download(h);
  return h;
}

struct Inputs {
  int B, T, H, G, D;
  DeviceBuffer<bf16> q, k, v, dy;
  DeviceBuffer<float> gain;
  DeviceBuffer<std::int32_t> doc_start;  // empty: plain causal
};

// Device outputs, poisoned (NaN; dgain 0, it accumulates).
struct Outputs {
  DeviceBuffer<bf16> y;
  DeviceBuffer<float> lse, dq, dk, dv, dgain;
  explicit Outputs(const Inputs& in)
      : y(std::size_t(in.B) * in.T * in.H * in.D), lse(std::size_t(in.B) * in.H * in.T),
        dq(std::size_t(in.B) * in.T * in.H * in.D), dk(std::size_t(in.B) * in.T * in.G * in.D),
        dv(std::size_t(in.B) * in.T * in.G * in.D), dgain(std::size_t(in.H)) {
    for (auto* b : {&lse, &dq, &dk, &dv}) b->fill_bytes(0xff);
    y.fill_bytes(0xff);
    dgain.fill_bytes(0);
  }
  AttentionOutputs host(const Inputs& in) const {
    AttentionOutputs r;
    std::vector<bf16> yb(y.size());
    y.download(yb);
    for (bf16 x : yb) r.y.push_back(__bfloat162float(x));
    r.lse = download(lse);
    r.dq = from_heads(dq, in.B, in.T, in.H, in.D);
    r.dk = from_heads(dk, in.B, in.T, in.G, in.D);
    r.dv = from_heads(dv, in.B, in.T, in.G, in.D);
    r.dgain = download(dgain);
    return r;
  }
};

template <class Attn>
void run(Attn& attn, const Inputs& in, Outputs& o, bool forward = true, bool accumulate_dv = false) {
  if (forward) attn.forward(in.q.data(), in.k.data(), in.v.data(), in.gain.data(), o.y.data(), o.lse.data());
  attn.backward(in.dy.data(), in.q.data(), in.k.data(), in.v.data(), in.gain.data(), o.lse.data(), o.dq.data(),
                o.dk.data(), o.dv.data(), o.dgain.data(), nullptr, accumulate_dv);
  PGOLF_CUDA_CHECK(cudaDeviceSynchronize());
}

template <int Hd>
FlashAttentionRun run_all(const Inputs& in, bool with_gemm, bool deterministic) {
  FlashAttentionRun r;
  const pgolf::ops::cuda::AttentionDims dims{in.B, in.T, in.H, in.G, Hd};
  pgolf::ops::cuda::FlashAttention<Hd> flash(dims, deterministic);
  if (flash.deterministic() != deterministic) PGOLF_FAIL("FlashAttention: deterministic() does not echo the constructor");
  if (in.doc_start.size() > 0) flash.set_doc_starts(in.doc_start.data());
  Outputs o(in);
  run(flash, in, o);
  r.flash = o.host(in);
  for (auto* b : {&o.dq, &o.dk}) b->fill_bytes(0xff);
  run(flash, in, o, false, true);  // dv and dgain accumulate onto the first run's
  r.again = o.host(in);
  flash.set_kernels(pgolf::ops::cuda::FlashKernels::mma);
  if (flash.kernels() != pgolf::ops::cuda::FlashKernels::mma) PGOLF_FAIL("FlashAttention: set_kernels not kept");
  Outputs om(in);
  run(flash, in, om);
  r.mma = om.host(in);
  if (with_gemm) {
    pgolf::cuda::Gemm gemm;
    pgolf::ops::cuda::Attention<Hd> attn(gemm, dims, std::size_t(1) << 28);
    Outputs og(in);
    run(attn, in, og);
    r.gemm = og.host(in);
  }
  return r;
}
}  // namespace

FlashAttentionRun gpu_flash_attention(int Hd, int B, int T, int H, int G, std::vector<float>& q,
                                      std::vector<float>& k, std::vector<float>& v, const std::vector<float>& gain,
                                      std::vector<float>& dy, bool with_gemm,
                                      const std::vector<std::int32_t>& doc_start, bool deterministic) {
  Inputs in{B, T, H, G, Hd, to_heads(q, B, T, H, Hd), to_heads(k, B, T, G, Hd), to_heads(v, B, T, G, Hd), {}, {}, {}};
  PGOLF_CHECK(doc_start.empty() || doc_start.size() == std::size_t(B) * T, "gpu_flash_attention: ",
              doc_start.size(), " document starts for ", B, " x ", T, " tokens");
  PGOLF_CHECK(doc_start.empty() || !with_gemm, "gpu_flash_attention: the cuBLASLt path has no document mask");
  if (!doc_start.empty()) {
    in.doc_start = DeviceBuffer<std::int32_t>(doc_start.size());
    in.doc_start.upload(doc_start);
  }
  std::vector<bf16> dyb(dy.size());
  for (std::size_t i = 0; i < dy.size(); ++i) {
    dyb[i] = __float2bfloat16(dy[i]);
    dy[i] = __bfloat162float(dyb[i]);
  }
  in.dy = DeviceBuffer<bf16>(dy.size());
  in.dy.upload(dyb);
  in.gain = DeviceBuffer<float>(gain.size());
  in.gain.upload(gain);
  if (Hd == 32) return run_all<32>(in, with_gemm, deterministic);
  if (Hd == 64) return run_all<64>(in, with_gemm, deterministic);
  if (Hd == 128) return run_all<128>(in, with_gemm, deterministic);
  PGOLF_FAIL("gpu_flash_attention: head dim ", Hd, " is not instantiated (32, 64 or 128)");
}
