#include "attention_kernels.hpp"

#include <algorithm>

#include "pgolf/backend/cuda/buffer.hpp"
#include "pgolf/ops/cuda/attention.cuh"

namespace {
using pgolf::cuda::DeviceBuffer;
using bf16 = __nv_bfloat16;
constexpr int kD = 64;

// [B,T,X,D] (float) -> [B,X,T,D] (bf16); rounds the host values in place.
DeviceBuffer<bf16> to_heads(std::vector<float>& h, int B, int T, int X) {
  std::vector<bf16> out(h.size());
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t)
      for (int x = 0; x < X; ++x)
        for (int d = 0; d < kD; ++d) {
          float& v = h[((std::size_t(b) * T + t) * X + x) * kD + d];
          const bf16 r = __float2bfloat16(v);
          v = __bfloat162float(r);
          out[((std::size_t(b) * X + x) * T + t) * kD + d] = r;
        }
  DeviceBuffer<bf16> d(out.size());
  d.upload(out);
  return d;
}
std::vector<float> from_heads(const DeviceBuffer<float>& d, int B, int T, int X) {
  std::vector<float> h(d.size()), out(d.size());
  d.download(h);
  for (int b = 0; b < B; ++b)
    for (int x = 0; x < X; ++x)
      for (int t = 0; t < T; ++t)
        for (int e = 0; e < kD; ++e)
          out[((std::size_t(b) * T + t) * X + x) * kD + e] = h[((std::size_t(b) * X + x) * T + t) * kD + e];
  return out;
}
}  // namespace

GpuAttention gpu_attention_64(int B, int T, int H, int G, std::vector<float>& q, std::vector<float>& k,
                              std::vector<float>& v, const std::vector<float>& gain, std::vector<float>& dy,
                              std::size_t workspace_bytes, int query_tiles, const std::vector<std::int32_t>& ids) {
  pgolf::cuda::Gemm gemm;
  pgolf::ops::cuda::Attention<kD> attn(gemm, {B, T, H, G, kD}, workspace_bytes, query_tiles);
  auto dq_in = to_heads(q, B, T, H), dk_in = to_heads(k, B, T, G), dv_in = to_heads(v, B, T, G);
  std::vector<bf16> dyb(dy.size());
  for (std::size_t i = 0; i < dy.size(); ++i) {
    dyb[i] = __float2bfloat16(dy[i]);
    dy[i] = __bfloat162float(dyb[i]);
  }
  DeviceBuffer<bf16> d_dy(dy.size()), d_y(q.size());
  d_dy.upload(dyb);
  DeviceBuffer<float> d_gain(gain.size()), lse(std::size_t(B) * H * T), dq(q.size()), dk(k.size()), dv(v.size()),
      dgain(gain.size());
  d_gain.upload(gain);
  DeviceBuffer<std::int32_t> d_ids(std::max<std::size_t>(ids.size(), 1)), d_starts(d_ids.size());
  if (!ids.empty()) {
    d_ids.upload(ids);
    d_starts.fill_bytes(0xff);
    pgolf::ops::cuda::document_starts(d_ids.data(), B, T, 1, d_starts.data());
    attn.set_doc_starts(d_starts.data());
  }
  for (auto* b : {&lse, &dq, &dk, &dv}) b->fill_bytes(0xff);  // NaN: unwritten elements show
  d_y.fill_bytes(0xff);
  dgain.fill_bytes(0);
  attn.forward(dq_in.data(), dk_in.data(), dv_in.data(), d_gain.data(), d_y.data(), lse.data());
  attn.backward(d_dy.data(), dq_in.data(), dk_in.data(), dv_in.data(), d_gain.data(), lse.data(), dq.data(), dk.data(),
                dv.data(), dgain.data());
  PGOLF_CUDA_CHECK(cudaDeviceSynchronize());
  GpuAttention r;
  std::vector<bf16> yb(q.size());
  d_y.download(yb);
  for (bf16 x : yb) r.y.push_back(__bfloat162float(x));
  r.lse.resize(lse.size());
  lse.download(r.lse);
  r.dq = from_heads(dq, B, T, H);
  r.dk = from_heads(dk, B, T, G);
  r.dv = from_heads(dv, B, T, G);
  r.dgain.resize(gain.size());
  dgain.download(r.dgain);
  if (!ids.empty()) {
    r.starts.resize(ids.size());
    d_starts.download(r.starts);
  }
  return r;
}
