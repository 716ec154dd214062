// The side components' CUDA kernels (the text of `namespace detail` in ops/cuda/smear_gate.cuh,
// sparse_attn_gate.cuh, value_embedding.cuh, bigram_hash.cuh and xsa.cuh, extracted at configure
// time) run on the CPU under emulate_cuda.hpp, launched as their host wrappers launch them (256
// threads per block, or one warp per row with common.cuh's rows per block), against the CPU
// components' formulas (nn/smear_gate.hpp, sparse_attn_gate.hpp, value_embedding.hpp,
// bigram_hash.hpp, xsa.hpp) in double on the same inputs, rounded to bf16 first where the kernels
// read bf16. Shapes: widths not a multiple of 32 (48, 36 gate channels, 40 per head, 60 KV
// channels), 21 to 23 rows (partial blocks), BOS positions at a row's start, in its middle and at
// its end (the SmearGate fix), an XSA value row of zeros and one whose norm is under eps (clamped).
// The per-parameter terms the backward kernels leave for ColumnGrad are also summed here and
// compared with the CPU's parameter gradients; the two one-block reductions also run over more
// items than their block's threads (600 tokens for the gate's dW, 2500 rows for ValueEmbedding's).
// Bounds: an fp32 output within 1e-5 of the sum of its terms' magnitudes (short fp32 sums; the
// emulation's expf is exact); a bf16 output within 5e-3 of its value (rounding to bf16 is up to
// 2^-8 = 3.9e-3 relative) plus 5e-6 of its terms' magnitudes (the fp32 work before the rounding).
// Outputs are NaN beforehand (an element left unwritten fails); outputs that add (dn, dW,
// d lambda, d sigma, dv) start from known non-zero values, and the kernels that reduce run twice
// for identical bits.
// This checks the kernels' logic without a GPU; tests/cuda checks them on one.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "pgolf/nn/bigram_hash.hpp"  // bigram_bucket_at, which the hash kernel calls

#include "side_ops_kernels_emulated.hpp"
#include "emulated_check.hpp"
#include "pgolf/core/rng.hpp"

namespace {
using namespace pgolf::test::emulated;
namespace k = pgolf::ops::cuda;

double sigmoid(double z) { return 1 / (1 + std::exp(-z)); }

void elementwise(std::size_t n, auto&& body) { emu::launch(k::blocks_for(n, 256), 1, body, 256); }
void warp_rows(std::size_t rows, auto&& body) { emu::launch(k::row_blocks(rows), 1, body, 32 * k::kWarpsPerBlock); }

// ---- SmearGate, both forms ----
constexpr int kD = 48, kK = 20, kSeq = 7;
constexpr std::size_t kN = 3 * kSeq;
constexpr int kBos = 5;

std::vector<std::int32_t> smear_ids() {
  std::vector<std::int32_t> ids(kN);
  for (std::size_t n = 0; n < kN; ++n) ids[n] = std::int32_t(pgolf::uniform01(77, 9, n) * 4);  // 0..3
  ids[3] = ids[7] = ids[8] = ids[kN - 1] = kBos;  // mid-row, a row's start and the one after, the end
  return ids;
}
}  // namespace

TEST_CASE("emulated: SmearGate kernels match the CPU formulas", "[side_ops_emulated]") {
  const std::vector<std::int32_t> ids = smear_ids();
  for (int bos : {kBos, -1}) {
    CAPTURE(bos);
    auto xd = randn(kN * kD, 1), gd = randn(kD, 2), dyd = randn(kN * kD, 3);
    const auto x = to_f32(xd), gate = to_f32(gd), dy = to_f32(dyd);
    const auto blocked = [&](std::size_t n) { return bos >= 0 && ids[n] == bos; };
    std::vector<float> out(kN * kD, NAN);
    elementwise(kN * kD, [&] { k::detail::smear_forward_kernel<kD>(x.data(), gate.data(), ids.data(), kN, kSeq, bos, out.data()); });
    {
      Err e("smear_forward out", false);
      for (std::size_t n = 0; n < kN; ++n)
        for (int j = 0; j < kD; ++j) {
          const double g = blocked(n) ? 0 : sigmoid(gd[j]), prev = n % kSeq == 0 ? 0 : xd[(n - 1) * kD + j];
          e.add(out[n * kD + j], (1 - g) * xd[n * kD + j] + g * prev, std::abs(xd[n * kD + j]) + std::abs(prev));
        }
    }
    std::vector<float> dx(kN * kD, NAN), fac(kN * kD, NAN);
    elementwise(kN * kD, [&] {
      k::detail::smear_backward_kernel<kD>(dy.data(), x.data(), gate.data(), ids.data(), kN, kSeq, bos, dx.data(), fac.data());
    });
    Err edx("smear_backward dx", false), efac("smear_backward fac", false), edg("smear_backward sum fac dy = dgate", false);
    for (int j = 0; j < kD; ++j) {
      const double g = sigmoid(gd[j]);
      double acc = 0, from_fac = 0, mag = 0;
      for (std::size_t n = 0; n < kN; ++n) {
        const std::size_t i = n * kD + j;
        const bool last = (n + 1) % kSeq == 0;
        const double gt = blocked(n) ? 0 : g, gn = last || blocked(n + 1) ? 0 : g;
        const double next = last ? 0 : gn * dyd[i + kD];
        edx.add(dx[i], (1 - gt) * dyd[i] + next, std::abs(dyd[i]) + std::abs(next));
        const double prev = n % kSeq == 0 ? 0 : xd[i - kD];
        efac.add(fac[i], blocked(n) ? 0 : g * (1 - g) * (prev - xd[i]), g * (1 - g) * (std::abs(prev) + std::abs(xd[i])));
        if (!blocked(n)) acc += (prev - xd[i]) * dyd[i];  // the CPU backward's dgate
        from_fac += double(fac[i]) * dyd[i], mag += g * (1 - g) * (std::abs(prev) + std::abs(xd[i])) * std::abs(dyd[i]);
      }
      edg.add(from_fac, g * (1 - g) * acc, mag);
    }
  }
}

TEST_CASE("emulated: SmearGateLinear kernels match the CPU formulas", "[side_ops_emulated]") {
  const std::vector<std::int32_t> ids = smear_ids();
  for (int bos : {kBos, -1}) {
    CAPTURE(bos);
    auto xd = randn(kN * kD, 4), wd = randn(kK, 5, 0.4), ld = std::vector<double>{0.7}, dyd = randn(kN * kD, 6);
    const auto x = to_f32(xd), w = to_f32(wd), lambda = to_f32(ld), dy = to_f32(dyd);
    const auto off = [&](std::size_t n) { return n % kSeq == 0 || (bos >= 0 && ids[n] == bos); };
    std::vector<float> out(kN * kD, NAN), s(kN, NAN), g(kN, NAN);
    warp_rows(kN, [&] {
      k::detail::smear_linear_forward_kernel<kD, kK>(x.data(), w.data(), lambda.data(), ids.data(), kN, kSeq, bos,
                                                     out.data(), s.data(), g.data());
    });
    std::vector<double> rs(kN), rg(kN);
    {
      Err eo("smear_linear_forward out", false), es("smear_linear_forward s", false), eg("smear_linear_forward g", false);
      for (std::size_t n = 0; n < kN; ++n) {
        double z = 0, zmag = 0;
        for (int j = 0; j < kK; ++j) z += wd[j] * xd[n * kD + j], zmag += std::abs(wd[j] * xd[n * kD + j]);
        rs[n] = sigmoid(z), rg[n] = off(n) ? 0 : ld[0] * rs[n];
        es.add(s[n], rs[n], 0.25 * zmag + rs[n]);  // s' <= 1/4
        eg.add(g[n], rg[n], ld[0] * (0.25 * zmag + rs[n]));
        for (int j = 0; j < kD; ++j) {
          const double prev = off(n) ? 0 : rg[n] * xd[(n - 1) * kD + j];
          eo.add(out[n * kD + j], xd[n * kD + j] + prev, std::abs(xd[n * kD + j]) + std::abs(prev) + 1e-30);
        }
      }
    }
    std::vector<float> dx(kN * kD, NAN), tw(kN * kK, NAN), tl(kN, NAN);
    const auto backward = [&] {
      warp_rows(kN, [&] {
        k::detail::smear_linear_backward_kernel<kD, kK>(dy.data(), x.data(), w.data(), lambda.data(), s.data(), g.data(),
                                                        ids.data(), kN, kSeq, bos, dx.data(), tw.data(), tl.data());
      });
    };
    backward();
    Err edx("smear_linear_backward dx", false), etw("smear_linear_backward tw", false),
        etl("smear_linear_backward tl", false), edw("smear_linear sum tw = dw", false), edl("smear_linear sum tl = dlambda", false);
    std::vector<double> dw(kK, 0), dw_mag(kK, 0), dw_got(kK, 0);
    double dl = 0, dl_mag = 0, dl_got = 0;
    for (std::size_t n = 0; n < kN; ++n) {
      const bool last = (n + 1) % kSeq == 0;
      double q = 0, qmag = 0;
      if (!off(n))
        for (int j = 0; j < kD; ++j) q += dyd[n * kD + j] * xd[(n - 1) * kD + j], qmag += std::abs(dyd[n * kD + j] * xd[(n - 1) * kD + j]);
      const double sd = rs[n] * (1 - rs[n]), dz = off(n) ? 0 : ld[0] * sd * q, dzmag = ld[0] * (sd * qmag + std::abs(q));
      const double gn = last ? 0 : rg[n + 1];
      for (int j = 0; j < kD; ++j) {
        const std::size_t i = n * kD + j;
        const double next = last ? 0 : gn * dyd[i + kD], wt = j < kK ? dz * wd[j] : 0;
        edx.add(dx[i], dyd[i] + next + wt, std::abs(dyd[i]) + std::abs(next) + (j < kK ? dzmag * std::abs(wd[j]) : 0));
        if (j < kK) {
          etw.add(tw[n * kK + j], dz * xd[i], dzmag * std::abs(xd[i]) + 1e-30);
          dw[j] += dz * xd[i], dw_mag[j] += dzmag * std::abs(xd[i]), dw_got[j] += tw[n * kK + j];
        }
      }
      etl.add(tl[n], off(n) ? 0 : rs[n] * q, rs[n] * qmag + std::abs(q) + 1e-30);
      if (!off(n)) dl += rs[n] * q;
      dl_mag += rs[n] * qmag + std::abs(q), dl_got += tl[n];
    }
    for (int j = 0; j < kK; ++j) edw.add(dw_got[j], dw[j], dw_mag[j]);
    edl.add(dl_got, dl, dl_mag);
  }
}

namespace {
// ---- SparseAttnGate ----
constexpr int kGH = 3, kGHd = 40, kGC = 36;
constexpr std::size_t kGTok = 23;
}  // namespace

TEST_CASE("emulated: SparseAttnGate kernels match the CPU formulas", "[side_ops_emulated]") {
  constexpr int dim = kGH * kGHd;
  const k::GateDims d{kGTok, dim, kGH, kGHd, kGC, 2.5f};
  auto nd = randn(kGTok * dim, 11), yd = randn(kGTok * dim, 12), dzd = randn(kGTok * dim, 13), Wd = randn(kGH * kGC, 14, 0.15);
  const auto n = to_bf16(nd), y = to_bf16(yd), dz = to_bf16(dzd);
  const auto W = to_f32(Wd);
  std::vector<float> gate(kGTok * kGH, NAN);
  std::vector<bf16> z(kGTok * dim, __float2bfloat16_rn(NAN));
  warp_rows(kGTok * kGH, [&] { k::detail::gate_forward_kernel(n.data(), y.data(), W.data(), d, gate.data(), z.data()); });
  std::vector<double> g(kGTok * kGH), gmag(kGTok * kGH);
  {
    Err eg("gate_forward gate", false), ez("gate_forward z", true);
    for (std::size_t t = 0; t < kGTok; ++t)
      for (int h = 0; h < kGH; ++h) {
        double a = 0, amag = 0;
        for (int j = 0; j < kGC; ++j) a += Wd[h * kGC + j] * nd[t * dim + j], amag += std::abs(Wd[h * kGC + j] * nd[t * dim + j]);
        const std::size_t w = t * kGH + h;
        g[w] = sigmoid(d.scale * a), gmag[w] = g[w] + 0.25 * d.scale * amag;
        eg.add(gate[w], g[w], gmag[w]);
        for (int e = 0; e < kGHd; ++e) {
          const std::size_t at = t * dim + h * kGHd + e;
          ez.add(val(z[at]), g[w] * yd[at], gmag[w] * std::abs(yd[at]));
        }
      }
  }

  std::vector<float> dl(kGTok * kGH, NAN);
  std::vector<bf16> dy(kGTok * dim, __float2bfloat16_rn(NAN));
  warp_rows(kGTok * kGH, [&] { k::detail::gate_backward_rows_kernel(dz.data(), y.data(), gate.data(), d, dl.data(), dy.data()); });
  std::vector<double> rdl(kGTok * kGH), rdl_mag(kGTok * kGH);
  {
    Err edl("gate_backward_rows dl", false), edy("gate_backward_rows dy", true);
    for (std::size_t t = 0; t < kGTok; ++t)
      for (int h = 0; h < kGH; ++h) {
        const std::size_t w = t * kGH + h, at = t * dim + h * kGHd;
        double dot = 0, mag = 0;
        for (int e = 0; e < kGHd; ++e) {
          dot += dzd[at + e] * yd[at + e], mag += std::abs(dzd[at + e] * yd[at + e]);
          edy.add(val(dy[at + e]), g[w] * dzd[at + e], gmag[w] * std::abs(dzd[at + e]));
        }
        const double sd = g[w] * (1 - g[w]);
        rdl[w] = d.scale * sd * dot, rdl_mag[w] = d.scale * (sd * mag + gmag[w] * std::abs(dot) * 2);
        edl.add(dl[w], rdl[w], rdl_mag[w]);
      }
  }

  for (bool accumulate : {false, true}) {
    CAPTURE(accumulate);
    auto before = randn(kGTok * dim, 15);
    std::vector<float> dn = accumulate ? to_f32(before) : std::vector<float>(kGTok * dim, NAN);
    elementwise(kGTok * dim, [&] { k::detail::gate_backward_input_kernel(dl.data(), W.data(), d, accumulate, dn.data()); });
    Err e(accumulate ? "gate_backward_input dn (accumulate)" : "gate_backward_input dn", false);
    for (std::size_t t = 0; t < kGTok; ++t)
      for (int j = 0; j < dim; ++j) {
        double s = 0, mag = 0;
        if (j < kGC)
          for (int h = 0; h < kGH; ++h) s += rdl[t * kGH + h] * Wd[h * kGC + j], mag += rdl_mag[t * kGH + h] * std::abs(Wd[h * kGC + j]);
        const double b = accumulate ? before[t * dim + j] : 0;
        e.add(dn[t * dim + j], b + s, std::abs(b) + mag + 1e-30);
      }
  }

  auto w0 = randn(kGH * kGC, 16);
  const auto dW0 = to_f32(w0);
  std::vector<float> dW = dW0, again = dW0;
  emu::launch(unsigned(kGH * kGC), 1, [&] { k::detail::gate_weight_grad_kernel(dl.data(), n.data(), d, dW.data()); }, 256);
  emu::launch(unsigned(kGH * kGC), 1, [&] { k::detail::gate_weight_grad_kernel(dl.data(), n.data(), d, again.data()); }, 256);
  CHECK(same_bits(dW, again));
  Err e("gate_weight_grad dW (adds)", false);
  for (int h = 0; h < kGH; ++h)
    for (int j = 0; j < kGC; ++j) {
      double s = 0, mag = 0;
      for (std::size_t t = 0; t < kGTok; ++t) s += rdl[t * kGH + h] * nd[t * dim + j], mag += rdl_mag[t * kGH + h] * std::abs(nd[t * dim + j]);
      e.add(dW[h * kGC + j], w0[h * kGC + j] + s, std::abs(w0[h * kGC + j]) + mag);
    }
  // The weight gradient alone over more tokens than its block's 256 threads.
  const k::GateDims big{600, 8, 2, 4, 3, 2.5f};
  auto bdl = randn(big.tokens * big.H, 17), bn = randn(big.tokens * big.dim, 18), bw = randn(big.H * big.c, 19);
  const auto bdlf = to_f32(bdl), bwf = to_f32(bw);
  const auto bnb = to_bf16(bn);
  std::vector<float> bdW = bwf;
  emu::launch(unsigned(big.H * big.c), 1, [&] { k::detail::gate_weight_grad_kernel(bdlf.data(), bnb.data(), big, bdW.data()); }, 256);
  for (int h = 0; h < big.H; ++h)
    for (int j = 0; j < big.c; ++j) {
      double s = bw[h * big.c + j], mag = std::abs(s);
      for (std::size_t t = 0; t < big.tokens; ++t) s += bdl[t * big.H + h] * bn[t * big.dim + j], mag += std::abs(bdl[t * big.H + h] * bn[t * big.dim + j]);
      e.add(bdW[h * big.c + j], s, mag);
    }
}

TEST_CASE("emulated: ValueEmbedding kernels match the CPU formulas", "[side_ops_emulated]") {
  const k::VeShape s{2, 11, 3, 20};
  const std::size_t N = s.tokens();
  const int K = s.kv();
  // Head-major [B, G, T, Hd] index of token n's channel o (o = g Hd + e).
  const auto hm = [&](std::size_t n, int o) {
    return ((n / s.T * s.G + o / s.Hd) * s.T + n % s.T) * std::size_t(s.Hd) + o % s.Hd;
  };
  auto vd = randn(N * K, 21), rawd = randn(N * K, 22), dvd = randn(N * K, 23), lsd = std::vector<double>{0.8, 1.3};
  const auto v = to_bf16(vd);
  const auto raw = to_f32(rawd), dv = to_f32(dvd), ls = to_f32(lsd);
  const float *lambda = &ls[0], *sigma = &ls[1];
  const double lsig = lsd[0] * lsd[1];
  std::vector<bf16> out(N * K, __float2bfloat16_rn(NAN));
  elementwise(N * K, [&] { k::detail::ve_add_forward_kernel(v.data(), raw.data(), lambda, sigma, s, out.data()); });
  {
    Err e("ve_add_forward out", true);
    for (std::size_t n = 0; n < N; ++n)
      for (int o = 0; o < K; ++o) {
        const double a = vd[hm(n, o)], b = lsig * rawd[n * K + o];
        e.add(val(out[hm(n, o)]), a + b, std::abs(a) + std::abs(b));
      }
  }
  std::vector<bf16> gs(N * K, __float2bfloat16_rn(NAN));
  std::vector<float> rowdot(N, NAN);
  warp_rows(N, [&] { k::detail::ve_backward_rows_kernel(dv.data(), raw.data(), lambda, sigma, s, gs.data(), rowdot.data()); });
  double dot = 0, dot_mag = 0;
  {
    Err eg("ve_backward_rows gs", true), er("ve_backward_rows rowdot", false);
    for (std::size_t n = 0; n < N; ++n) {
      double r = 0, mag = 0;
      for (int o = 0; o < K; ++o) {
        eg.add(val(gs[n * K + o]), lsig * dvd[hm(n, o)], 0);
        r += dvd[hm(n, o)] * rawd[n * K + o], mag += std::abs(dvd[hm(n, o)] * rawd[n * K + o]);
      }
      er.add(rowdot[n], r, mag);
      dot += r, dot_mag += mag;
    }
  }
  // The CPU's dlambda += sigma dot, dsigma += lambda dot, onto known values; then a longer rowdot
  // (more than the block's 1024 threads) on its own, summed in double by the kernel.
  {
    float dlambda = 0.125f, dsigma = -0.25f, dlambda2 = 0.125f, dsigma2 = -0.25f;
    emu::launch(1, 1, [&] { k::detail::ve_scalar_grads_kernel(rowdot.data(), N, lambda, sigma, &dlambda, &dsigma); }, 1024);
    emu::launch(1, 1, [&] { k::detail::ve_scalar_grads_kernel(rowdot.data(), N, lambda, sigma, &dlambda2, &dsigma2); }, 1024);
    CHECK((dlambda == dlambda2 && dsigma == dsigma2));
    Err e("ve_scalar_grads dlambda, dsigma (add)", false);
    e.add(dlambda, 0.125 + lsd[1] * dot, 0.125 + lsd[1] * dot_mag);
    e.add(dsigma, -0.25 + lsd[0] * dot, 0.25 + lsd[0] * dot_mag);
    auto longd = randn(2500, 24);
    const auto longf = to_f32(longd);
    double sum = 0, mag = 0;
    for (double x : longd) sum += x, mag += std::abs(x);
    float dl = 0.5f, ds = 1.5f;
    emu::launch(1, 1, [&] { k::detail::ve_scalar_grads_kernel(longf.data(), longf.size(), lambda, sigma, &dl, &ds); }, 1024);
    e.add(dl, 0.5 + lsd[1] * sum, 0.5 + lsd[1] * mag);
    e.add(ds, 1.5 + lsd[0] * sum, 1.5 + lsd[0] * mag);
  }
}

TEST_CASE("emulated: BigramHash kernels match the CPU formulas", "[side_ops_emulated]") {
  constexpr int seq = 37, buckets = 1000, D = 40;
  constexpr std::size_t N = 9 * seq;
  std::vector<std::int32_t> ids(N);
  for (std::size_t n = 0; n < N; ++n) ids[n] = std::int32_t(pgolf::uniform01(77, 31, n) * 65536);  // past 59,139: wraps
  std::vector<std::int32_t> h(N, -7);
  elementwise(N, [&] { k::detail::bigram_hash_kernel(ids.data(), N, seq, buckets, h.data()); });
  for (std::size_t n = 0; n < N; ++n) {
    CAPTURE(n);
    REQUIRE(h[n] == pgolf::bigram_bucket_at(ids.data(), n, int(n % seq), buckets));  // the CPU forward's loop
    REQUIRE((n % seq == 0 ? h[n] == buckets - 1 : (h[n] >= 0 && h[n] < buckets - 1)));
  }

  constexpr std::size_t rows = 21;
  auto xd = randn(rows * D, 32), pd = randn(rows * D, 33), dxd = randn(rows * D, 34), bd = std::vector<double>{0.35};
  const auto x = to_f32(xd), p = to_f32(pd), dx = to_f32(dxd), beta = to_f32(bd);
  std::vector<float> out(rows * D, NAN);
  elementwise(rows * D, [&] { k::detail::bigram_add_kernel<D>(x.data(), p.data(), beta.data(), rows * D, out.data()); });
  {
    Err e("bigram_add out", false);
    for (std::size_t i = 0; i < rows * D; ++i) e.add(out[i], xd[i] + bd[0] * pd[i], std::abs(xd[i]) + std::abs(bd[0] * pd[i]));
  }
  const auto check_rows = [&](const char* name, bool is_bf16, auto&& d, const std::vector<float>& row) {
    Err ed(name, is_bf16), er("bigram_backward_rows row", false);
    double dbeta = 0, mag = 0, got = 0;
    for (std::size_t r = 0; r < rows; ++r) {
      double s = 0, m = 0;
      for (int c = 0; c < D; ++c) {
        const std::size_t i = r * D + c;
        ed.add(val(d[i]), bd[0] * dxd[i], std::abs(bd[0] * dxd[i]));
        s += dxd[i] * pd[i], m += std::abs(dxd[i] * pd[i]);
      }
      er.add(row[r], s, m);
      dbeta += s, mag += m, got += row[r];
    }
    er.add(got, dbeta, mag);  // the CPU's dbeta, as ColumnGrad sums the rows
  };
  std::vector<float> df(rows * D, NAN), row(rows, NAN);
  warp_rows(rows, [&] { k::detail::bigram_backward_rows_kernel<D, float>(dx.data(), p.data(), beta.data(), rows, df.data(), row.data()); });
  check_rows("bigram_backward_rows d (fp32)", false, df, row);
  std::vector<bf16> db(rows * D, __float2bfloat16_rn(NAN));
  std::fill(row.begin(), row.end(), NAN);
  warp_rows(rows, [&] { k::detail::bigram_backward_rows_kernel<D, bf16>(dx.data(), p.data(), beta.data(), rows, db.data(), row.data()); });
  check_rows("bigram_backward_rows d (bf16)", true, db, row);
}

TEST_CASE("emulated: XSA kernels match the CPU formulas", "[side_ops_emulated]") {
  constexpr int Hd = 64;
  const float eps = 1e-12f;  // Xsa::kEps, as the component passes it
  for (const k::XsaDims d : {k::XsaDims{2, 5, 6, 2}, k::XsaDims{1, 7, 4, 4}}) {
    CAPTURE(d.B, d.T, d.H, d.G);
    const int r = d.H / d.G, dim = d.H * Hd;
    const std::size_t N = std::size_t(d.B) * d.T, W = d.warps();
    auto yd = randn(N * dim, 41), vd = randn(N * d.G * Hd, 42), dzd = randn(N * dim, 43);
    // v row of warp 1 all zero (n = 0), of warp 2 tiny (norm ~1e-13 < eps: clamped).
    const auto vrow = [&](std::size_t w) {  // head-major row of warp w = tok G + g
      const std::size_t tok = w / d.G, g = w % d.G;
      return ((tok / d.T * d.G + g) * d.T + tok % d.T) * Hd;
    };
    for (int e = 0; e < Hd; ++e) vd[vrow(1) + e] = 0, vd[vrow(2) + e] *= 1e-14;
    const auto y = to_bf16(yd), v = to_bf16(vd), dz = to_bf16(dzd);
    std::vector<bf16> z(N * dim, __float2bfloat16_rn(NAN));
    warp_rows(W, [&] { k::detail::xsa_forward_kernel<Hd>(y.data(), v.data(), d, eps, z.data()); });
    const auto prev = randn(N * d.G * Hd, 44);
    for (bool accumulate : {false, true}) {
      CAPTURE(accumulate);
      std::vector<bf16> dy(N * dim, __float2bfloat16_rn(NAN));
      auto dv_before = prev;
      std::vector<float> dv = accumulate ? to_f32(dv_before) : std::vector<float>(N * d.G * Hd, NAN);
      warp_rows(W, [&] { k::detail::xsa_backward_kernel<Hd>(dz.data(), y.data(), v.data(), d, eps, accumulate, dy.data(), dv.data()); });
      Err ez("xsa_forward z", true), edy("xsa_backward dy", true), edv(accumulate ? "xsa_backward dv (accumulate)" : "xsa_backward dv", false);
      for (std::size_t w = 0; w < W; ++w) {
        const std::size_t tok = w / d.G, g = w % d.G;
        const double* vg = vd.data() + vrow(w);
        double ss = 0, nn[Hd], dn[Hd] = {}, dn_mag[Hd] = {};
        for (int e = 0; e < Hd; ++e) ss += vg[e] * vg[e];
        const double norm = std::sqrt(ss), den = std::max(norm, double(eps));
        for (int e = 0; e < Hd; ++e) nn[e] = vg[e] / den;
        for (int hh = 0; hh < r; ++hh) {
          const std::size_t at = tok * dim + std::size_t(g * r + hh) * Hd;
          double sy = 0, sz = 0, sy_mag = 0, sz_mag = 0;
          for (int e = 0; e < Hd; ++e)
            sy += yd[at + e] * nn[e], sz += dzd[at + e] * nn[e], sy_mag += std::abs(yd[at + e] * nn[e]), sz_mag += std::abs(dzd[at + e] * nn[e]);
          for (int e = 0; e < Hd; ++e) {
            ez.add(val(z[at + e]), yd[at + e] - sy * nn[e], std::abs(yd[at + e]) + sy_mag * std::abs(nn[e]));
            edy.add(val(dy[at + e]), dzd[at + e] - sz * nn[e], std::abs(dzd[at + e]) + sz_mag * std::abs(nn[e]));
            dn[e] -= sy * dzd[at + e] + sz * yd[at + e];
            dn_mag[e] += sy_mag * std::abs(dzd[at + e]) + sz_mag * std::abs(yd[at + e]);
          }
        }
        double p = 0, p_mag = 0;
        for (int e = 0; e < Hd; ++e) p += dn[e] * nn[e], p_mag += dn_mag[e] * std::abs(nn[e]);
        for (int e = 0; e < Hd; ++e) {
          const bool clamped = !(norm > eps);
          const double want = (clamped ? dn[e] : dn[e] - p * nn[e]) / (clamped ? double(eps) : norm);
          const double mag = (dn_mag[e] + (clamped ? 0 : p_mag * std::abs(nn[e]))) / (clamped ? double(eps) : norm);
          const double b = accumulate ? dv_before[vrow(w) + e] : 0;
          edv.add(dv[vrow(w) + e], b + want, std::abs(b) + mag + 1e-30);
        }
      }
    }
  }
}
