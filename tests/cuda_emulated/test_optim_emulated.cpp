// The optimizers' CUDA kernels (the text of `namespace detail` in optim/cuda/adam.cuh, clip.cuh and
// muon.cuh, extracted at configure time) run on the CPU under emulate_cuda.hpp, launched with their
// host wrappers' grids, blocks and arguments (CudaAdam::step, clip_grad_norm, CudaMuon::step, copied
// here), against the CPU optimizers (optim/adam.hpp, clip.hpp, muon.hpp) in double on the same fp32
// inputs. Bounds: each fp32 operation rounds by 2^-24 of its operands, so errors are bounded by a
// small multiple of that times the magnitude of the terms (sums of absolute values, tracked here).
//   - Adam: three steps with the state carried over and a changing lr; the embedding group with the
//     defaults, the scalar group as AdamW with other betas and an eps as large as sqrt(v), so each
//     term shows. After every step m within 1e-6 of sum |terms|, v within 1e-6 relative (plus what
//     float(beta) costs the (1 - beta) factor), w within 3e-6 of the update's magnitude plus 3e-7 |w|,
//     per step; m and v are compared with the CPU's packed (table-order) state.
//   - clip: the partial sums of squares (264 blocks of 256), added in the wrapper's order: n = 1000
//     (most blocks empty) twice, identical bits, and n = 70001 (past one grid stride); the norm within
//     1e-12 (double both sides); the scale pass within 2e-7 relative (two fp32 roundings against one).
//   - Muon, each kernel alone against double on the same inputs: momentum (Nesterov and plain) within
//     5e-7 of the terms' magnitude; MuonEq-R rows within 1e-6 relative, a zero row stays 0 and a row
//     of norm < 1e-7 is divided by 1e-7; the per-matrix sum of squares (1024 threads) within 2e-6
//     relative, identical bits twice; the packed bf16 input of Newton-Schulz (both normalisations, the
//     transposed [count, r, k] layout of tall matrices) within half a bf16 ulp of the exact value
//     (1 + 1e-4: fp32's share); the update (weight decay, shape factor) within 3e-7 of its terms; a
//     sharded step's unpack (bf16, untransposed) and update from it the same bits as the update
//     from the packed X.
//   - Muon, whole steps: the wrapper's kernels in its order, the Newton-Schulz products (cuBLAS on the
//     device) on the host by a gemm that follows GemmShape literally and rounds to bf16 where
//     Muon<double>'s ns_bf16 does, against Muon<double> with ns_bf16: the momentum buffer within 1e-6
//     of its magnitude after every step. Without Newton-Schulz (ns_steps 0; Nesterov, MuonEq-R, Polar
//     Express, weight decay; 3 steps) every weight within one bf16 ulp of each step's update (fp32
//     against double can flip a bf16 rounding) plus fp32's rounding; with 5 quintic steps (plain
//     momentum; 2 steps) each matrix's change within 1e-2 relative L2 of the CPU's (observed 3e-3:
//     flipped bf16 roundings spread through the bf16 iteration; a layout or scale error is O(1)).
// Matrices 136x72 (twice: a group of two; tall, so transposed; more than one grid stride; more rows
// than 16 blocks x 8 warps), 40x100 and 7x40 (fewer rows than a block's warps), no row length a
// multiple of 32; Adam tensors between them, so parameter and state offsets differ; the embedding,
// 130x131, is more than Adam's grid stride (64 x 256). Outputs are NaN beforehand; what a kernel must
// not touch (other groups' weights, a NaN tail after every state buffer, values after the gradients)
// keeps its bits. This checks the kernels' logic without a GPU; tests/cuda/test_optim_cuda.cpp checks
// them on one.
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <span>
#include <utility>
#include <vector>

#include "optim_kernels_emulated.hpp"
#include "pgolf/core/rng.hpp"
#include "pgolf/nn/param_table.hpp"
#include "pgolf/optim/adam.hpp"
#include "pgolf/optim/clip.hpp"
#include "pgolf/optim/muon.hpp"

namespace {
namespace k = pgolf::cuda;
using bf16 = __nv_bfloat16;
using pgolf::OptimGroup;
using pgolf::ParamInfo;

constexpr std::size_t kTensors = 8;
using Table = std::array<ParamInfo, kTensors>;
constexpr std::size_t kTail = 40;  // NaN after each state buffer: a write past the end shows

Table make_table() {
  Table t{};
  pgolf::ParamTableBuilder<kTensors> b{t};
  b.add("a.w", 136, 72, 2, {}, OptimGroup::muon_matrix, false, 0);
  b.add("s0", 37, 1, 1, {}, OptimGroup::adam_scalar, true, -1);
  b.add("emb", 130, 131, 2, {}, OptimGroup::adam_embed, false, -1);
  b.add("b.w", 40, 100, 2, {}, OptimGroup::muon_matrix, false, 0);
  b.add("s1", 2, 5, 2, {}, OptimGroup::adam_scalar, true, 0);
  b.add("c.w", 136, 72, 2, {}, OptimGroup::muon_matrix, false, 1);
  b.add("s2", 1, 1, 1, {}, OptimGroup::adam_scalar, true, -1);
  b.add("e.w", 7, 40, 2, {}, OptimGroup::muon_matrix, false, 1);
  b.finish();
  return t;
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }
bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}
void check_tail_nan(const std::vector<float>& v, std::size_t from) {
  for (std::size_t i = from; i < v.size(); ++i) REQUIRE(std::isnan(v[i]));
}
// Elements of w outside group's tensors keep their bits.
void check_untouched(const Table& table, OptimGroup group, const std::vector<float>& w, const std::vector<float>& w0) {
  for (const auto& p : table)
    if (p.group != group)
      for (std::size_t i = p.offset; i < p.offset + p.numel(); ++i) REQUIRE(same_bits(w[i], w0[i]));
}

// ---- Adam: CudaAdam's state and step with the kernel under the emulation.
struct EmuAdam {
  pgolf::AdamOptions o;
  std::vector<k::Segment> segs;
  std::vector<float> m, v;
  std::size_t state = 0;
  long long t = 0;
  EmuAdam(const Table& table, OptimGroup group, pgolf::AdamOptions options) : o(options) {
    for (const auto& p : table)
      if (p.group == group) {
        segs.push_back({p.offset, state, p.numel(), p.cols});
        state += p.numel();
      }
    m.assign(state + kTail, NAN), v.assign(state + kTail, NAN);
    std::fill_n(m.begin(), state, 0.f), std::fill_n(v.begin(), state, 0.f);
  }
  void step(float* w, const float* g, double lr) {
    ++t;
    const double bc1 = 1.0 - std::pow(o.beta1, double(t)), bc2 = 1.0 - std::pow(o.beta2, double(t));
    emu::launch(64, unsigned(segs.size()), [&] {
      k::detail::adam_kernel(segs.data(), w, g, m.data(), v.data(), float(o.beta1), float(o.beta2), float(lr / bc1),
                             float(std::sqrt(bc2)), float(o.eps), float(1.0 - lr * o.weight_decay));
    }, 256);
  }
};

// ---- Muon: the Newton-Schulz products on the host.
// Gemm::run's row-major D = alpha op(A) op(B) + beta C over bf16 (backend/cuda/gemm.hpp), C not read
// when beta is 0; the sum in double, the result rounded to float then bf16 as Muon<double>'s ns_bf16
// rounds it (so the products add no difference of their own).
struct Shape {
  bool ta, tb;
  int M, N, K;
  long long lda, ldb, ldc;
  int batch;
  long long sa, sb, sc;
};
void host_gemm(const Shape& s, const bf16* A, const bf16* B, const bf16* C, bf16* D, float alpha, float beta) {
  std::vector<bf16> out(std::size_t(s.batch) * s.sc);
  for (int b = 0; b < s.batch; ++b)
    for (int i = 0; i < s.M; ++i)
      for (int j = 0; j < s.N; ++j) {
        double acc = 0;
        for (int l = 0; l < s.K; ++l) {
          const bf16 a = s.ta ? A[b * s.sa + l * s.lda + i] : A[b * s.sa + i * s.lda + l];
          const bf16 x = s.tb ? B[b * s.sb + j * s.ldb + l] : B[b * s.sb + l * s.ldb + j];
          acc += double(__bfloat162float(a)) * __bfloat162float(x);
        }
        double r = double(alpha) * acc;
        if (beta != 0.f) r += double(beta) * __bfloat162float(C[b * s.sc + i * s.ldc + j]);
        out[b * s.sc + i * s.ldc + j] = __float2bfloat16_rn(float(r));
      }
  std::copy(out.begin(), out.end(), D);
}

// CudaMuon's state and step with the kernels under the emulation and host_gemm for Gemm.
struct EmuMuon {
  struct Group {
    int rows = 0, cols = 0, count = 0;
    std::vector<int> members;
    std::vector<bf16> X, Y, A, B;
  };
  pgolf::MuonOptions o;
  std::vector<k::Segment> segs;
  std::vector<float> buf, U, sumsq;
  std::vector<Group> groups;
  std::size_t state = 0;

  EmuMuon(const Table& table, pgolf::MuonOptions options) : o(options) {
    std::map<std::pair<int, int>, std::vector<int>> by_shape;
    for (const auto& p : table)
      if (p.group == OptimGroup::muon_matrix) {
        by_shape[{p.rows, p.cols}].push_back(int(segs.size()));
        segs.push_back({p.offset, state, p.numel(), p.cols});
        state += p.numel();
      }
    buf.assign(state + kTail, NAN);
    std::fill_n(buf.begin(), state, 0.f);
    for (auto& [shape, members] : by_shape) {
      Group g;
      g.rows = shape.first, g.cols = shape.second, g.count = int(members.size()), g.members = members;
      const std::size_t r = std::min(g.rows, g.cols), kk = std::max(g.rows, g.cols);
      g.X.resize(g.count * r * kk), g.Y.resize(g.count * r * kk);
      g.A.resize(g.count * r * r), g.B.resize(g.count * r * r);
      groups.push_back(std::move(g));
    }
  }

  void step(float* W, const float* G, double lr) {
    const unsigned matrices = unsigned(segs.size());
    U.assign(state + kTail, NAN);
    sumsq.assign(matrices, NAN);
    emu::launch(32, matrices, [&] {
      k::detail::muon_momentum_kernel(segs.data(), G, buf.data(), U.data(), float(o.momentum), o.nesterov);
    }, 256);
    if (o.row_normalize)
      emu::launch(16, matrices, [&] { k::detail::muon_row_normalize_kernel(segs.data(), U.data()); },
                  32 * pgolf::ops::cuda::kWarpsPerBlock);
    emu::launch(matrices, 1, [&] { k::detail::sumsq_kernel(segs.data(), U.data(), sumsq.data()); }, 1024);
    const pgolf::NsNormalisation nrm = pgolf::ns_normalisation(o.polar_express);
    for (Group& g : groups) {
      const bool tr = g.rows > g.cols;
      const int r = std::min(g.rows, g.cols), kk = std::max(g.rows, g.cols);
      std::fill(g.X.begin(), g.X.end(), __float2bfloat16_rn(NAN));
      emu::launch(32, unsigned(g.count), [&] {
        k::detail::muon_pack_kernel(segs.data(), g.members.data(), U.data(), sumsq.data(), g.rows, g.cols, tr,
                                    g.X.data(), float(nrm.scale), float(nrm.eps));
      }, 256);
      const long long rk = (long long)r * kk, rr = (long long)r * r;
      const Shape xxt{false, true, r, r, kk, kk, kk, r, g.count, rk, rk, rr};
      const Shape aa{false, false, r, r, r, r, r, r, g.count, rr, rr, rr};
      const Shape bx{false, false, r, kk, r, r, kk, kk, g.count, rr, rk, rk};
      for (int s = 0; s < o.ns_steps; ++s) {
        const pgolf::NsCoefficients co = pgolf::ns_coefficients(s, o.polar_express);
        const float a = float(co.a), b = float(co.b), c = float(co.c);
        host_gemm(xxt, g.X.data(), g.X.data(), g.A.data(), g.A.data(), 1.f, 0.f);
        host_gemm(aa, g.A.data(), g.A.data(), g.A.data(), g.B.data(), c, b);
        host_gemm(bx, g.B.data(), g.X.data(), g.X.data(), g.Y.data(), 1.f, a);
        std::swap(g.X, g.Y);
      }
      const float shape = float(std::sqrt(std::max(1.0, double(g.rows) / double(g.cols))));
      emu::launch(32, unsigned(g.count), [&] {
        k::detail::muon_apply_kernel(segs.data(), g.members.data(), g.X.data(), g.rows, g.cols, tr, W,
                                     float(lr) * shape, float(1.0 - lr * o.weight_decay));
      }, 256);
    }
  }
};

std::vector<float> random_floats(std::size_t n, std::uint32_t stream, double scale) {
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = float(scale * pgolf::normal01(41, stream, i));
  return v;
}
}  // namespace

TEST_CASE("emulated: the Adam kernel matches the CPU Adam over several steps", "[optim_emulated]") {
  const Table table = make_table();
  const std::size_t n = pgolf::table_size(table);
  const std::vector<float> w0 = random_floats(n, 1, 0.1);
  struct Case {
    OptimGroup group;
    pgolf::AdamOptions o;
    double grad_scale;
  };
  const pgolf::AdamOptions adamw{.beta1 = 0.8, .beta2 = 0.99, .eps = 1e-3, .weight_decay = 0.1};
  for (const Case& c : {Case{OptimGroup::adam_embed, {}, 1.0}, Case{OptimGroup::adam_scalar, adamw, 1e-3}}) {
    CAPTURE(int(c.group));
    pgolf::Adam<double> cpu(table, c.group, c.o);
    EmuAdam emu_adam(table, c.group, c.o);
    REQUIRE(emu_adam.state == cpu.first_moment().size());
    std::vector<double> wc(w0.begin(), w0.end());
    std::vector<float> wg = w0;
    std::vector<double> mag_m(emu_adam.state, 0.0), tol(n, 0.0);
    double worst = 0;  // the largest error / bound
    for (int s = 0; s < 3; ++s) {
      const double lr = 0.01 * (1 - 0.2 * s);
      std::vector<float> gf = random_floats(n, 2 + s, c.grad_scale);
      for (std::size_t i = 0; i < n; ++i) gf[i] *= float(1 + i % 5);
      for (std::size_t i = 0; i < n; i += 13) gf[i] = 0;  // v = 0 in places: the update is 0 / eps
      const std::vector<double> gd(gf.begin(), gf.end());
      cpu.step(wc, gd, lr);
      emu_adam.step(wg.data(), gf.data(), lr);

      const double t = double(s + 1), bc1 = 1 - std::pow(c.o.beta1, t), bc2 = 1 - std::pow(c.o.beta2, t);
      const double decay = 1 - lr * c.o.weight_decay;
      // float(beta) is off by up to 2^-24 beta: 2^-24 beta / (1 - beta) of the (1 - beta) factor.
      const double e1 = 0x1p-24 * c.o.beta1 / (1 - c.o.beta1), e2 = 0x1p-24 * c.o.beta2 / (1 - c.o.beta2);
      const auto m = cpu.first_moment(), v = cpu.second_moment();
      std::size_t at = 0;
      for (const auto& p : table) {
        if (p.group != c.group) continue;
        for (std::size_t i = 0; i < p.numel(); ++i) {
          const std::size_t q = at + i, e = p.offset + i;
          mag_m[q] = c.o.beta1 * mag_m[q] + (1 - c.o.beta1) * std::abs(gd[e]);
          const double update = lr / bc1 * mag_m[q] / (std::sqrt(v[q]) / std::sqrt(bc2) + c.o.eps);
          tol[e] = tol[e] * decay + (3e-6 + e1 + e2) * update + 3e-7 * std::abs(wc[e]);
          const double em = std::abs(emu_adam.m[q] - m[q]), ev = std::abs(emu_adam.v[q] - v[q]);
          const double ew = std::abs(wg[e] - wc[e]);
          INFO(p.name.c_str() << " step " << s << " element " << i << ": w " << wg[e] << " vs " << wc[e] << ", m "
                              << emu_adam.m[q] << " vs " << m[q] << ", v " << emu_adam.v[q] << " vs " << v[q]);
          REQUIRE(em <= (1e-6 + e1) * mag_m[q]);
          REQUIRE(ev <= (1e-6 + e2) * v[q]);
          REQUIRE(ew <= tol[e]);
          if (tol[e] > 0) worst = std::max(worst, ew / tol[e]);
        }
        at += p.numel();
      }
      check_untouched(table, c.group, wg, w0);
      check_tail_nan(emu_adam.m, emu_adam.state);
      check_tail_nan(emu_adam.v, emu_adam.state);
    }
    std::printf("  emulated Adam (group %d): worst w error %.3f of its bound\n", int(c.group), worst);
  }
}

TEST_CASE("emulated: the clipping kernels match the CPU's clip_grad_norm", "[optim_emulated]") {
  constexpr unsigned blocks = k::detail::kNormBlocks;
  // clip_grad_norm's first half: the partial sums (NaN beforehand), added in the wrapper's order.
  auto norm_of = [&](const std::vector<float>& x, std::size_t n) {
    std::vector<double> part(blocks, NAN);
    emu::launch(blocks, 1, [&] { k::detail::sumsq_partials_kernel(x.data(), n, part.data()); }, 256);
    double ss = 0;
    for (const double p : part) ss += p;
    return std::sqrt(ss);
  };
  // 1000 elements: most blocks have none and must write 0 (NaN beforehand); twice, for the bits.
  {
    const std::vector<float> g = random_floats(1000, 11, 1.0);
    const double norm = norm_of(g, g.size()), again = norm_of(g, g.size());
    CHECK(std::memcmp(&norm, &again, sizeof norm) == 0);  // fixed-order sums
    std::vector<float> cpu = g;
    CHECK(norm == Approx(pgolf::clip_grad_norm(std::span<float>(cpu), 0.0)).epsilon(1e-12));
  }
  // Every block has elements, some threads two (264 x 256 = 67584); past the end, values that would
  // swamp the norm if read and must not be scaled.
  const std::size_t n = 70001;
  std::vector<float> g = random_floats(n, 10, 1.0);
  g.resize(n + kTail, 1e30f);
  const std::vector<float> g0 = g;
  const double norm = norm_of(g, n);
  std::vector<float> cpu(g.begin(), g.begin() + std::ptrdiff_t(n));
  const double max_norm = norm / 3;
  const double cpu_norm = pgolf::clip_grad_norm(std::span<float>(cpu), max_norm);
  std::printf("  emulated clip: norm cpu %.15f kernels %.15f\n", cpu_norm, norm);
  CHECK(norm == Approx(cpu_norm).epsilon(1e-12));
  const double coef = max_norm / (norm + 1e-6);
  REQUIRE(coef < 1.0);
  emu::launch(blocks, 1, [&] { k::detail::scale_kernel(g.data(), n, float(coef)); }, 256);
  for (std::size_t i = 0; i < n; ++i) REQUIRE(std::abs(double(g[i]) - cpu[i]) <= 2e-7 * std::abs(double(cpu[i])));
  for (std::size_t i = n; i < g.size(); ++i) REQUIRE(same_bits(g[i], g0[i]));
}

TEST_CASE("emulated: Muon's elementwise and row kernels match double on the same inputs", "[optim_emulated]") {
  const Table table = make_table();
  const std::size_t n = pgolf::table_size(table);
  const EmuMuon layout(table, {});  // segments and shape groups as CudaMuon's
  const auto& segs = layout.segs;
  const unsigned matrices = unsigned(segs.size());
  const std::size_t S = layout.state;
  const std::vector<float> g = random_floats(n, 20, 1.0);
  std::vector<float> buf0 = random_floats(S + kTail, 21, 2.0);
  std::fill(buf0.begin() + std::ptrdiff_t(S), buf0.end(), NAN);
  const float mu = 0.9f;

  // Momentum, Nesterov and plain.
  std::vector<float> U;
  for (const bool nesterov : {false, true}) {
    CAPTURE(nesterov);
    std::vector<float> buf = buf0;
    U.assign(S + kTail, NAN);
    emu::launch(32, matrices, [&] {
      k::detail::muon_momentum_kernel(segs.data(), g.data(), buf.data(), U.data(), mu, nesterov);
    }, 256);
    for (const auto& s : segs)
      for (std::size_t i = 0; i < s.n; ++i) {
        const std::size_t q = s.state + i;
        const double gi = g[s.param + i], b = double(mu) * buf0[q] + gi;
        const double mag_b = std::abs(double(mu) * buf0[q]) + std::abs(gi);
        const double u = nesterov ? gi + mu * b : b, mag_u = nesterov ? std::abs(gi) + mu * mag_b : mag_b;
        REQUIRE(std::abs(buf[q] - b) <= 5e-7 * mag_b);
        REQUIRE(std::abs(U[q] - u) <= 5e-7 * mag_u);
      }
    check_tail_nan(buf, S);
    check_tail_nan(U, S);
  }

  // MuonEq-R, on rows of very different norms, one zero row and one of norm < 1e-7.
  for (std::size_t m = 0; m < segs.size(); ++m) {
    const auto& s = segs[m];
    for (std::size_t i = 0; i < s.n; ++i) U[s.state + i] *= float(std::pow(10.0, double(i / s.cols % 5) - 2));
  }
  std::fill_n(U.begin() + std::ptrdiff_t(segs[0].state + 5 * segs[0].cols), segs[0].cols, 0.f);
  std::fill_n(U.begin() + std::ptrdiff_t(segs[1].state + 3 * segs[1].cols), segs[1].cols, 1e-9f);
  const std::vector<float> U0 = U;
  emu::launch(16, matrices, [&] { k::detail::muon_row_normalize_kernel(segs.data(), U.data()); },
              32 * pgolf::ops::cuda::kWarpsPerBlock);
  for (const auto& s : segs)
    for (std::size_t r = 0; r < s.n / s.cols; ++r) {
      const float* row0 = U0.data() + s.state + r * s.cols;
      double ss = 0;
      for (int c = 0; c < s.cols; ++c) ss += double(row0[c]) * row0[c];
      const double inv = 1 / std::max(std::sqrt(ss), 1e-7);
      for (int c = 0; c < s.cols; ++c) {
        const double want = row0[c] * inv;
        INFO("row " << r << " col " << c << ": " << U[s.state + r * s.cols + c] << " vs " << want);
        REQUIRE(std::abs(U[s.state + r * s.cols + c] - want) <= 1e-6 * std::abs(want));
      }
    }
  check_tail_nan(U, S);
  REQUIRE(U[segs[1].state + 3 * segs[1].cols] == Approx(1e-2).epsilon(1e-6));  // 1e-9 / 1e-7

  // The sum of squares per matrix (1024 threads), twice.
  std::vector<float> sumsq(matrices, NAN), again(matrices, NAN);
  emu::launch(matrices, 1, [&] { k::detail::sumsq_kernel(segs.data(), U.data(), sumsq.data()); }, 1024);
  emu::launch(matrices, 1, [&] { k::detail::sumsq_kernel(segs.data(), U.data(), again.data()); }, 1024);
  CHECK(same_bits(sumsq, again));
  for (std::size_t m = 0; m < segs.size(); ++m) {
    double ss = 0;
    for (std::size_t i = 0; i < segs[m].n; ++i) ss += double(U[segs[m].state + i]) * U[segs[m].state + i];
    CAPTURE(m);
    REQUIRE(std::abs(sumsq[m] - ss) <= 2e-6 * ss);
  }

  // The packed bf16 input of Newton-Schulz, per shape, with both normalisations.
  double worst_pack = 0;
  for (const bool polar : {false, true}) {
    const pgolf::NsNormalisation nrm = pgolf::ns_normalisation(polar);
    for (const auto& gr : layout.groups) {
      CAPTURE(polar, gr.rows, gr.cols);
      const bool tr = gr.rows > gr.cols;
      const std::size_t rk = std::size_t(gr.rows) * gr.cols;
      std::vector<bf16> X(gr.count * rk + kTail, __float2bfloat16_rn(NAN));
      emu::launch(32, unsigned(gr.count), [&] {
        k::detail::muon_pack_kernel(segs.data(), gr.members.data(), U.data(), sumsq.data(), gr.rows, gr.cols, tr,
                                    X.data(), float(nrm.scale), float(nrm.eps));
      }, 256);
      for (int j = 0; j < gr.count; ++j) {
        const int m = gr.members[j];
        const double inv = 1 / (nrm.scale * std::sqrt(double(sumsq[m])) + nrm.eps);
        for (std::size_t i = 0; i < rk; ++i) {
          const std::size_t r = i / gr.cols, c = i % gr.cols, dst = tr ? c * gr.rows + r : i;
          const double want = U[segs[m].state + i] * inv, got = __bfloat162float(X[j * rk + dst]);
          const double bound = 0x1p-8 * (1 + 1e-4) * std::abs(want);
          REQUIRE(std::abs(got - want) <= bound);
          if (want != 0) worst_pack = std::max(worst_pack, std::abs(got - want) / bound);
        }
      }
      for (std::size_t i = gr.count * rk; i < X.size(); ++i) REQUIRE(std::isnan(__bfloat162float(X[i])));
    }
  }

  // The update: W = W (1 - lr wd) - lr sqrt(max(1, rows / cols)) X, from random packed X.
  const double lr = 0.03, wd = 0.2;
  const std::vector<float> W0 = random_floats(n, 22, 0.1);
  std::vector<float> W = W0;
  std::vector<std::vector<bf16>> Xs;
  for (const auto& gr : layout.groups) {
    const std::size_t size = std::size_t(gr.count) * gr.rows * gr.cols;
    const std::vector<float> x = random_floats(size, 23 + unsigned(Xs.size()), 0.05);
    auto& X = Xs.emplace_back(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) X[i] = __float2bfloat16_rn(x[i]);
    const float shape = float(std::sqrt(std::max(1.0, double(gr.rows) / double(gr.cols))));
    emu::launch(32, unsigned(gr.count), [&] {
      k::detail::muon_apply_kernel(segs.data(), gr.members.data(), X.data(), gr.rows, gr.cols, gr.rows > gr.cols,
                                   W.data(), float(lr) * shape, float(1.0 - lr * wd));
    }, 256);
  }
  for (std::size_t gi = 0; gi < layout.groups.size(); ++gi) {
    const auto& gr = layout.groups[gi];
    const std::size_t rk = std::size_t(gr.rows) * gr.cols;
    const double shape = std::sqrt(std::max(1.0, double(gr.rows) / double(gr.cols)));
    for (int j = 0; j < gr.count; ++j) {
      const auto& s = segs[gr.members[j]];
      for (std::size_t i = 0; i < rk; ++i) {
        const std::size_t r = i / gr.cols, c = i % gr.cols, src = gr.rows > gr.cols ? c * gr.rows + r : i;
        const double x = __bfloat162float(Xs[gi][j * rk + src]), w0 = W0[s.param + i];
        const double want = w0 * (1 - lr * wd) - lr * shape * x;
        CAPTURE(gr.rows, gr.cols, j, i);
        REQUIRE(std::abs(W[s.param + i] - want) <= 3e-7 * (std::abs(w0) + lr * shape * std::abs(x)));
      }
    }
  }
  check_untouched(table, OptimGroup::muon_matrix, W, W0);

  // A sharded step's kernels: the same X unpacked (untransposed, every element of every matrix
  // written), then the dense update from it, give the update above bit for bit.
  std::vector<__nv_bfloat16> U2(layout.state + kTail, __float2bfloat16_rn(NAN));
  std::vector<float> W2 = W0;
  for (std::size_t gi = 0; gi < layout.groups.size(); ++gi) {
    const auto& gr = layout.groups[gi];
    emu::launch(32, unsigned(gr.count), [&] {
      k::detail::muon_unpack_kernel(segs.data(), gr.members.data(), Xs[gi].data(), gr.rows, gr.cols,
                                    gr.rows > gr.cols, U2.data());
    }, 256);
    const std::size_t rk = std::size_t(gr.rows) * gr.cols;
    for (int j = 0; j < gr.count; ++j)
      for (std::size_t i = 0; i < rk; ++i) {
        const std::size_t r = i / gr.cols, c = i % gr.cols, src = gr.rows > gr.cols ? c * gr.rows + r : i;
        CAPTURE(gr.rows, gr.cols, j, i);
        REQUIRE(U2[segs[gr.members[j]].state + i].bits == Xs[gi][j * rk + src].bits);
      }
    const float shape = float(std::sqrt(std::max(1.0, double(gr.rows) / double(gr.cols))));
    emu::launch(32, unsigned(gr.count), [&] {
      k::detail::muon_apply_dense_kernel(segs.data(), gr.members.data(), U2.data(), rk, W2.data(), float(lr) * shape,
                                         float(1.0 - lr * wd));
    }, 256);
  }
  for (std::size_t i = layout.state; i < U2.size(); ++i) REQUIRE(std::isnan(__bfloat162float(U2[i])));
  REQUIRE(std::memcmp(W2.data(), W.data(), W.size() * sizeof(float)) == 0);
  std::printf("  emulated Muon kernels: worst packed error %.3f of half a bf16 ulp\n", worst_pack);
}

TEST_CASE("emulated: Muon steps (kernels around a host Newton-Schulz) match the CPU Muon", "[optim_emulated]") {
  const Table table = make_table();
  const std::size_t n = pgolf::table_size(table);
  const std::vector<float> w0 = random_floats(n, 30, 0.05);
  // Without Newton-Schulz, every kernel's option on (tight); with it, the plain variants.
  for (const pgolf::MuonOptions& o0 :
       {pgolf::MuonOptions{
            .momentum = 0.9, .ns_steps = 0, .weight_decay = 0.5, .row_normalize = true, .polar_express = true},
        pgolf::MuonOptions{.momentum = 0.95, .ns_steps = 5, .nesterov = false}}) {
    pgolf::MuonOptions o = o0;
    o.ns_bf16 = true;
    CAPTURE(o.ns_steps, o.nesterov, o.weight_decay, o.row_normalize, o.polar_express);
    pgolf::Muon<double> cpu(table, o);
    EmuMuon gpu(table, o);
    std::vector<double> wc(w0.begin(), w0.end());
    std::vector<float> wg = w0;
    std::vector<double> mag_buf(gpu.state, 0.0), tol(n, 0.0);
    double worst_buf = 0, worst_w = 0, worst_l2 = 0;
    // The emulation is slow: fewer steps where the bound is loose.
    for (int s = 0; s < (o.ns_steps == 0 ? 3 : 2); ++s) {
      const double lr = 0.04 * (1 - 0.25 * s);
      std::vector<float> gf = random_floats(n, 31 + s, 1.0);
      for (std::size_t i = 0; i < n; ++i) gf[i] *= float(1 + i % 7);
      const std::vector<double> gd(gf.begin(), gf.end());
      const std::vector<double> before = wc;
      const std::vector<float> before_g = wg;
      cpu.step(wc, gd, lr);
      gpu.step(wg.data(), gf.data(), lr);

      const auto buf = cpu.momentum_buffer();
      const double decay = 1 - lr * o.weight_decay;
      std::size_t at = 0;
      for (const auto& p : table) {
        if (p.group != OptimGroup::muon_matrix) continue;
        CAPTURE(p.name.c_str(), s);
        const double shape = std::sqrt(std::max(1.0, double(p.rows) / double(p.cols)));
        double dd = 0, cc = 0;
        for (std::size_t i = 0; i < p.numel(); ++i) {
          const std::size_t q = at + i, e = p.offset + i;
          mag_buf[q] = o.momentum * mag_buf[q] + std::abs(gd[e]);
          const double eb = std::abs(gpu.buf[q] - buf[q]);
          REQUIRE(eb <= 1e-6 * mag_buf[q]);
          worst_buf = std::max(worst_buf, eb / (1e-6 * mag_buf[q]));
          const double x = (before[e] * decay - wc[e]) / (lr * shape);  // the CPU's update
          const double dg = wg[e] - before_g[e], dc = wc[e] - before[e];
          dd += (dg - dc) * (dg - dc), cc += dc * dc;
          if (o.ns_steps == 0) {
            const double step = lr * shape * std::abs(x);
            tol[e] = tol[e] * decay + 0x1p-7 * step + 4e-7 * (std::abs(wc[e]) + step);
            const double ew = std::abs(wg[e] - wc[e]);
            INFO("element " << i << ": " << wg[e] << " vs " << wc[e]);
            REQUIRE(ew <= tol[e]);
            worst_w = std::max(worst_w, ew / tol[e]);
          }
        }
        const double l2 = std::sqrt(dd / cc);
        worst_l2 = std::max(worst_l2, l2);
        if (o.ns_steps > 0) CHECK(l2 < 1e-2);  // observed 3e-3: bf16 noise, not an error of layout or scale
        at += p.numel();
      }
      check_untouched(table, OptimGroup::muon_matrix, wg, w0);
      check_tail_nan(gpu.buf, gpu.state);
    }
    std::printf("  emulated Muon steps (ns %d, nesterov %d, MuonEq-R %d, polar %d, wd %.1f): worst buffer error "
                "%.3f of its bound, weights %.3f of theirs (ns 0), change rel_l2 %.2e\n",
                o.ns_steps, int(o.nesterov), int(o.row_normalize), int(o.polar_express), o.weight_decay, worst_buf,
                worst_w, worst_l2);
  }
}
