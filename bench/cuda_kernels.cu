// Per-component CUDA benchmark at the baseline's shapes (one micro-batch: 64 x 1024 tokens, dim
// 512, 8 heads / 4 KV heads, head dim 64, MLP 1024, vocab 1024), plus attention at seq 2048; both
// attention paths (cuBLASLt "gemm" and the fused "flash") on the same inputs.
// Each row: median time over repeated runs (device events, after warm-up), the achieved rate, and
// the floor: flops over the measured bf16 matrix rate or bytes over the measured copy bandwidth,
// whichever is larger. Fresh random inputs, never zeros.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <vector>

#include <pgolf/core/rng.hpp>
#include <pgolf/model/gpt_cuda.cuh>
#include <pgolf/ops/cuda/flash_attention.cuh>
#include <pgolf/optim/cuda/adam.cuh>
#include <pgolf/optim/cuda/muon.cuh>

namespace {

namespace ops = pgolf::ops;
using pgolf::AdamOptions, pgolf::GptCuda, pgolf::GptSpec, pgolf::MuonOptions, pgolf::OptimGroup, pgolf::normal01,
    pgolf::uniform01;
namespace pc = pgolf::cuda;
using ops::cuda::bf16;
template <class T>
using Buf = pc::DeviceBuffer<T>;

double time_ms(const std::function<void()>& fn, int reps = 20, int warm = 3) {
  cudaEvent_t a, b;
  PGOLF_CUDA_CHECK(cudaEventCreate(&a));
  PGOLF_CUDA_CHECK(cudaEventCreate(&b));
  for (int i = 0; i < warm; ++i) fn();
  std::vector<float> t;
  for (int i = 0; i < reps; ++i) {
    PGOLF_CUDA_CHECK(cudaEventRecord(a));
    fn();
    PGOLF_CUDA_CHECK(cudaEventRecord(b));
    PGOLF_CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    PGOLF_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

template <class T>
Buf<T> random_buf(std::size_t n, std::uint32_t stream, float scale = 1.f) {
  std::vector<T> h(n);
  for (std::size_t i = 0; i < n; ++i) h[i] = T(float(normal01(9, stream, i)) * scale);
  Buf<T> d(n);
  d.upload(h);
  return d;
}

constexpr GptSpec kBaseline{};

double peak_tflops = 0, bandwidth_gbs = 0;

void row(const char* name, double ms, double flops, double bytes) {
  const double t_flops = flops / (peak_tflops * 1e12) * 1e3, t_bytes = bytes / (bandwidth_gbs * 1e9) * 1e3;
  const double floor = std::max(t_flops, t_bytes);
  if (flops > 0 && t_flops >= t_bytes)
    std::printf("  %-44s %9.3f ms  %7.1f TFLOP/s  floor %8.3f ms (flops)  %5.1f%% of floor\n", name, ms,
                flops / (ms / 1e3) / 1e12, floor, 100 * floor / ms);
  else
    std::printf("  %-44s %9.3f ms  %7.1f GB/s     floor %8.3f ms (bytes)  %5.1f%% of floor\n", name, ms,
                bytes / (ms / 1e3) / 1e9, floor, 100 * floor / ms);
}

}  // namespace

int main() {
  try {
    if (pc::device_count() == 0) {
      std::printf("SKIP: no CUDA device\n");
      return 0;
    }
    cudaDeviceProp prop{};
    PGOLF_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    std::printf("device %s (sm_%d%d, %d SMs)\n", prop.name, prop.major, prop.minor, prop.multiProcessorCount);
    pc::Gemm gemm;
    {  // the two ceilings
      const int n = 8192;
      auto a = random_buf<bf16>(std::size_t(n) * n, 1), b = random_buf<bf16>(std::size_t(n) * n, 2);
      Buf<bf16> c(std::size_t(n) * n);
      const pc::GemmShape s{.ta = false, .tb = true, .M = n, .N = n, .K = n, .lda = n, .ldb = n, .ldc = n,
                              .c = pc::DType::bf16};
      const double ms = time_ms([&] { gemm.run(s, a.data(), b.data(), c.data(), 1.f, 0.f); });
      peak_tflops = 2.0 * n * n * double(n) / (ms / 1e3) / 1e12;
      const std::size_t bytes = std::size_t(1) << 30;
      Buf<char> x(bytes), y(bytes);
      x.fill_bytes(0x5a);
      const double cms = time_ms([&] { PGOLF_CUDA_CHECK(cudaMemcpy(y.data(), x.data(), bytes, cudaMemcpyDeviceToDevice)); });
      bandwidth_gbs = 2.0 * bytes / (cms / 1e3) / 1e9;
      std::printf("measured ceilings: bf16 product 8192^3 %.1f TFLOP/s; device copy %.0f GB/s (read + write)\n\n",
                  peak_tflops, bandwidth_gbs);
    }
    const int B = 64, T = 1024, D = 512, H = 8, G = 4, Hd = 64, F = 1024, V = 1024, QKV = D + 2 * G * Hd;
    const std::size_t N = std::size_t(B) * T;
    std::printf("component (one micro-batch of %zu tokens)         time        rate             floor\n", N);

    auto X = random_buf<bf16>(N * F, 3), W = random_buf<bf16>(std::size_t(F) * F, 4, 0.03f);
    Buf<bf16> Y(N * F);
    Buf<float> Yf(N * D), dW(std::size_t(F) * F);
    auto lin = [&](const char* name, int in, int out) {
      const pc::GemmShape s{.ta = false, .tb = true, .M = int(N), .N = out, .K = in, .lda = in, .ldb = in, .ldc = out,
                              .c = pc::DType::bf16};
      const double ms = time_ms([&] { gemm.run(s, X.data(), W.data(), Y.data(), 1.f, 0.f); });
      row(name, ms, 2.0 * N * in * out, 2.0 * (N * in + N * out + double(in) * out));
      const pc::GemmShape sw{.ta = true, .tb = false, .M = out, .N = in, .K = int(N), .lda = out, .ldb = in,
                               .ldc = in, .c = pc::DType::f32};
      const double msw = time_ms([&] { gemm.run(sw, Y.data(), X.data(), dW.data(), 1.f, 1.f); });
      row("  its weight gradient (dW += dY^T X)", msw, 2.0 * N * in * out, 2.0 * (N * in + N * out) + 8.0 * in * out);
    };
    lin("qkv product  [N,512] x [512,1024]^T", D, QKV);
    lin("attn proj    [N,512] x [512,512]^T", D, D);
    lin("mlp fc       [N,512] x [512,1024]^T", D, F);
    lin("mlp proj     [N,1024] x [1024,512]^T", F, D);
    lin("head         [N,512] x [1024,512]^T", D, V);

    {
      auto x = random_buf<float>(N * D, 5), x0 = random_buf<float>(N * D, 6), mix = random_buf<float>(2 * D, 7);
      Buf<float> xin(N * D), rstd(N);
      Buf<bf16> nb(N * D);
      const double ms = time_ms([&] {
        ops::cuda::mix_norm_forward<512>(x.data(), x0.data(), mix.data(), N, 1e-6f, xin.data(), nb.data(), rstd.data());
      });
      row("mix_norm_forward (resid_mix + RMSNorm)", ms, 0, N * D * (4.0 + 4 + 4 + 2));
      auto dn = random_buf<float>(N * D, 8);
      const double msb = time_ms(
          [&] { ops::cuda::rmsnorm_backward<512>(dn.data(), xin.data(), rstd.data(), N, x.data(), x0.data()); });
      row("rmsnorm_backward (+ residual)", msb, 0, N * D * 16.0);
    }
    {
      auto qkv = random_buf<bf16>(N * QKV, 9);
      Buf<bf16> q(N * D), k(N * G * Hd), v(N * G * Hd);
      Buf<float> rq(N * H), rk(N * G);
      const ops::cpu::RopeTable<float> rt(T, Hd, 10000.0);
      Buf<float> c(rt.cos.size()), s(rt.sin.size());
      c.upload(rt.cos);
      s.upload(rt.sin);
      const ops::cuda::QkvShape sh{B, T, H, G};
      const double ms = time_ms([&] {
        ops::cuda::qk_norm_rope_forward<64, 64>(qkv.data(), sh, c.data(), s.data(), 1e-6f, q.data(), k.data(), v.data(),
                                                rq.data(), rk.data());
      });
      row("qk_norm_rope_forward", ms, 0, N * QKV * 4.0);
    }
    // Both attention paths on the same inputs: "gemm" (cuBLASLt, scores through a workspace) and
    // "flash" (fused, scores on chip). Causal flops: forward 2*2*B*H*T*T*Hd/2, backward 2.5x that.
    // "fl-at": flash with the atomic backward (FlashAttention(dims, false); same forward).
    // "fl-mm": flash on the kernels on registers (FlashKernels::mma; its deterministic backward).
    // doc_len > 0: flash only ("fl/dc", and "fa/dc" with the atomic backward), with document masking
    // (documents of doc_len tokens), flops counted
    // over the visible (query, key) pairs only (sum over t of t - start + 1, not T*T/2): the work
    // that is needed, so the rate is comparable with the plain rows'.
    auto attention = [&](int b, int t, int tiles, bool with_flash, int doc_len = 0) {
      const std::size_t n = std::size_t(b) * t;
      auto q = random_buf<bf16>(n * D, 10), k = random_buf<bf16>(n * G * Hd, 11), v = random_buf<bf16>(n * G * Hd, 12);
      auto gain = random_buf<float>(H, 13);
      Buf<bf16> yt(n * D);
      Buf<float> lse(n * H), dq(n * D), dk(n * G * Hd), dv(n * G * Hd), dg(H);
      auto dy = random_buf<bf16>(n * D, 14);
      double fwd_flops = 4.0 * b * H * double(t) * t * Hd / 2;  // causal
      Buf<std::int32_t> starts;
      if (doc_len > 0) {
        std::vector<std::int32_t> h(n);
        double pairs = 0;
        for (std::size_t i = 0; i < n; ++i) {
          const int pos = int(i % std::size_t(t));
          h[i] = pos / doc_len * doc_len;
          pairs += pos - h[i] + 1;
        }
        starts = Buf<std::int32_t>(n);
        starts.upload(h);
        fwd_flops = 4.0 * H * Hd * pairs;
      }
      auto measure = [&](auto& attn, const char* path) {
        const double msf =
            time_ms([&] { attn.forward(q.data(), k.data(), v.data(), gain.data(), yt.data(), lse.data()); }, 10, 2);
        const double msb = time_ms([&] {
          attn.backward(dy.data(), q.data(), k.data(), v.data(), gain.data(), lse.data(), dq.data(), dk.data(),
                        dv.data(), dg.data());
        }, 10, 2);
        char name[96];
        std::snprintf(name, sizeof name, "attention %-5s fwd  (B%d T%d H%d/%d d%d)", path, b, t, H, G, Hd);
        row(name, msf, fwd_flops, 0);
        std::snprintf(name, sizeof name, "attention %-5s bwd  (B%d T%d H%d/%d d%d)", path, b, t, H, G, Hd);
        row(name, msb, 2.5 * fwd_flops, 0);
        std::snprintf(name, sizeof name, "attention %-5s both (B%d T%d H%d/%d d%d)", path, b, t, H, G, Hd);
        row(name, msf + msb, 3.5 * fwd_flops, 0);
      };
      if (doc_len > 0) {
        std::printf("    flash path, documents of %d tokens (flops: visible pairs only):\n", doc_len);
        ops::cuda::FlashAttention<64> attn({b, t, H, G, Hd});
        attn.set_doc_starts(starts.data());
        measure(attn, "fl/dc");
        ops::cuda::FlashAttention<64> atomic({b, t, H, G, Hd}, false);
        atomic.set_doc_starts(starts.data());
        measure(atomic, "fa/dc");
        return;
      }
      {
        ops::cuda::Attention<64> attn(gemm, {b, t, H, G, Hd}, std::size_t(4) << 30, tiles);
        std::printf("    gemm path, %d query tiles:\n", tiles);
        measure(attn, "gemm");
      }
      if (with_flash) {
        ops::cuda::FlashAttention<64> attn({b, t, H, G, Hd});
        measure(attn, "flash");
        ops::cuda::FlashAttention<64> atomic({b, t, H, G, Hd}, false);
        measure(atomic, "fl-at");
        ops::cuda::FlashAttention<64> regs({b, t, H, G, Hd});
        regs.set_kernels(ops::cuda::FlashKernels::mma);
        measure(regs, "fl-mm");
      }
    };
    const int tiles = ops::cuda::Attention<64>::kDefaultQueryTiles;
    attention(B, T, tiles, true);
    attention(32, 2048, tiles, true);
    attention(32, 2048, tiles, true, 256);
    for (const int n : {1, 2, 8, 16})  // the gemm tiling's trade-off: skipped scores against launches
      attention(B, T, n, false);
    {
      auto logits = random_buf<bf16>(N * V, 15, 3.f);
      std::vector<std::int32_t> tg(N);
      for (std::size_t i = 0; i < N; ++i) tg[i] = std::int32_t(uniform01(9, 16, i) * V);
      Buf<std::int32_t> t(N);
      t.upload(tg);
      Buf<float> rl(N), lse(N);
      const double ms =
          time_ms([&] { ops::cuda::softcap_ce_forward<1024>(logits.data(), t.data(), N, 30.f, rl.data(), lse.data()); });
      row("softcap_ce_forward", ms, 0, N * V * 2.0);
      auto work = random_buf<bf16>(N * V, 15, 3.f);
      const double msb = time_ms(
          [&] { ops::cuda::softcap_ce_backward<1024>(work.data(), t.data(), lse.data(), N, 30.f, 1.f / float(N), work.data()); });
      row("softcap_ce_backward (in place)", msb, 0, N * V * 4.0);
    }
    {
      std::vector<std::int32_t> ids(N);
      for (std::size_t i = 0; i < N; ++i) {
        const double u = uniform01(9, 17, i);
        ids[i] = std::int32_t(u * u * u * V);
      }
      Buf<std::int32_t> d_ids(N);
      d_ids.upload(ids);
      auto dy = random_buf<float>(N * D, 18);
      Buf<float> dt(std::size_t(V) * D);
      dt.fill_bytes(0);
      ops::cuda::EmbeddingBackward eb(N, V);
      const double ms = time_ms([&] { eb.run<512>(d_ids.data(), N, dy.data(), dt.data()); });
      row("embedding backward (sort + chunked segment sums)", ms, 0, N * D * 4.0);
    }
    {
      using M = GptCuda<kBaseline>;
      auto w = random_buf<float>(M::device_size, 19, 0.02f), g = random_buf<float>(M::device_size, 20);
      pc::CudaMuon muon(M::device_table, MuonOptions{}, gemm);
      double flops = 0;
      for (const auto& p : M::param_table)
        if (p.group == OptimGroup::muon_matrix) {
          const double r = std::min(p.rows, p.cols), k = std::max(p.rows, p.cols);
          flops += 5 * (2 * r * r * k + 2 * r * r * r + 2 * r * r * k);
        }
      const double ms = time_ms([&] { muon.step(w.data(), g.data(), 0.01); });
      row("Muon step (9 blocks, NS5 batched by shape)", ms, flops, 0);
      pc::CudaAdam adam(M::device_table, OptimGroup::adam_embed, AdamOptions{});
      const double msa = time_ms([&] { adam.step(w.data(), g.data(), 0.01); });
      row("Adam step (tok_emb, 524,288 values)", msa, 0, 524288.0 * 28);
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
