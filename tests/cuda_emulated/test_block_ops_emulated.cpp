// The transformer block's elementwise and row kernels (the text of `namespace detail` in
// ops/cuda/rmsnorm.cuh, rope.cuh, activation.cuh, channel.cuh, skip_gate.cuh and parallel_lanes.cuh,
// extracted at configure time) run on the CPU under emulate_cuda.hpp, launched as their host wrappers
// launch them (row kernels: one warp per row, common.cuh's 8 rows per block; elementwise kernels: 256
// threads per element block; ColumnGrad's partials: 128 rows per part, min(width, 512) threads), against
// the CPU reference in double (ops/cpu/rmsnorm.hpp, rope.hpp, activation.hpp, and the CPU components'
// formulas: nn/unet_skip.hpp's gated skip, nn/parallel_lanes.hpp's lane merge) on the same inputs
// (bf16-rounded where the kernel reads bf16).
// Shapes: Dim 96 (3 values per lane), 21 rows (a partial last row block; 2016 elements = 7 full element
// blocks and one of 224); RoPE with B 2, T 5, 6 query and 2 KV heads of 64 dims (100 warps: the last
// block half empty), rotating 16 (partial) and 64 (all) dims; column sums over 300 rows (two full
// parts and one of 44) of widths 96 and 600 (a thread loops over two columns).
// Bounds: fp32 results within 1e-5 relative (+ 1e-6 of the tensor's largest value where terms cancel);
// bf16 results within 2^-8 relative (half a bf16 ulp) + 1e-5 of the largest; the activations' products
// are exact in fp32, so their bf16 results must be the correctly rounded reference, bit for bit; column
// sums within 1e-5 of the sum of the terms' magnitudes. Outputs are NaN beforehand (an element left
// unwritten fails); outputs that accumulate (+=) start from known values; in-place forms run in place;
// the fixed-order column sums and lambda gradients run twice and must give the same bits.
// common.cuh's cast_to_bf16 and scale_into kernels are checked here too, bit for bit.
// This checks the kernels' logic without a GPU; tests/cuda/ checks them on one.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "pgolf/ops/activation_kind.hpp"  // before the kernels' text, which names Activation

#include "block_ops_kernels_emulated.hpp"
#include "pgolf/core/rng.hpp"
#include "pgolf/ops/cpu/activation.hpp"
#include "pgolf/ops/cpu/rmsnorm.hpp"
#include "pgolf/ops/cpu/rope.hpp"

namespace {
namespace k = pgolf::ops::cuda;
namespace kd = pgolf::ops::cuda::detail;
namespace cpu = pgolf::ops::cpu;
using bf16 = __nv_bfloat16;
using pgolf::Activation;

constexpr int D = 96;
constexpr std::size_t kRows = 21, kN = kRows * D;
constexpr float kEps = 1e-2f;  // large enough that the rows scaled down below feel it
constexpr double kF32 = 1e-5, kBf16 = 1.0 / 256;

double val(float v) { return v; }
double val(bf16 v) { return __bfloat162float(v); }
template <class T>
std::vector<T> filled(std::size_t n, float v) { return std::vector<T>(n, k::from_float<T>(v)); }
template <class T>
std::vector<T> randn(std::size_t n, std::uint32_t stream, double scale = 1) {
  std::vector<T> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = k::from_float<T>(float(scale * pgolf::normal01(7, stream, i)));
  return v;
}
// Rows of very different norms (some where eps matters).
std::vector<float> rows_randn(std::size_t rows, int width, std::uint32_t stream) {
  std::vector<float> v = randn<float>(rows * width, stream);
  for (std::size_t r = 0; r < rows; ++r)
    for (int i = 0; i < width; ++i) v[r * width + i] *= float(0.03 + 2 * pgolf::uniform01(7, stream + 1000, r));
  return v;
}
template <class T>
std::vector<double> dbl(const std::vector<T>& v) {
  std::vector<double> d(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) d[i] = val(v[i]);
  return d;
}

// Every element within rel |ref| + abs_frac max|ref| (a NaN fails); prints the worst error in units of
// the bound.
template <class T>
void check_close(const std::string& what, const std::vector<T>& got, const std::vector<double>& ref, double rel,
                 double abs_frac = 1e-6) {
  REQUIRE(got.size() == ref.size());
  double top = 0, worst = 0, worst_rel = 0;
  for (double r : ref) top = std::max(top, std::abs(r));
  std::size_t at = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const double err = std::abs(val(got[i]) - ref[i]), e = err / (rel * std::abs(ref[i]) + abs_frac * top + 1e-300);
    if (!(e <= worst)) worst = std::isnan(e) ? INFINITY : e, at = i;
    if (ref[i] != 0) worst_rel = std::max(worst_rel, err / std::abs(ref[i]));
  }
  std::printf("  %-44s worst %.3f of the bound (largest relative error %.2e)\n", what.c_str(), worst, worst_rel);
  INFO(what << ": element " << at << " got " << val(got[at]) << " want " << ref[at]);
  CHECK(worst <= 1);
}

void launch_rows(std::size_t rows, auto&& body) { emu::launch(k::row_blocks(rows), 1, body, 32 * k::kWarpsPerBlock); }
void launch_elems(std::size_t n, auto&& body) { emu::launch(k::blocks_for(n, 256), 1, body, 256); }

// ColumnGrad::add's two launches (kRowsPerPart 128; partials in a NaN-filled scratch).
constexpr int kRowsPerPart = 128;
template <class TF>
void column_grad(const float* g, const TF* f, std::size_t rows, int width, float* grad) {
  const int parts = int((rows + kRowsPerPart - 1) / kRowsPerPart);
  std::vector<float> partial(std::size_t(parts) * width, NAN);
  emu::launch(parts, 1, [&] { kd::col_dot_partials_kernel<TF>(g, f, rows, width, kRowsPerPart, partial.data()); },
              std::min(width, 512));
  emu::launch(k::blocks_for(std::size_t(width), 256), 1,
              [&] { kd::col_reduce_kernel(partial.data(), parts, width, grad); }, 256);
}
// grad0 + sum_n g f per column, with the bound's scale (the sum of the terms' magnitudes).
void column_ref(const std::vector<double>& g, const std::vector<double>* f, std::size_t rows, int width,
                const std::vector<float>& grad0, std::vector<double>& ref, std::vector<double>& mag) {
  ref.assign(width, 0), mag.assign(width, 0);
  for (int c = 0; c < width; ++c) {
    ref[c] = grad0[c], mag[c] = std::abs(grad0[c]);
    for (std::size_t r = 0; r < rows; ++r) {
      const double t = g[r * width + c] * (f ? (*f)[r * width + c] : 1.0);
      ref[c] += t, mag[c] += std::abs(t);
    }
  }
}
void check_columns(const std::string& what, const std::vector<float>& got, const std::vector<double>& ref,
                   const std::vector<double>& mag) {
  double worst = 0;
  for (std::size_t c = 0; c < ref.size(); ++c) {
    const double e = std::abs(got[c] - ref[c]) / (kF32 * mag[c]);
    worst = std::isnan(e) ? INFINITY : std::max(worst, e);
  }
  std::printf("  %-44s worst %.3f of the bound\n", what.c_str(), worst);
  INFO(what);
  CHECK(worst <= 1);
}
}  // namespace

TEST_CASE("emulated: RMSNorm row kernels and scale_add match the CPU reference", "[block_ops_emulated]") {
  const std::vector<float> x = rows_randn(kRows, D, 1), x0 = rows_randn(kRows, D, 3), s = randn<float>(D, 5);
  std::vector<float> mix = randn<float>(2 * D, 6);
  const std::vector<bf16> f = randn<bf16>(kN, 7, 0.7);
  std::vector<double> pre_id = dbl(x), pre_mix(kN), pre_sa(kN);
  for (std::size_t e = 0; e < kN; ++e) {
    const int c = int(e % D);
    pre_mix[e] = double(mix[c]) * x[e] + double(mix[D + c]) * x0[e];
    pre_sa[e] = x[e] + double(s[c]) * val(f[e]);
  }
  // One forward variant: the normalised row in TOut, rstd, and the pre-norm row kept where asked.
  auto forward = [&](const std::string& what, auto out_type, auto pre, const std::vector<double>& ref_pre, bool keep) {
    using TOut = decltype(out_type);
    std::vector<float> kept(kN, NAN), rstd(kRows, NAN);
    std::vector<TOut> y = filled<TOut>(kN, NAN);
    launch_rows(kRows, [&] { kd::pre_norm_kernel<D, TOut>(pre, kRows, kEps, keep ? kept.data() : nullptr, y.data(), rstd.data()); });
    std::vector<double> ry(kN), rr(kRows);
    cpu::rmsnorm_forward(ref_pre.data(), kRows, D, double(kEps), ry.data(), rr.data());
    check_close(what + " rstd", rstd, rr, kF32, 0);
    check_close(what + " y", y, ry, std::is_same_v<TOut, bf16> ? kBf16 : kF32, std::is_same_v<TOut, bf16> ? 1e-5 : 1e-6);
    if (keep) check_close(what + " kept pre-norm row", kept, ref_pre, kF32);
    else for (float v : kept) REQUIRE(std::isnan(v));  // keep null: nothing written
  };
  forward("rmsnorm_forward bf16", bf16{}, kd::Identity{x.data()}, pre_id, false);
  forward("rmsnorm_forward fp32", float{}, kd::Identity{x.data()}, pre_id, false);
  forward("mix_norm_forward", bf16{}, kd::ResidMix<D>{x.data(), x0.data(), mix.data()}, pre_mix, true);
  forward("scale_add_norm_forward", bf16{}, kd::ScaleAdd<bf16>{x.data(), s.data(), f.data()}, pre_sa, true);

  // Backward, as the wrapper's two uses: written (res null) and added into dx (res aliasing dx).
  std::vector<double> ry(kN), rr(kRows);
  cpu::rmsnorm_forward(pre_id.data(), kRows, D, double(kEps), ry.data(), rr.data());
  std::vector<float> rstd(kRows);
  for (std::size_t r = 0; r < kRows; ++r) rstd[r] = float(rr[r]);
  std::vector<double> n(kN), rs = dbl(rstd);  // the normalised row as the kernel recomputes it, from x and rstd
  for (std::size_t e = 0; e < kN; ++e) n[e] = x[e] * rs[e / D];
  const std::vector<float> dn = randn<float>(kN, 8), dx0 = randn<float>(kN, 9);
  for (bool accumulate : {false, true}) {
    std::vector<float> dx = accumulate ? dx0 : filled<float>(kN, NAN);
    launch_rows(kRows, [&] {
      kd::rmsnorm_backward_kernel<D>(dn.data(), x.data(), rstd.data(), kRows, accumulate ? dx.data() : nullptr, dx.data());
    });
    std::vector<double> ref = dbl(dx0);
    cpu::rmsnorm_backward(dbl(dn).data(), n.data(), rs.data(), kRows, D, ref.data(), accumulate);
    check_close(accumulate ? "rmsnorm_backward res = dx" : "rmsnorm_backward res null", dx, ref, kF32);
  }

  // scale_add: a bf16 branch into a new buffer; an fp32 one (the U-Net skip) in place over a.
  std::vector<float> out(kN, NAN);
  launch_elems(kN, [&] { kd::scale_add_kernel<D, bf16>(x.data(), s.data(), f.data(), kN, out.data()); });
  check_close("scale_add_forward bf16 f", out, pre_sa, kF32);
  std::vector<float> a = x;
  const std::vector<float> skip = x0;
  launch_elems(kN, [&] { kd::scale_add_kernel<D, float>(a.data(), s.data(), skip.data(), kN, a.data()); });
  std::vector<double> ref(kN);
  for (std::size_t e = 0; e < kN; ++e) ref[e] = x[e] + double(s[e % D]) * skip[e];
  check_close("scale_add_forward fp32 f, in place", a, ref, kF32);
}

namespace {
template <int Hd, int RopeDims>
void check_qk_norm_rope() {
  const k::QkvShape s{2, 5, 6, 2};
  const int B = s.B, T = s.T, H = s.H, G = s.G, slots = H + 2 * G;
  const std::size_t N = s.tokens(), items = N * slots;
  const std::string name = "qk_norm_rope<" + std::to_string(Hd) + ", " + std::to_string(RopeDims) + ">";
  std::vector<float> raw = rows_randn(items, Hd, 20);  // a row per (token, slot), of different norms
  std::vector<bf16> qkv(raw.size());
  for (std::size_t i = 0; i < raw.size(); ++i) qkv[i] = __float2bfloat16_rn(raw[i]);
  const cpu::RopeTable<float> rt(T, RopeDims, 10000.0);
  cpu::RopeTable<double> rtd;  // the same table, in double
  rtd.seq_len = T, rtd.rope_dims = RopeDims, rtd.cos = dbl(rt.cos), rtd.sin = dbl(rt.sin);

  // Slots [first, first + heads) of qkv as [N, heads, Hd], and a [B, heads, T, Hd] tensor's index.
  auto gather = [&](int first, int heads) {
    std::vector<double> o(N * heads * Hd);
    for (std::size_t n = 0; n < N; ++n)
      for (int h = 0; h < heads; ++h)
        for (int d = 0; d < Hd; ++d) o[(n * heads + h) * Hd + d] = val(qkv[(n * slots + first + h) * Hd + d]);
    return o;
  };
  auto hm = [&](std::size_t n, int h, int heads, int d) { return ((n / T * heads + h) * T + n % T) * Hd + d; };

  std::vector<bf16> q = filled<bf16>(N * H * Hd, NAN), kk = filled<bf16>(N * G * Hd, NAN), v = kk;
  std::vector<float> rq(N * H, NAN), rk(N * G, NAN);
  launch_rows(items, [&] {
    kd::qk_norm_rope_forward_kernel<Hd, RopeDims>(qkv.data(), s, rt.cos.data(), rt.sin.data(), kEps, q.data(), kk.data(),
                                                  v.data(), rq.data(), rk.data());
  });
  struct Part {
    const char* what;
    int first, heads;
    std::vector<bf16>* out;
    std::vector<float>* rstd;
    std::vector<double> x, n, rstd_ref;
  };
  Part parts[2] = {{"q", 0, H, &q, &rq, {}, {}, {}}, {"k", H, G, &kk, &rk, {}, {}, {}}};
  for (Part& p : parts) {
    p.x = gather(p.first, p.heads);
    std::vector<double> y(p.x.size()), want(p.x.size());
    p.n.resize(p.x.size()), p.rstd_ref.resize(N * p.heads);
    cpu::rmsnorm_forward(p.x.data(), N * p.heads, Hd, double(kEps), p.n.data(), p.rstd_ref.data());
    cpu::rope_forward(p.n.data(), y.data(), B, T, p.heads, Hd, rtd);
    for (std::size_t n = 0; n < N; ++n)
      for (int h = 0; h < p.heads; ++h)
        for (int d = 0; d < Hd; ++d) want[hm(n, h, p.heads, d)] = y[(n * p.heads + h) * Hd + d];
    check_close(name + " forward " + p.what, *p.out, want, kBf16, 1e-5);
    check_close(name + " forward rstd " + p.what, *p.rstd, p.rstd_ref, kF32, 0);
  }
  for (std::size_t n = 0; n < N; ++n)  // v: the same bits, re-laid out
    for (int h = 0; h < G; ++h)
      for (int d = 0; d < Hd; ++d) REQUIRE(v[hm(n, h, G, d)].bits == qkv[(n * slots + H + G + h) * Hd + d].bits);

  // Backward from the reference's rstd (in fp32, as the forward saves it).
  const std::vector<float> dq = randn<float>(q.size(), 21), dk = randn<float>(kk.size(), 22), dv = randn<float>(v.size(), 23);
  for (Part& p : parts) {
    p.rstd->resize(p.rstd_ref.size());
    for (std::size_t i = 0; i < p.rstd_ref.size(); ++i) (*p.rstd)[i] = float(p.rstd_ref[i]);
  }
  std::vector<bf16> dqkv = filled<bf16>(qkv.size(), NAN);
  launch_rows(items, [&] {
    kd::qk_norm_rope_backward_kernel<Hd, RopeDims>(dq.data(), dk.data(), dv.data(), qkv.data(), s, rt.cos.data(),
                                                   rt.sin.data(), rq.data(), rk.data(), dqkv.data());
  });
  for (Part& p : parts) {
    const std::vector<float>& dy = p.first == 0 ? dq : dk;
    std::vector<double> g(p.x.size()), dn(p.x.size()), dx(p.x.size()), rs = dbl(*p.rstd);
    for (std::size_t n = 0; n < N; ++n)
      for (int h = 0; h < p.heads; ++h)
        for (int d = 0; d < Hd; ++d) g[(n * p.heads + h) * Hd + d] = dy[hm(n, h, p.heads, d)];
    cpu::rope_backward(g.data(), dn.data(), B, T, p.heads, Hd, rtd);
    for (std::size_t i = 0; i < p.n.size(); ++i) p.n[i] = p.x[i] * rs[i / Hd];  // as the kernel recomputes it
    cpu::rmsnorm_backward(dn.data(), p.n.data(), rs.data(), N * p.heads, Hd, dx.data(), false);
    std::vector<bf16> got(dx.size());
    for (std::size_t n = 0; n < N; ++n)
      for (int i = 0; i < p.heads * Hd; ++i) got[n * p.heads * Hd + i] = dqkv[(n * slots + p.first) * Hd + i];
    check_close(name + " backward d" + p.what, got, dx, kBf16, 1e-5);
  }
  for (std::size_t n = 0; n < N; ++n)  // dv: re-laid out and rounded to bf16
    for (int h = 0; h < G; ++h)
      for (int d = 0; d < Hd; ++d)
        REQUIRE(dqkv[(n * slots + H + G + h) * Hd + d].bits == __float2bfloat16_rn(dv[hm(n, h, G, d)]).bits);
}
}  // namespace

TEST_CASE("emulated: Q/K RMSNorm + RoPE kernels match the CPU reference", "[block_ops_emulated]") {
  check_qk_norm_rope<64, 16>();  // partial RoPE, as the records
  check_qk_norm_rope<64, 64>();  // every dim rotated
}

namespace {
template <Activation A>
void check_activation(const char* name) {
  const std::vector<bf16> u = randn<bf16>(kN, 30), g = randn<bf16>(kN, 31);
  std::vector<bf16> out = filled<bf16>(kN, NAN);
  launch_elems(kN, [&] { kd::activation_forward_kernel<A>(u.data(), kN, out.data()); });
  // r^2 and g 2 s^2 x of bf16 values are exact in fp32, so the only rounding is the final one to bf16.
  for (std::size_t i = 0; i < kN; ++i) {
    INFO(name << " forward element " << i);
    REQUIRE(val(out[i]) == val(__float2bfloat16_rn(float(cpu::activate<A>(val(u[i]))))));
  }
  for (bool in_place : {false, true}) {
    std::vector<bf16> gg = g, du = filled<bf16>(kN, NAN);
    bf16* dst = in_place ? gg.data() : du.data();
    launch_elems(kN, [&] { kd::activation_backward_kernel<A>(gg.data(), u.data(), kN, dst); });
    for (std::size_t i = 0; i < kN; ++i) {
      INFO(name << " backward element " << i << (in_place ? " in place" : ""));
      REQUIRE(val(dst[i]) == val(__float2bfloat16_rn(float(cpu::activate_grad<A>(val(u[i])) * val(g[i])))));
    }
  }
  std::printf("  %-44s forward and backward exact\n", name);
}
}  // namespace

TEST_CASE("emulated: activation kernels match the CPU reference", "[block_ops_emulated]") {
  check_activation<Activation::relu2>("activation relu2");
  check_activation<Activation::leaky_relu2>("activation leaky_relu2");
}

TEST_CASE("emulated: per-channel kernels match the CPU reference", "[block_ops_emulated]") {
  // ColumnGrad's column sums, += into known values, for fp32 and bf16 factors and none.
  for (int width : {D, 600}) {
    const std::size_t rows = 300;
    const std::vector<float> g = randn<float>(rows * width, 40), ff = randn<float>(rows * width, 41);
    const std::vector<bf16> fb = randn<bf16>(rows * width, 42);
    const std::vector<float> grad0 = randn<float>(width, 43);
    const std::vector<double> gd = dbl(g), ffd = dbl(ff), fbd = dbl(fb);
    std::vector<double> ref, mag;
    const std::string w = " width " + std::to_string(width);
    auto twice = [&](auto* f, const std::vector<double>* fd, const std::string& what) {
      std::vector<float> a = grad0, b = grad0;
      column_grad(g.data(), f, rows, width, a.data());
      column_grad(g.data(), f, rows, width, b.data());
      column_ref(gd, fd, rows, width, grad0, ref, mag);
      check_columns(what + w, a, ref, mag);
      CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);  // fixed order: same bits
    };
    twice(ff.data(), &ffd, "column grad fp32 f");
    twice(fb.data(), &fbd, "column grad bf16 f");
    twice(static_cast<const float*>(nullptr), nullptr, "column grad f null");
  }

  const std::vector<float> g = randn<float>(kN, 44), x = randn<float>(kN, 45), x0 = randn<float>(kN, 46),
                           s = randn<float>(D, 47), mix = randn<float>(2 * D, 48), acc0 = randn<float>(kN, 49);
  std::vector<double> sg(kN), mixed(kN), m0g(kN), m1g(kN), xp(kN), sum(kN);
  for (std::size_t e = 0; e < kN; ++e) {
    const int c = int(e % D);
    sg[e] = double(s[c]) * g[e];
    mixed[e] = double(mix[c]) * x[e] + double(mix[D + c]) * x0[e];
    m0g[e] = double(mix[c]) * g[e], m1g[e] = acc0[e] + double(mix[D + c]) * g[e];
    xp[e] = double(x[e]) + s[c];
    sum[e] = double(acc0[e]) + g[e];
  }
  std::vector<bf16> sgb = filled<bf16>(kN, NAN);
  launch_elems(kN, [&] { kd::scale_grad_kernel<D, bf16>(g.data(), s.data(), kN, sgb.data()); });
  check_close("scale_grad bf16", sgb, sg, kBf16, 0);
  std::vector<float> out(kN, NAN);
  launch_elems(kN, [&] { kd::scale_grad_kernel<D, float>(g.data(), s.data(), kN, out.data()); });
  check_close("scale_grad fp32", out, sg, kF32, 0);
  out.assign(kN, NAN);
  launch_elems(kN, [&] { kd::resid_mix_forward_kernel<D>(x.data(), x0.data(), mix.data(), kN, out.data()); });
  check_close("resid_mix_forward", out, mixed, kF32);
  std::vector<float> dx(kN, NAN), dx0 = acc0;
  launch_elems(kN, [&] { kd::resid_mix_backward_kernel<D>(g.data(), mix.data(), kN, dx.data(), dx0.data()); });
  check_close("resid_mix_backward dx", dx, m0g, kF32, 0);
  check_close("resid_mix_backward dx0 (+=)", dx0, m1g, kF32);
  out = acc0;
  launch_elems(kN, [&] { kd::add_into_kernel(g.data(), kN, out.data()); });
  check_close("add_into (+=)", out, sum, kF32);
  out = acc0;
  launch_elems(kN, [&] { kd::scale_accumulate_kernel<D>(g.data(), s.data(), kN, out.data()); });
  std::vector<double> ref(kN);
  for (std::size_t e = 0; e < kN; ++e) ref[e] = acc0[e] + sg[e];
  check_close("scale_accumulate (+=)", out, ref, kF32);
  out.assign(kN, NAN);
  launch_elems(kN, [&] { kd::add_channels_kernel<D>(x.data(), s.data(), kN, out.data()); });
  check_close("add_channels", out, xp, kF32);
}

TEST_CASE("emulated: gated U-Net skip kernels match the CPU component", "[block_ops_emulated]") {
  const std::vector<float> x = randn<float>(kN, 50), skip = randn<float>(kN, 51), gamma = randn<float>(D, 52, 1.5),
                           dout = randn<float>(kN, 54), dskip0 = randn<float>(kN, 55), dw0 = randn<float>(D, 56),
                           dgamma0 = randn<float>(D, 57);
  std::vector<float> w = randn<float>(D, 53, 0.3);
  for (float& v : w) v += 1;  // near its initial 1
  // nn/unet_skip.hpp's Impl<Cpu> in double.
  std::vector<double> out(kN), dx(kN), dskip = dbl(dskip0), dw = dbl(dw0), dgamma = dbl(dgamma0), dwm(D), dgm(D);
  for (int j = 0; j < D; ++j) {
    const double g = 1 / (1 + std::exp(-double(gamma[j])));
    dwm[j] = std::abs(dw0[j]), dgm[j] = std::abs(dgamma0[j]);
    for (std::size_t n = 0; n < kRows; ++n) {
      const std::size_t e = n * D + j;
      const double d = dout[e], ws = double(w[j]) * skip[e];
      out[e] = g * x[e] + (1 - g) * ws;
      dskip[e] += (1 - g) * w[j] * d;
      const double tw = (1 - g) * skip[e] * d, tg = g * (1 - g) * (x[e] - ws) * d;
      dw[j] += tw, dgamma[j] += tg, dwm[j] += std::abs(tw), dgm[j] += std::abs(tg);
      dx[e] = g * d;
    }
  }
  std::vector<float> o(kN, NAN);
  launch_elems(kN, [&] { kd::gated_skip_forward_kernel<D>(x.data(), w.data(), gamma.data(), skip.data(), kN, o.data()); });
  check_close("gated_skip_forward", o, out, kF32);
  // The backward as Impl<Cuda, UNetSkip> runs it: the kernel, dw and dgamma by ColumnGrad, then dx *= g.
  std::vector<float> a(kN, NAN), b(kN, NAN), ds = dskip0, gw = dw0, gg = dgamma0, d = dout;
  launch_elems(kN, [&] {
    kd::gated_skip_backward_kernel<D>(d.data(), x.data(), w.data(), gamma.data(), skip.data(), kN, ds.data(), a.data(),
                                      b.data());
  });
  check_close("gated_skip_backward dskip (+=)", ds, dskip, kF32);
  column_grad(a.data(), skip.data(), kRows, D, gw.data());
  column_grad(b.data(), static_cast<const float*>(nullptr), kRows, D, gg.data());
  check_columns("gated skip dw (column grad of a s)", gw, dw, dwm);
  check_columns("gated skip dgamma (column grad of b)", gg, dgamma, dgm);
  launch_elems(kN, [&] { kd::gate_scale_kernel<D>(gamma.data(), kN, d.data()); });
  check_close("gate_scale (in place)", d, dx, kF32, 0);
}

TEST_CASE("emulated: parallel lanes kernels match the CPU component", "[block_ops_emulated]") {
  const std::vector<float> x = randn<float>(kN, 60), x1 = randn<float>(kN, 61), a = randn<float>(kN, 62),
                           ms = randn<float>(D, 64), g0 = randn<float>(kN, 65), g1 = randn<float>(kN, 66),
                           P = {0.9f, 1.2f, -0.7f, 1.4f}, r = {1.1f, 0.8f}, dr0 = {0.25f, -0.5f},
                           dP0 = {0.125f, 1.f, -2.f, 0.375f};  // distinct, so a swapped index shows
  const std::vector<bf16> h = randn<bf16>(kN, 63);
  // nn/parallel_lanes.hpp's Impl<Cpu> (BranchStash, LaneMerge, LaneMean) in double.
  std::vector<double> sh(kN), o0(kN), o1(kN), dx(kN), dx1(kN), da(kN), dm(kN), mean(kN), half(kN);
  std::vector<double> dr = dbl(dr0), dP = dbl(dP0), drm(2, 0), dPm(4, 0);
  for (std::size_t e = 0; e < kN; ++e) {
    const int c = int(e % D);
    const double M = double(ms[c]) * val(h[e]);
    sh[e] = M;  // scale_channels(h, ms): the same product
    o0[e] = double(r[0]) * x[e] + double(P[0]) * a[e] + double(P[2]) * M;
    o1[e] = double(r[1]) * x1[e] + double(P[1]) * a[e] + double(P[3]) * M;
    const double t[6] = {double(g0[e]) * x[e], double(g1[e]) * x1[e], double(g0[e]) * a[e], double(g1[e]) * a[e],
                         g0[e] * M, g1[e] * M};
    for (int i = 0; i < 6; ++i) (i < 2 ? dr[i] : dP[i - 2]) += t[i], (i < 2 ? drm[i] : dPm[i - 2]) += std::abs(t[i]);
    dx[e] = double(r[0]) * g0[e], dx1[e] = double(r[1]) * g1[e];
    da[e] = double(P[0]) * g0[e] + double(P[1]) * g1[e], dm[e] = double(P[2]) * g0[e] + double(P[3]) * g1[e];
    mean[e] = 0.5 * (double(x[e]) + x1[e]), half[e] = 0.5 * g0[e];
  }
  std::vector<float> out(kN, NAN);
  launch_elems(kN, [&] { kd::scale_channels_kernel<D, bf16>(h.data(), ms.data(), kN, out.data()); });
  check_close("scale_channels bf16 h", out, sh, kF32, 0);
  std::vector<float> out0(kN, NAN), out1(kN, NAN);
  launch_elems(kN, [&] {
    kd::lane_merge_forward_kernel<D, bf16>(x.data(), x1.data(), a.data(), h.data(), ms.data(), P.data(), r.data(), kN,
                                           out0.data(), out1.data());
  });
  check_close("lane_merge_forward lane 0", out0, o0, kF32);
  check_close("lane_merge_forward lane 1", out1, o1, kF32);

  // The lambdas' gradients as Impl<Cuda, LaneMerge> takes them: six column sums into a zeroed [6, D],
  // then lane_lambda_grads (one block of 32 threads), twice from the same start: the same bits.
  std::vector<float> col(6 * D, 0.f);
  const float* lhs[6] = {g0.data(), g1.data(), g0.data(), g1.data(), g0.data(), g1.data()};
  for (int i = 0; i < 4; ++i) column_grad(lhs[i], (i == 0 ? x : i == 1 ? x1 : a).data(), kRows, D, col.data() + i * D);
  for (int i = 4; i < 6; ++i) column_grad(lhs[i], h.data(), kRows, D, col.data() + i * D);
  std::vector<float> gr[2] = {dr0, dr0}, gP[2] = {dP0, dP0};
  for (int run = 0; run < 2; ++run)
    emu::launch(1, 1, [&] { kd::lane_lambda_grads_kernel<D>(col.data(), ms.data(), gr[run].data(), gP[run].data()); }, 32);
  std::vector<double> mr = drm, mp = dPm;
  for (int i = 0; i < 2; ++i) mr[i] += std::abs(dr0[i]);
  for (int i = 0; i < 4; ++i) mp[i] += std::abs(dP0[i]);
  check_columns("lane lambdas dr (+=)", gr[0], dr, mr);
  check_columns("lane lambdas dP (+=)", gP[0], dP, mp);
  CHECK(std::memcmp(gr[0].data(), gr[1].data(), 2 * sizeof(float)) == 0);
  CHECK(std::memcmp(gP[0].data(), gP[1].data(), 4 * sizeof(float)) == 0);

  std::vector<float> bx(kN, NAN), bx1(kN, NAN), bda(kN, NAN), bdm(kN, NAN);
  launch_elems(kN, [&] {
    kd::lane_merge_backward_kernel(g0.data(), g1.data(), P.data(), r.data(), kN, bx.data(), bx1.data(), bda.data(),
                                   bdm.data());
  });
  check_close("lane_merge_backward dx", bx, dx, kF32, 0);
  check_close("lane_merge_backward dx1", bx1, dx1, kF32, 0);
  check_close("lane_merge_backward da", bda, da, kF32);
  check_close("lane_merge_backward dm", bdm, dm, kF32);

  out.assign(kN, NAN);
  launch_elems(kN, [&] { kd::lane_mean_forward_kernel(x.data(), x1.data(), kN, out.data()); });
  check_close("lane_mean_forward", out, mean, kF32);
  bx.assign(kN, NAN), bx1.assign(kN, NAN);
  launch_elems(kN, [&] { kd::lane_mean_backward_kernel(g0.data(), kN, bx.data(), bx1.data()); });
  check_close("lane_mean_backward dx", bx, half, 0, 0);  // a halving: exact
  check_close("lane_mean_backward dx1", bx1, half, 0, 0);
}

TEST_CASE("emulated: common.cuh's cast and scale kernels match their one-rounding results", "[block_ops_emulated]") {
  // One fp32 operation and one rounding each, so bit for bit; kN = 2016 leaves a partial block.
  const std::vector<float> x = randn<float>(kN, 41, 3.0);
  std::vector<bf16> cast(kN, k::from_float<bf16>(NAN));
  launch_elems(kN, [&] { kd::cast_to_bf16_kernel(x.data(), kN, cast.data()); });
  std::vector<float> scaled(kN, NAN);
  launch_elems(kN, [&] { kd::scale_into_kernel<float>(x.data(), 0.37f, kN, scaled.data()); });
  const std::vector<bf16> xb = randn<bf16>(kN, 42, 3.0);
  std::vector<bf16> scaled_b(kN, k::from_float<bf16>(NAN));
  launch_elems(kN, [&] { kd::scale_into_kernel<bf16>(xb.data(), 0.37f, kN, scaled_b.data()); });
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < kN; ++i) {
    const float s = 0.37f * x[i], sb = 0.37f * __bfloat162float(xb[i]);
    wrong += std::memcmp(&scaled[i], &s, sizeof s) != 0;
    wrong += val(cast[i]) != val(__float2bfloat16_rn(x[i]));
    wrong += val(scaled_b[i]) != val(__float2bfloat16_rn(sb));
  }
  CHECK(wrong == 0);
}
