// Optimizers and schedules against direct formulas, over several steps, in double.
#include <catch2/catch.hpp>

#include <array>
#include <cmath>
#include <tuple>
#include <vector>
#include <algorithm>
#include <barrier>
#include <thread>

#include "pgolf/optim/adam.hpp"
#include "pgolf/optim/clip.hpp"
#include "pgolf/optim/muon.hpp"
#include "pgolf/optim/schedule.hpp"
#include "../test_util.hpp"

using namespace pgolf;
using namespace pgolf::test;

namespace {

using Mat = std::vector<std::vector<double>>;

Mat matmul(const Mat& A, const Mat& B) {
  Mat C(A.size(), std::vector<double>(B[0].size(), 0.0));
  for (std::size_t i = 0; i < A.size(); ++i)
    for (std::size_t k = 0; k < B.size(); ++k)
      for (std::size_t j = 0; j < B[0].size(); ++j) C[i][j] += A[i][k] * B[k][j];
  return C;
}
Mat transpose(const Mat& A) {
  Mat T(A[0].size(), std::vector<double>(A.size()));
  for (std::size_t i = 0; i < A.size(); ++i)
    for (std::size_t j = 0; j < A[0].size(); ++j) T[j][i] = A[i][j];
  return T;
}

// zeropower_via_newtonschulz5 written out with plain loops; bf16: each iterate rounded to bf16 (the
// normalised input, A, B and each new X), products and coefficients in full precision.
Mat ns5_direct(Mat G, int steps, bool bf16 = false) {
  auto round = [bf16](Mat& M) {
    if (bf16)
      for (auto& r : M)
        for (double& v : r) v = round_to_bf16(float(v));
  };
  double ss = 0;
  for (auto& r : G)
    for (double v : r) ss += v * v;
  for (auto& r : G)
    for (double& v : r) v /= std::sqrt(ss) + 1e-7;
  const bool tall = G.size() > G[0].size();
  Mat X = tall ? transpose(G) : G;
  round(X);
  for (int s = 0; s < steps; ++s) {
    Mat A = matmul(X, transpose(X));
    round(A);
    const Mat AA = matmul(A, A);
    Mat B = A;
    for (std::size_t i = 0; i < A.size(); ++i)
      for (std::size_t j = 0; j < A.size(); ++j) B[i][j] = -4.7750 * A[i][j] + 2.0315 * AA[i][j];
    round(B);
    const Mat BX = matmul(B, X);
    for (std::size_t i = 0; i < X.size(); ++i)
      for (std::size_t j = 0; j < X[0].size(); ++j) X[i][j] = 3.4445 * X[i][j] + BX[i][j];
    round(X);
  }
  return tall ? transpose(X) : X;
}

Mat to_mat(const double* p, int rows, int cols) {
  Mat M(rows, std::vector<double>(cols));
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < cols; ++j) M[i][j] = p[i * cols + j];
  return M;
}

constexpr std::array<ParamInfo, 3> kTable = [] {
  std::array<ParamInfo, 3> t{};
  t[0].name = "wide";
  t[0].offset = 0, t[0].rows = 4, t[0].cols = 6, t[0].rank = 2, t[0].group = OptimGroup::muon_matrix;
  t[1].name = "gain";
  t[1].offset = 24, t[1].rows = 5, t[1].cols = 1, t[1].rank = 1, t[1].group = OptimGroup::adam_scalar;
  t[2].name = "tall";
  t[2].offset = 29, t[2].rows = 9, t[2].cols = 3, t[2].rank = 2, t[2].group = OptimGroup::muon_matrix;
  return t;
}();
constexpr std::size_t kTotal = 29 + 27;

}  // namespace

TEST_CASE("Newton-Schulz matches the direct formula, wide and tall", "[forward][muon]") {
  for (auto [rows, cols] : {std::pair{4, 7}, std::pair{9, 3}, std::pair{5, 5}}) {
    const auto G = randn(std::size_t(rows) * cols, 200 + rows);
    std::vector<double> out(G.size());
    newton_schulz5(G.data(), rows, cols, 5, out.data());
    const Mat ref = ns5_direct(to_mat(G.data(), rows, cols), 5);
    for (int i = 0; i < rows; ++i)
      for (int j = 0; j < cols; ++j) REQUIRE(out[i * cols + j] == Approx(ref[i][j]).margin(1e-12));
    // It orthogonalises approximately: the singular values land in roughly [0.7, 1.2].
    const Mat X = to_mat(out.data(), rows, cols);
    const Mat S = rows <= cols ? matmul(X, transpose(X)) : matmul(transpose(X), X);
    for (std::size_t i = 0; i < S.size(); ++i) {
      CHECK(S[i][i] > 0.4);
      CHECK(S[i][i] < 1.5);
    }
  }
}

// Polar Express written out from its definition: X = G / (1.02 ||G|| + 1e-6) on the wide
// orientation, then X <- a_s X + (b_s A + c_s A^2) X with A = X X^T and the s-th published tuple.
Mat polar_express_direct(Mat G, int steps) {
  const double coeffs[5][3] = {{8.156554524902461, -22.48329292557795, 15.878769915207462},
                               {4.042929935166739, -2.808917465908714, 0.5000178451051316},
                               {3.8916678022926607, -2.772484153217685, 0.5060648178503393},
                               {3.285753657755655, -2.3681294933425376, 0.46449024233003106},
                               {2.3465413258596377, -1.7097828382687081, 0.42323551169305323}};
  double ss = 0;
  for (auto& r : G)
    for (double v : r) ss += v * v;
  for (auto& r : G)
    for (double& v : r) v /= 1.02 * std::sqrt(ss) + 1e-6;
  const bool tall = G.size() > G[0].size();
  Mat X = tall ? transpose(G) : G;
  for (int s = 0; s < steps; ++s) {
    const double* k = coeffs[std::min(s, 4)];
    const Mat A = matmul(X, transpose(X)), AA = matmul(A, A);
    Mat B = A;
    for (std::size_t i = 0; i < A.size(); ++i)
      for (std::size_t j = 0; j < A.size(); ++j) B[i][j] = k[1] * A[i][j] + k[2] * AA[i][j];
    const Mat BX = matmul(B, X);
    for (std::size_t i = 0; i < X.size(); ++i)
      for (std::size_t j = 0; j < X[0].size(); ++j) X[i][j] = k[0] * X[i][j] + BX[i][j];
  }
  return tall ? transpose(X) : X;
}

TEST_CASE("Polar Express Newton-Schulz matches its polynomial iterations in double", "[forward][muon]") {
  for (auto [rows, cols, steps] : {std::tuple{4, 7, 5}, std::tuple{9, 3, 5}, std::tuple{5, 5, 7}}) {
    INFO(rows << "x" << cols << " steps " << steps);
    const auto G = randn(std::size_t(rows) * cols, 300 + rows);
    std::vector<double> out(G.size()), classic(G.size());
    newton_schulz5(G.data(), rows, cols, steps, out.data(), /*bf16=*/false, /*polar_express=*/true);
    newton_schulz5(G.data(), rows, cols, steps, classic.data());
    const Mat ref = polar_express_direct(to_mat(G.data(), rows, cols), steps);
    double diff = 0;
    for (int i = 0; i < rows; ++i)
      for (int j = 0; j < cols; ++j) {
        REQUIRE(out[i * cols + j] == Approx(ref[i][j]).margin(1e-12));
        diff = std::max(diff, std::abs(out[i * cols + j] - classic[i * cols + j]));
      }
    CHECK(diff > 1e-3);  // not the fixed quintic
    // Polar Express lands the singular values close to 1 (within its 2e-2 safety band and cushion).
    const Mat X = to_mat(out.data(), rows, cols);
    const Mat S = rows <= cols ? matmul(X, transpose(X)) : matmul(transpose(X), X);
    for (std::size_t i = 0; i < S.size(); ++i) {
      CHECK(S[i][i] > 0.5);
      CHECK(S[i][i] < 1.3);
    }
  }
}

TEST_CASE("bf16 rounding: nearest, ties to even, NaN and infinities kept", "[forward][muon]") {
  CHECK(round_to_bf16(1.0f) == 1.0f);
  CHECK(round_to_bf16(1.0f + 0x1p-8f) == 1.0f);                  // tie: to the even mantissa
  CHECK(round_to_bf16(1.0f + 3 * 0x1p-8f) == 1.0f + 0x1p-6f);    // tie: to the even mantissa
  CHECK(round_to_bf16(1.0f + 0x1p-8f + 0x1p-20f) == 1.0f + 0x1p-7f);  // above the tie: up
  CHECK(round_to_bf16(3.4445f) == 3.4375f);
  CHECK(round_to_bf16(-4.775f) == -4.78125f);
  CHECK(round_to_bf16(-0.0f) == 0.0f);
  CHECK(std::signbit(round_to_bf16(-0.0f)));
  CHECK(std::isinf(round_to_bf16(INFINITY)));
  CHECK(std::isnan(round_to_bf16(NAN)));
  CHECK(round_to_bf16(3.3895e38f) == 0x1.fep127f);  // the largest finite bf16 value
}

TEST_CASE("Newton-Schulz in bf16 rounds its iterates as the GPU does", "[forward][muon]") {
  for (auto [rows, cols] : {std::pair{16, 40}, std::pair{48, 12}}) {
    const auto G64 = randn(std::size_t(rows) * cols, 300 + rows);
    const std::vector<float> G(G64.begin(), G64.end());
    std::vector<float> f32(G.size()), bf(G.size());
    newton_schulz5(G.data(), rows, cols, 5, f32.data());
    newton_schulz5(G.data(), rows, cols, 5, bf.data(), /*bf16=*/true);
    const Mat ref = ns5_direct(to_mat(G64.data(), rows, cols), 5, /*bf16=*/true);
    double err = 0, dist = 0, norm = 0;
    for (int i = 0; i < rows; ++i)
      for (int j = 0; j < cols; ++j) {
        const float v = bf[std::size_t(i) * cols + j];
        REQUIRE(round_to_bf16(v) == v);  // every output is a bf16 value
        err += (v - ref[i][j]) * (v - ref[i][j]);
        dist += double(v - f32[std::size_t(i) * cols + j]) * (v - f32[std::size_t(i) * cols + j]);
        norm += ref[i][j] * ref[i][j];
      }
    // The direct formula accumulates in double, the product in float: a value near a rounding tie
    // may go the other way, so the two agree to a few bf16 units, not bit for bit.
    CHECK(std::sqrt(err / norm) < 4e-3);
    // bf16 is a different computation from float (not a no-op), and close to it.
    CHECK(std::sqrt(dist / norm) > 1e-3);
    CHECK(std::sqrt(dist / norm) < 2e-2);
  }
}

TEST_CASE("Muon over several steps matches the direct formula (Nesterov, WD, row norm)", "[forward][muon]") {
  for (bool row_norm : {false, true}) {
    MuonOptions opt{.momentum = 0.9, .ns_steps = 5, .nesterov = true, .weight_decay = 0.04, .row_normalize = row_norm};
    Muon<double> muon(kTable, opt);
    auto params = randn(kTotal, 210);
    auto ref = params;
    std::vector<double> buf_ref(kTotal, 0.0);
    for (int step = 0; step < 4; ++step) {
      const auto grads = randn(kTotal, 220 + step);
      const double lr = 0.02 * (step + 1);
      muon.step(params, grads, lr);
      for (const auto& p : kTable) {
        if (p.group != OptimGroup::muon_matrix) continue;
        Mat U(p.rows, std::vector<double>(p.cols));
        for (int i = 0; i < p.rows; ++i)
          for (int j = 0; j < p.cols; ++j) {
            const std::size_t e = p.offset + std::size_t(i) * p.cols + j;
            buf_ref[e] = 0.9 * buf_ref[e] + grads[e];
            U[i][j] = grads[e] + 0.9 * buf_ref[e];
          }
        if (row_norm)
          for (auto& r : U) {
            double n = 0;
            for (double v : r) n += v * v;
            for (double& v : r) v /= std::max(std::sqrt(n), 1e-7);
          }
        const Mat X = ns5_direct(U, 5);
        const double shape = std::sqrt(std::max(1.0, double(p.rows) / p.cols));
        for (int i = 0; i < p.rows; ++i)
          for (int j = 0; j < p.cols; ++j) {
            const std::size_t e = p.offset + std::size_t(i) * p.cols + j;
            ref[e] = ref[e] * (1 - lr * 0.04) - lr * shape * X[i][j];
          }
      }
    }
    for (std::size_t e = 0; e < kTotal; ++e) REQUIRE(params[e] == Approx(ref[e]).margin(1e-12));
    // Non-matrix tensors are untouched by Muon.
    const auto initial = randn(kTotal, 210);
    for (std::size_t e = 24; e < 29; ++e) REQUIRE(params[e] == initial[e]);
  }
}

// Ranks simulated by threads: each owns a Muon and a copy of the parameters; the shard's sum is an
// all-reduce over the threads (slots added in rank order, as the MPI communicator adds them).
template <class T>
void check_sharded_muon(int world, bool row_norm) {
  MuonOptions opt{.momentum = 0.9, .ns_steps = 5, .nesterov = true, .weight_decay = 0.04, .row_normalize = row_norm};
  std::vector<T> init(kTotal);
  const auto r0 = randn(kTotal, 310);
  for (std::size_t i = 0; i < kTotal; ++i) init[i] = T(r0[i]);
  std::vector<std::vector<T>> grads(4, std::vector<T>(kTotal));
  for (int s = 0; s < 4; ++s) {
    const auto g = randn(kTotal, 320 + s);
    for (std::size_t i = 0; i < kTotal; ++i) grads[std::size_t(s)][i] = T(g[i]);
  }
  Muon<T> one(kTable, opt);
  std::vector<T> ref = init;
  for (int s = 0; s < 4; ++s) one.step(ref, grads[std::size_t(s)], 0.02 * (s + 1));

  const auto W = static_cast<std::size_t>(world);
  std::vector<std::vector<T>> slot(W), params(W, init), momentum(W);
  std::barrier sync(world);
  std::vector<std::thread> ranks;
  std::vector<int> owned(W, 0);
  for (int r = 0; r < world; ++r)
    ranks.emplace_back([&, r] {
      Muon<T> m(kTable, opt);
      for (int k : m.owners(world)) owned[std::size_t(r)] += k == r;
      const MuonShard<T> shard{r, world, [&](std::span<T> x) {
                                 slot[std::size_t(r)].assign(x.begin(), x.end());
                                 sync.arrive_and_wait();
                                 for (std::size_t i = 0; i < x.size(); ++i) {
                                   T sum = slot[0][i];
                                   for (int q = 1; q < world; ++q) sum += slot[std::size_t(q)][i];
                                   x[i] = sum;
                                 }
                                 sync.arrive_and_wait();
                               }};
      for (int s = 0; s < 4; ++s) m.step(params[std::size_t(r)], grads[std::size_t(s)], 0.02 * (s + 1), shard);
      momentum[std::size_t(r)].assign(m.momentum_buffer().begin(), m.momentum_buffer().end());
    });
  for (auto& t : ranks) t.join();
  for (int r = 0; r < world; ++r) {
    INFO("world " << world << ", rank " << r << ", row_norm " << row_norm);
    CHECK(params[std::size_t(r)] == ref);  // bit for bit
    CHECK(std::equal(momentum[std::size_t(r)].begin(), momentum[std::size_t(r)].end(), one.momentum_buffer().begin()));
  }
  // Two matrices: on 2 ranks one each; on 3 one rank owns none (and still steps correctly above).
  CHECK(std::count(owned.begin(), owned.end(), 1) == 2);
}

TEST_CASE("Muon split over ranks by matrix is bit for bit the unsplit step", "[forward][muon]") {
  for (int world : {2, 3})
    for (bool row_norm : {false, true}) {
      check_sharded_muon<double>(world, row_norm);
      check_sharded_muon<float>(world, row_norm);
    }
  // The owners balance the Newton-Schulz cost: the largest matrices go to different ranks.
  std::array<ParamInfo, 4> t{};
  const int shapes[4][2] = {{64, 64}, {64, 64}, {8, 8}, {8, 8}};
  std::size_t at = 0;
  for (int k = 0; k < 4; ++k) {
    t[std::size_t(k)].name = "m";
    t[std::size_t(k)].offset = at, t[std::size_t(k)].rows = shapes[k][0], t[std::size_t(k)].cols = shapes[k][1];
    t[std::size_t(k)].rank = 2, t[std::size_t(k)].group = OptimGroup::muon_matrix;
    at += std::size_t(shapes[k][0]) * shapes[k][1];
  }
  Muon<double> m(t, MuonOptions{});
  CHECK(m.owners(2) == std::vector<int>{0, 1, 0, 1});
  CHECK(m.owners(3) == std::vector<int>{0, 1, 2, 2});
  MuonShard<double> bad{2, 2, [](std::span<double>) {}};
  std::vector<double> w(at), g(at);
  CHECK_THROWS_WITH(m.step(w, g, 0.1, bad), Catch::Contains("Muon: shard rank 2 of world 2"));
}

TEST_CASE("Adam and AdamW over several steps match the bias-corrected formula", "[forward][adam]") {
  for (double wd : {0.0, 0.1}) {
    Adam<double> adam(kTable, OptimGroup::adam_scalar, AdamOptions{.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = wd});
    auto params = randn(kTotal, 230);
    const auto initial = params;
    std::vector<double> ref(params.begin() + 24, params.begin() + 29), m(5, 0.0), v(5, 0.0);
    for (int t = 1; t <= 5; ++t) {
      const auto grads = randn(kTotal, 240 + t);
      const double lr = 0.04 / t;
      adam.step(params, grads, lr);
      for (int i = 0; i < 5; ++i) {
        const double g = grads[24 + i];
        m[i] = 0.9 * m[i] + 0.1 * g;
        v[i] = 0.95 * v[i] + 0.05 * g * g;
        const double mhat = m[i] / (1 - std::pow(0.9, t)), vhat = v[i] / (1 - std::pow(0.95, t));
        ref[i] = ref[i] * (1 - lr * wd) - lr * mhat / (std::sqrt(vhat) + 1e-8);
      }
    }
    REQUIRE(adam.steps_taken() == 5);
    for (int i = 0; i < 5; ++i) REQUIRE(params[24 + i] == Approx(ref[i]).epsilon(1e-12));
    for (std::size_t e = 0; e < 24; ++e) REQUIRE(params[e] == initial[e]);  // other groups untouched
  }
}

TEST_CASE("warmdown by iterations and by wall clock, momentum warm-up", "[forward][schedule]") {
  WarmdownSchedule it{.iterations = 100, .warmdown_iters = 20, .max_wallclock_ms = 0};
  CHECK(it.multiplier(0, 0) == 1.0);
  CHECK(it.multiplier(79, 0) == 1.0);
  CHECK(it.multiplier(80, 0) == 1.0);
  CHECK(it.multiplier(90, 0) == Approx(0.5));
  CHECK(it.multiplier(99, 0) == Approx(0.05));
  WarmdownSchedule wc{.iterations = 20000, .warmdown_iters = 1200, .max_wallclock_ms = 600000};
  // 1000 steps in 500 s: 500 ms/step, warmdown 600 s > 100 s remaining -> 100/600.
  CHECK(wc.multiplier(1000, 500000) == Approx(100.0 / 600.0));
  // 1000 steps in 100 s: 100 ms/step, warmdown 120 s < 500 s remaining -> 1.
  CHECK(wc.multiplier(1000, 100000) == 1.0);
  CHECK(wc.multiplier(1000, 700000) == 0.0);
  CHECK(WarmdownSchedule{.warmdown_iters = 0}.multiplier(5, 1e9) == 1.0);
  // The records' form: warmdown over a fraction of the run, floored at min_scale.
  WarmdownSchedule fr{.iterations = 100, .warmdown_iters = 20, .max_wallclock_ms = 0, .warmdown_fraction = 0.85,
                      .min_scale = 0.1};
  CHECK(fr.multiplier(0, 0) == 1.0);
  CHECK(fr.multiplier(14, 0) == 1.0);                   // p = 0.14 < 0.15
  CHECK(fr.multiplier(15, 0) == Approx(1.0));           // (1 - 0.15) / 0.85
  CHECK(fr.multiplier(50, 0) == Approx(0.5 / 0.85));    // warmdown_iters is ignored
  CHECK(fr.multiplier(95, 0) == Approx(0.1));           // 0.0588 floored
  CHECK(fr.multiplier(100, 0) == Approx(0.1));
  WarmdownSchedule fw{.iterations = 20000, .warmdown_iters = 0, .max_wallclock_ms = 600000, .warmdown_fraction = 0.5};
  CHECK(fw.multiplier(10, 200000) == 1.0);              // of the wall clock when capped: p = 1/3
  CHECK(fw.multiplier(10, 450000) == Approx(0.5));      // p = 0.75: (1 - 0.75) / 0.5
  CHECK(fw.multiplier(10, 700000) == 0.0);              // past the cap, no floor
  // The floor applies to the warmdown_iters form too, never lifting the plateau.
  WarmdownSchedule fl{.iterations = 100, .warmdown_iters = 20, .max_wallclock_ms = 0, .min_scale = 0.3};
  CHECK(fl.multiplier(50, 0) == 1.0);
  CHECK(fl.multiplier(90, 0) == Approx(0.5));
  CHECK(fl.multiplier(99, 0) == Approx(0.3));
  MomentumWarmup mw{.start = 0.85, .end = 0.95, .steps = 500};
  CHECK(mw.at(0) == Approx(0.85));
  CHECK(mw.at(250) == Approx(0.90));
  CHECK(mw.at(500) == Approx(0.95));
  CHECK(mw.at(5000) == Approx(0.95));
}

TEST_CASE("global-norm clipping", "[forward][clip]") {
  std::vector<double> g = {3.0, 4.0};
  CHECK(clip_grad_norm<double>(g, 10.0) == Approx(5.0));
  CHECK(g[0] == 3.0);  // under the limit: untouched
  CHECK(clip_grad_norm<double>(g, 1.0) == Approx(5.0));
  CHECK(g[0] == Approx(3.0 / (5.0 + 1e-6)));
  CHECK(g[1] == Approx(4.0 / (5.0 + 1e-6)));
  std::vector<double> bad = {1.0, std::nan("")};
  CHECK(std::isnan(clip_grad_norm<double>(bad, 1.0)));
}
