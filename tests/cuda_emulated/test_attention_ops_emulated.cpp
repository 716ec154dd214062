// The kernels around the products and CUB calls of ops/cuda/embedding.cuh and ops/cuda/attention.cuh
// (the text of their `namespace detail`, extracted at configure time) run on the CPU under
// emulate_cuda.hpp, launched as EmbeddingBackward::run, embedding_forward, Attention and
// document_starts launch them. What cuBLAS and CUB compute between them is done here on the host:
// the score products in double rounded to fp32 (only up to each query tile's last key, the rest of
// the workspace NaN, as the products leave it), the sort, run-length encoding and scans with
// std::stable_sort and loops.
//   Embedding: forward (fp32 exact, bf16 the rounding of the table) at Dim 36 (9 threads a block)
//   and 1040 (two passes of a 256-thread block), 300 and 200 tokens with one token in 45% and 70%
//   of the positions (3 chunks of kChunkRows, the last partial) and half the vocabulary absent; the
//   backward's four kernels onto a gradient holding known values, against ops/cpu/embedding.hpp
//   in double within 1e-5 of the sum of the magnitudes (fp32 sums), twice for identical bits.
//   Attention: B 2, T 24 (query_tiles 2: tiles of 16, the last of 8), H 6 over G 2, Hd 24, chunks
//   of 3 of the 4 pairs (the last of 1), per-head gains, with and without documents. Each kernel
//   against the formulas in double on its own fp32 inputs (lse and the gain's row terms within
//   1e-5 relative, P and dS bf16 within 5e-3 relative plus the fp32 work's share, masked entries
//   exactly 0, the backward's P the forward's bits); then the whole pass (the products on the host
//   from the kernels' bf16 P and dS) against ops/cpu/attention.hpp with the bounds of
//   tests/cuda/test_attention_cuda.cpp (y, dq, dk, dv relative L2 < 1e-2; lse 1e-5 here, no
//   tensor cores) and the gain gradient within 1e-4 relative L2 (its fp32 path); the relayouts
//   are exact permutations; document_starts_kernel equals ops::cpu::document_starts at T 1, 5, 33,
//   64 and 100 (rows without a BOS, with one at 0, 1, mid-row twice and at the end).
// Outputs are NaN beforehand; the gradients that add (dtable, d gain) start from known values.
// This checks the kernels' logic without a GPU; tests/cuda checks them on one.
#include <catch2/catch.hpp>

#include "../test_util.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "pgolf/core/rng.hpp"
#include "pgolf/ops/cpu/attention.hpp"
#include "pgolf/ops/cpu/embedding.hpp"

#include "attention_ops_kernels_emulated.hpp"
#include "emulated_check.hpp"

namespace {
using namespace pgolf::test::emulated;
namespace k = pgolf::ops::cuda;
namespace cpu = pgolf::ops::cpu;
using pgolf::test::rel_l2;

const bf16 kNanBf16 = __float2bfloat16_rn(NAN);

// ---- Embedding ----
template <int Dim>
void embedding_case(std::size_t n, int vocab, double frequent, std::uint32_t seed) {
  CAPTURE(Dim, n, vocab);
  std::vector<std::int32_t> ids(n);
  for (std::size_t i = 0; i < n; ++i)  // token 7 in a fraction `frequent` of positions, the others even: half absent
    ids[i] = pgolf::uniform01(seed, 1, i) < frequent ? 7 : 2 * std::int32_t(pgolf::uniform01(seed, 2, i) * (vocab / 2));
  auto tabled = randn(std::size_t(vocab) * Dim, seed + 3);
  const auto table = to_f32(tabled);

  const std::size_t threads = n * (Dim / 4);
  const unsigned grid = unsigned((threads + 255) / 256);
  std::vector<float> outf(n * Dim, NAN);
  std::vector<bf16> outb(n * Dim, kNanBf16);
  emu::launch(grid, 1, [&] { k::detail::embedding_forward_kernel<Dim, float>(ids.data(), n, table.data(), outf.data()); }, 256);
  emu::launch(grid, 1, [&] { k::detail::embedding_forward_kernel<Dim, bf16>(ids.data(), n, table.data(), outb.data()); }, 256);
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < n; ++i)
    for (int c = 0; c < Dim; ++c) {
      const float t = table[std::size_t(ids[i]) * Dim + c];
      wrong += outf[i * Dim + c] != t || outb[i * Dim + c].bits != __float2bfloat16_rn(t).bits;
    }
  CHECK(wrong == 0);

  // Backward, as EmbeddingBackward::run with n_ = n.
  auto dyd = randn(n * Dim, seed + 4);
  const auto dy = to_f32(dyd);
  std::vector<std::int32_t> pos(n, -1);
  emu::launch(unsigned((n + 255) / 256), 1, [&] { k::detail::iota_kernel(pos.data(), n); }, 256);
  for (std::size_t i = 0; i < n; ++i) REQUIRE(pos[i] == std::int32_t(i));
  // CUB's SortPairs (stable), Encode and ExclusiveSum; what CUB leaves past the runs is garbage.
  std::stable_sort(pos.begin(), pos.end(), [&](std::int32_t a, std::int32_t b) { return ids[a] < ids[b]; });
  std::vector<std::uint32_t> unique(n, 0xdeadbeefu);
  std::vector<std::int32_t> counts(n, 1 << 20), offsets(n, -1 << 20);
  int num_runs = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (i == 0 || ids[pos[i]] != ids[pos[i - 1]]) unique[num_runs] = std::uint32_t(ids[pos[i]]), counts[num_runs++] = 0;
    ++counts[num_runs - 1];
  }
  for (int r = 0, o = 0; r < num_runs; o += counts[r++]) offsets[r] = o;
  const std::size_t runs_bound = std::min<std::size_t>(n, std::size_t(vocab));
  const std::size_t chunks_bound = n / k::detail::kChunkRows + runs_bound;
  std::vector<std::int32_t> chunks(runs_bound, -1), first_chunk(runs_bound, -1);
  emu::launch(unsigned((runs_bound + 255) / 256), 1,
              [&] { k::detail::run_chunks_kernel(counts.data(), &num_runs, int(runs_bound), chunks.data()); }, 256);
  int max_chunks = 0;
  for (std::size_t r = 0; r < runs_bound; ++r) {
    const int want = int(r) < num_runs ? (counts[r] + k::detail::kChunkRows - 1) / k::detail::kChunkRows : 0;
    REQUIRE(chunks[r] == want);
    max_chunks = std::max(max_chunks, want);
  }
  REQUIRE(max_chunks >= 3);  // the shape exercises chunking
  for (std::size_t r = 0, c = 0; r < runs_bound; c += std::size_t(chunks[r++])) first_chunk[r] = std::int32_t(c);

  constexpr unsigned block = Dim / 4 < 256 ? Dim / 4 : 256;
  auto prefill = randn(std::size_t(vocab) * Dim, seed + 5);
  const auto dtable0 = to_f32(prefill);
  std::vector<float> dtable[2] = {dtable0, dtable0};
  for (auto& dt : dtable) {
    std::vector<float> partial(chunks_bound * Dim, NAN);
    emu::launch(unsigned(chunks_bound), 1, [&] {
      k::detail::embedding_chunk_sum_kernel<Dim>(counts.data(), offsets.data(), &num_runs, chunks.data(), first_chunk.data(),
                                                 pos.data(), dy.data(), partial.data());
    }, block);
    emu::launch(unsigned(runs_bound), 1, [&] {
      k::detail::embedding_run_sum_kernel<Dim>(unique.data(), &num_runs, chunks.data(), first_chunk.data(), partial.data(),
                                               dt.data());
    }, block);
  }
  CHECK(same_bits(dtable[0], dtable[1]));
  std::vector<double> want = prefill, mag(prefill.size()), absdy(dyd.size());
  for (std::size_t i = 0; i < mag.size(); ++i) mag[i] = std::abs(prefill[i]);
  for (std::size_t i = 0; i < dyd.size(); ++i) absdy[i] = std::abs(dyd[i]);
  cpu::embedding_backward(ids.data(), n, dyd.data(), Dim, want.data());
  cpu::embedding_backward(ids.data(), n, absdy.data(), Dim, mag.data());
  Err e(Dim < 256 ? "embedding backward dtable (Dim 36)" : "embedding backward dtable (Dim 1040)", false);
  for (std::size_t i = 0; i < want.size(); ++i) e.add(dtable[0][i], want[i], mag[i]);
}
}  // namespace

TEST_CASE("emulated: embedding kernels match the CPU reference", "[attention_ops_emulated]") {
  embedding_case<36>(300, 50, 0.45, 11);
  embedding_case<1040>(200, 20, 0.7, 12);
}

TEST_CASE("emulated: document_starts_kernel matches ops::cpu::document_starts", "[attention_ops_emulated]") {
  constexpr int B = 9;
  constexpr std::int32_t bos = 3;
  for (int T : {1, 5, 33, 64, 100}) {
    CAPTURE(T);
    std::vector<std::int32_t> ids(std::size_t(B) * T);
    for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = std::int32_t(pgolf::uniform01(99, 20, i) * 8);
    for (int t = 0; t < T; ++t) {
      std::int32_t* row = ids.data();
      row[1 * T + t] = row[1 * T + t] == bos ? 0 : row[1 * T + t];   // row 1: no BOS
      row[2 * T + t] = t == 0 || t == T / 2 || t == T / 2 + 1 ? bos : 0;  // at 0 and a pair mid-row
      row[3 * T + t] = t == T - 1 ? bos : 0;                           // only at the end
      row[4 * T + t] = t == 1 ? bos : 0;  // only at 1: carried across every lane
    }
    std::vector<std::int32_t> want(ids.size()), got(ids.size(), -1);
    cpu::document_starts(ids.data(), B, T, bos, want.data());
    emu::launch(k::row_blocks(B), 1, [&] { k::detail::document_starts_kernel(ids.data(), B, T, bos, got.data()); }, 256);
    CHECK(got == want);
  }
}

namespace {
constexpr int kHd = 24;

// The Attention class's forward and backward with the products on the host, for one set of inputs.
void attention_case(bool docs) {
  CAPTURE(docs);
  const k::AttentionDims d{2, 24, 6, 2, kHd};
  const int B = d.B, T = d.T, H = d.H, G = d.G, r = d.group();
  const std::size_t rT = std::size_t(r) * T, pairs = d.pairs(), rows_all = std::size_t(B) * H * T;
  const int chunk = 3, tile = std::max(8, (T / 2 + 7) / 8 * 8);  // as Attention with query_tiles = 2
  REQUIRE(tile == 16);
  auto qd = randn(rows_all * kHd, 31), kd = randn(pairs * T * kHd, 32), vd = randn(pairs * T * kHd, 33),
       dyd = randn(rows_all * kHd, 34);
  const auto q = to_bf16(qd), kk = to_bf16(kd), v = to_bf16(vd), dy_tokens = to_bf16(dyd);  // dy token-major
  std::vector<double> gaind(H);
  for (int h = 0; h < H; ++h) gaind[h] = 0.6 + 0.25 * h;
  const auto gain = to_f32(gaind);
  const float inv_sqrt_d = 1.f / std::sqrt(float(kHd));
  std::vector<std::int32_t> ids(std::size_t(B) * T, 0), starts(ids.size());
  if (docs)
    for (int t : {0, 5, 6, 17}) ids[t] = 1, ids[T + t + 3] = 1;  // row 1's first document starts at 0 without a BOS
  cpu::document_starts(ids.data(), B, T, 1, starts.data());

  // Global score row R = (b H + h) T + t (lse's layout; q's row in [B, H, T, Hd]); its pair's keys.
  const auto key_row = [&](std::size_t R, int j) {  // element 0 of key j in [B, G, T, Hd]
    const std::size_t b = R / (std::size_t(H) * T), h = R / T % H;
    return ((b * G + h / r) * T + j) * kHd;
  };
  const auto lo_of = [&](std::size_t R) { return docs ? starts[R / (std::size_t(H) * T) * T + R % T] : 0; };
  const auto end_of = [&](std::size_t R) { return std::min(T, (int(R % T) / tile + 1) * tile); };
  const auto scale_of = [&](std::size_t R) { return double(gain[R / T % H]) * inv_sqrt_d; };
  // S (or dP) of a chunk, as the products write it: fp32, up to the tile's end; NaN beyond.
  const auto scores = [&](std::size_t p0, std::size_t nrows, const std::vector<double>& a, const std::vector<double>& keys) {
    std::vector<float> S(std::size_t(chunk) * rT * T, NAN);
    for (std::size_t i = 0; i < nrows; ++i) {
      const std::size_t R = p0 * rT + i;
      for (int j = 0; j < end_of(R); ++j) {
        double s = 0;
        for (int e = 0; e < kHd; ++e) s += a[R * kHd + e] * keys[key_row(R, j) + e];
        S[i * T + j] = float(s);
      }
    }
    return S;
  };
  const k::detail::ScoreRows base{0, 0, T, tile, r, G, gain.data(), inv_sqrt_d, docs ? starts.data() : nullptr};

  // Forward.
  std::vector<float> lse(rows_all, NAN);
  std::vector<bf16> y_heads(rows_all * kHd, kNanBf16);
  std::vector<std::vector<bf16>> P_fwd;
  {
    Err el("causal_softmax lse", false), ep("causal_softmax P", true);
    for (std::size_t p0 = 0; p0 < pairs; p0 += chunk) {
      const std::size_t n = std::min<std::size_t>(chunk, pairs - p0), rows = n * rT;
      const std::vector<float> S = scores(p0, rows, qd, kd);
      std::vector<bf16> P(S.size(), kNanBf16);
      k::detail::ScoreRows sr = base;
      sr.rows = rows, sr.p0 = p0;
      emu::launch(k::row_blocks(rows), 1, [&] { k::detail::causal_softmax_kernel(S.data(), sr, P.data(), lse.data() + p0 * rT); }, 256);
      for (std::size_t i = 0; i < rows; ++i) {
        const std::size_t R = p0 * rT + i;
        const double c = scale_of(R);
        const int lo = lo_of(R), t = int(R % T);
        double m = -INFINITY, sum = 0, cmax = 0;
        for (int j = lo; j <= t; ++j) m = std::max(m, c * S[i * T + j]), cmax = std::max(cmax, std::abs(c * S[i * T + j]));
        for (int j = lo; j <= t; ++j) sum += std::exp(c * S[i * T + j] - m);
        const double l = m + std::log(sum);
        el.add(lse[R], l, std::abs(l) + cmax);
        for (int j = 0; j < end_of(R); ++j) {
          const bool vis = j >= lo && j <= t;
          const double p = vis ? std::exp(c * S[i * T + j] - l) : 0;
          ep.add(val(P[i * T + j]), p, p * (1 + std::abs(c * S[i * T + j]) + std::abs(l)));
          if (!vis) REQUIRE(P[i * T + j].bits == 0);
        }
        for (int e = 0; e < kHd; ++e) {  // Y = P V (bf16 out)
          double s = 0;
          for (int j = 0; j < end_of(R); ++j) s += val(P[i * T + j]) * vd[key_row(R, j) + e];
          y_heads[R * kHd + e] = __float2bfloat16_rn(float(s));
        }
      }
      P_fwd.push_back(P);
    }
  }
  const std::size_t total = rows_all * kHd;
  std::vector<bf16> y_tokens(total, kNanBf16), dy_heads(total, kNanBf16);
  emu::launch(k::blocks_for(total, 256), 1, [&] { k::detail::relayout_kernel<kHd, true>(y_heads.data(), d, y_tokens.data()); }, 256);
  emu::launch(k::blocks_for(total, 256), 1, [&] { k::detail::relayout_kernel<kHd, false>(dy_tokens.data(), d, dy_heads.data()); }, 256);
  std::size_t misplaced = 0;
  std::vector<double> dyh(total);  // dy head-major in double
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h)
      for (int t = 0; t < T; ++t)
        for (int e = 0; e < kHd; ++e) {
          const std::size_t heads = ((std::size_t(b) * H + h) * T + t) * kHd + e, tok = ((std::size_t(b) * T + t) * H + h) * kHd + e;
          misplaced += y_tokens[tok].bits != y_heads[heads].bits || dy_heads[heads].bits != dy_tokens[tok].bits;
          dyh[heads] = dyd[tok];
        }
  CHECK(misplaced == 0);

  // Backward.
  std::vector<float> gain_part(rows_all, NAN);
  std::vector<double> dq(total, 0), dk(pairs * T * kHd, 0), dv(pairs * T * kHd, 0);
  {
    Err eds("softmax_backward dS", true), egp("softmax_backward gain_part", false);
    for (std::size_t p0 = 0, ci = 0; p0 < pairs; p0 += chunk, ++ci) {
      const std::size_t n = std::min<std::size_t>(chunk, pairs - p0), rows = n * rT;
      const std::vector<float> S = scores(p0, rows, qd, kd), dP = scores(p0, rows, dyh, vd);
      std::vector<bf16> P(S.size(), kNanBf16);
      k::detail::ScoreRows sr = base;
      sr.rows = rows, sr.p0 = p0;
      emu::launch(k::row_blocks(rows), 1, [&] { k::detail::causal_probs_kernel(S.data(), sr, lse.data() + p0 * rT, P.data()); }, 256);
      CHECK(same_bits(P, P_fwd[ci]));  // the forward's probabilities again
      for (std::size_t i = 0; i < rows; ++i)  // dV += P^T dY
        for (int j = 0; j < end_of(p0 * rT + i); ++j)
          for (int e = 0; e < kHd; ++e) dv[key_row(p0 * rT + i, j) + e] += val(P[i * T + j]) * dyh[(p0 * rT + i) * kHd + e];
      emu::launch(k::row_blocks(rows), 1, [&] {
        k::detail::softmax_backward_kernel(S.data(), dP.data(), sr, lse.data() + p0 * rT, P.data(), gain_part.data() + p0 * rT);
      }, 256);
      const std::vector<bf16>& dS = P;
      for (std::size_t i = 0; i < rows; ++i) {
        const std::size_t R = p0 * rT + i;
        const double c = scale_of(R), l = lse[R];
        const int lo = lo_of(R), t = int(R % T);
        double D = 0, Dmag = 0, acc = 0, acc_mag = 0;
        std::vector<double> p(T, 0.0), pmag(T, 0.0);
        for (int j = lo; j <= t; ++j) {
          p[j] = std::exp(c * S[i * T + j] - l), pmag[j] = p[j] * (1 + std::abs(c * S[i * T + j]) + std::abs(l));
          D += p[j] * dP[i * T + j], Dmag += pmag[j] * std::abs(dP[i * T + j]);
        }
        for (int j = 0; j < end_of(R); ++j) {
          const double z = p[j] * (dP[i * T + j] - D), zmag = pmag[j] * (std::abs(dP[i * T + j]) + Dmag) + p[j] * Dmag;
          eds.add(val(dS[i * T + j]), c * z, c * zmag);
          if (p[j] == 0) REQUIRE(dS[i * T + j].bits == 0);
          acc += z * S[i * T + j], acc_mag += zmag * std::abs(S[i * T + j]);
          for (int e = 0; e < kHd; ++e) {  // dQ = dS K;  dK += dS^T Q
            dq[R * kHd + e] += val(dS[i * T + j]) * kd[key_row(R, j) + e];
            dk[key_row(R, j) + e] += val(dS[i * T + j]) * qd[R * kHd + e];
          }
        }
        egp.add(gain_part[R], acc * inv_sqrt_d, acc_mag * inv_sqrt_d);
      }
    }
  }
  const std::vector<float> dgain0 = {0.5f, -0.25f, 0.125f, 1.f, -1.f, 2.f};
  std::vector<float> dgain = dgain0;
  emu::launch(unsigned(H), 1, [&] { k::detail::head_sum_kernel(gain_part.data(), B, H, T, dgain.data()); }, 256);
  {
    Err e("head_sum dgain (adds)", false);
    for (int h = 0; h < H; ++h) {
      double s = dgain0[h], mag = std::abs(dgain0[h]);
      for (int b = 0; b < B; ++b)
        for (int t = 0; t < T; ++t) s += gain_part[(b * H + h) * T + t], mag += std::abs(gain_part[(b * H + h) * T + t]);
      e.add(dgain[h], s, mag);
    }
  }

  // The whole pass against the CPU reference (token-major [B, T, heads, Hd]).
  std::vector<double> qt(total), kt(pairs * T * kHd), vt(kt.size()), dyt(dyd);
  for (std::size_t R = 0; R < rows_all; ++R)
    for (int e = 0; e < kHd; ++e) {
      const std::size_t b = R / (std::size_t(H) * T), h = R / T % H, t = R % T;
      qt[((b * T + t) * H + h) * kHd + e] = qd[R * kHd + e];
      if (h % r == 0) {
        const std::size_t g = h / r;
        kt[((b * T + t) * G + g) * kHd + e] = kd[((b * G + g) * T + t) * kHd + e];
        vt[((b * T + t) * G + g) * kHd + e] = vd[((b * G + g) * T + t) * kHd + e];
      }
    }
  const cpu::AttentionShape shape{B, T, H, G, kHd, docs ? starts.data() : nullptr};
  std::vector<double> y(total), lse_ref(rows_all), dq_ref(total), dk_ref(kt.size()), dv_ref(kt.size()), dgain_ref(H, 0.0);
  cpu::attention_forward(qt.data(), kt.data(), vt.data(), gaind.data(), shape, y.data(), lse_ref.data());
  cpu::attention_backward(dyt.data(), qt.data(), kt.data(), vt.data(), gaind.data(), y.data(), lse_ref.data(), shape,
                          dq_ref.data(), dk_ref.data(), dv_ref.data(), dgain_ref.data());
  // The host products' results in the reference's layouts.
  std::vector<double> dq_t(total), dk_t(kt.size()), dv_t(kt.size()), dgain_got(H);
  for (std::size_t R = 0; R < rows_all; ++R)
    for (int e = 0; e < kHd; ++e) {
      const std::size_t b = R / (std::size_t(H) * T), h = R / T % H, t = R % T;
      dq_t[((b * T + t) * H + h) * kHd + e] = dq[R * kHd + e];
      if (h % r == 0) {
        const std::size_t g = h / r;
        dk_t[((b * T + t) * G + g) * kHd + e] = dk[((b * G + g) * T + t) * kHd + e];
        dv_t[((b * T + t) * G + g) * kHd + e] = dv[((b * G + g) * T + t) * kHd + e];
      }
    }
  for (int h = 0; h < H; ++h) dgain_got[h] = double(dgain[h]) - dgain0[h];
  std::vector<double> y_got(total);
  for (std::size_t i = 0; i < total; ++i) y_got[i] = val(y_tokens[i]);
  double lse_err = 0;
  for (std::size_t R = 0; R < rows_all; ++R) lse_err = std::max(lse_err, std::abs(lse[R] - lse_ref[R]));
  std::printf("  emulated attention (docs %d) vs cpu: y %.2e  lse %.2e  dq %.2e  dk %.2e  dv %.2e  dgain %.2e\n", int(docs),
              rel_l2(y_got, y), lse_err, rel_l2(dq_t, dq_ref), rel_l2(dk_t, dk_ref), rel_l2(dv_t, dv_ref),
              rel_l2(dgain_got, dgain_ref));
  CHECK(rel_l2(y_got, y) < 1e-2);
  CHECK(lse_err < 1e-5);
  CHECK(rel_l2(dq_t, dq_ref) < 1e-2);
  CHECK(rel_l2(dk_t, dk_ref) < 1e-2);
  CHECK(rel_l2(dv_t, dv_ref) < 1e-2);
  CHECK(rel_l2(dgain_got, dgain_ref) < 1e-4);
}
}  // namespace

TEST_CASE("emulated: attention's score-row kernels match the CPU reference", "[attention_ops_emulated]") {
  attention_case(false);
  attention_case(true);
  // head_sum_kernel over more positions than its block's 256 threads.
  constexpr int B = 3, H = 2, T = 100;
  auto partd = randn(std::size_t(B) * H * T, 40);
  const auto part = to_f32(partd);
  std::vector<float> dgain = {0.75f, -0.5f};
  emu::launch(unsigned(H), 1, [&] { k::detail::head_sum_kernel(part.data(), B, H, T, dgain.data()); }, 256);
  Err e("head_sum dgain (B T > block)", false);
  for (int h = 0; h < H; ++h) {
    double s = h == 0 ? 0.75 : -0.5, mag = std::abs(s);
    for (int b = 0; b < B; ++b)
      for (int t = 0; t < T; ++t) s += partd[(b * H + h) * T + t], mag += std::abs(partd[(b * H + h) * T + t]);
    e.add(dgain[h], s, mag);
  }
}
