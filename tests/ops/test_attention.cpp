#include <catch2/catch.hpp>

#include "pgolf/ops/attention_path.hpp"
#include "pgolf/ops/cpu/attention.hpp"
#include "../test_util.hpp"

using namespace pgolf;
using namespace pgolf::test;

namespace {
// Direct formula: full score matrix, explicit causal mask, softmax, weighted sum of values.
std::vector<double> naive_attention(const std::vector<double>& q, const std::vector<double>& k,
                                    const std::vector<double>& v, const std::vector<double>& gain,
                                    const ops::cpu::AttentionShape& s) {
  std::vector<double> y(q.size(), 0.0);
  for (int b = 0; b < s.B; ++b)
    for (int h = 0; h < s.H; ++h) {
      const int g = h * s.Hkv / s.H;
      for (int t = 0; t < s.T; ++t) {
        std::vector<double> w(s.T, 0.0);
        double z = 0;
        for (int j = 0; j < s.T; ++j) {
          if (j > t) continue;
          double qk = 0;
          for (int d = 0; d < s.D; ++d) qk += q[s.q_index(b, t, h) + d] * k[s.kv_index(b, j, g) + d];
          w[j] = std::exp(gain[h] * qk / std::sqrt(double(s.D)));
          z += w[j];
        }
        for (int j = 0; j <= t; ++j)
          for (int d = 0; d < s.D; ++d) y[s.q_index(b, t, h) + d] += w[j] / z * v[s.kv_index(b, j, g) + d];
      }
    }
  return y;
}
}  // namespace

TEST_CASE("attention forward matches masked softmax with GQA and q_gain", "[forward][attention]") {
  for (int Hkv : {4, 2, 1}) {
    const ops::cpu::AttentionShape s{2, 6, 4, Hkv, 8};
    auto q = randn(s.B * s.T * s.H * s.D, 40), k = randn(s.B * s.T * s.Hkv * s.D, 41),
         v = randn(s.B * s.T * s.Hkv * s.D, 42);
    const std::vector<double> gain = {1.5, 0.7, 2.0, 1.1};
    std::vector<double> y(q.size(), -5), lse(s.B * s.H * s.T, -5);
    ops::cpu::attention_forward(q.data(), k.data(), v.data(), gain.data(), s, y.data(), lse.data());
    const auto ref = naive_attention(q, k, v, gain, s);
    for (std::size_t i = 0; i < y.size(); ++i) REQUIRE(y[i] == Approx(ref[i]).margin(1e-13));
    // Position 0 attends only to itself.
    for (int h = 0; h < s.H; ++h)
      for (int d = 0; d < s.D; ++d)
        REQUIRE(y[s.q_index(1, 0, h) + d] == Approx(v[s.kv_index(1, 0, h * s.Hkv / s.H) + d]).margin(1e-14));
  }
}

TEST_CASE("attention backward matches finite differences for q, k, v and gain", "[gradcheck][attention]") {
  for (int Hkv : {4, 2}) {
    const ops::cpu::AttentionShape s{2, 5, 4, Hkv, 4};
    auto q = randn(s.B * s.T * s.H * s.D, 43), k = randn(s.B * s.T * s.Hkv * s.D, 44),
         v = randn(s.B * s.T * s.Hkv * s.D, 45);
    std::vector<double> gain = {1.5, 0.7, 2.0, 1.1};
    const auto r = randn(q.size(), 46);
    std::vector<double> y(q.size()), lse(s.B * s.H * s.T);
    auto loss = [&] {
      ops::cpu::attention_forward(q.data(), k.data(), v.data(), gain.data(), s, y.data(), lse.data());
      return weighted_sum(r, y.data());
    };
    loss();
    std::vector<double> dq(q.size(), 9), dk(k.size(), 9), dv(v.size(), 9), dgain(gain.size(), 0.0);
    ops::cpu::attention_backward(r.data(), q.data(), k.data(), v.data(), gain.data(), y.data(), lse.data(), s,
                                 dq.data(), dk.data(), dv.data(), dgain.data());
    REQUIRE(fd_max_error(loss, q.data(), dq.data(), q.size()) < 1e-6);
    REQUIRE(fd_max_error(loss, k.data(), dk.data(), k.size()) < 1e-6);
    REQUIRE(fd_max_error(loss, v.data(), dv.data(), v.size()) < 1e-6);
    REQUIRE(fd_max_error(loss, gain.data(), dgain.data(), gain.size()) < 1e-6);
  }
}

namespace {
// Rows of 70 tokens (past one 64-row block) with BOS (id 1) at: row 0 positions 0, 5, 6, 7 (two
// one-token documents), 40; row 1 none until 66, then 69 (the row's last token alone).
std::vector<std::int32_t> doc_ids(int B, int T) {
  std::vector<std::int32_t> ids(std::size_t(B) * T, 9);
  for (int t : {0, 5, 6, 7, 40}) ids[std::size_t(t)] = 1;
  if (B > 1)
    for (int t : {66, 69}) ids[std::size_t(T) + t] = 1;
  return ids;
}
// [begin, end) of each document of row b.
std::vector<std::pair<int, int>> documents(const std::vector<std::int32_t>& starts, int b, int T) {
  std::vector<std::pair<int, int>> docs;
  for (int t = 0; t < T; ++t) {
    const int st = starts[std::size_t(b) * T + t];
    if (docs.empty() || docs.back().first != st) docs.push_back({st, t + 1});
    else docs.back().second = t + 1;
  }
  return docs;
}
}  // namespace

TEST_CASE("document starts: each token's last BOS at or before it, 0 before a row's first", "[attention][documents]") {
  const int B = 2, T = 70;
  const auto ids = doc_ids(B, T);
  std::vector<std::int32_t> st(ids.size(), -1);
  ops::cpu::document_starts(ids.data(), B, T, 1, st.data());
  CHECK(st[0] == 0);
  CHECK(st[4] == 0);
  CHECK(st[5] == 5);
  CHECK(st[6] == 6);
  CHECK(st[39] == 7);
  CHECK(st[69] == 40);
  CHECK(st[std::size_t(T) + 0] == 0);
  CHECK(st[std::size_t(T) + 65] == 0);
  CHECK(st[std::size_t(T) + 68] == 66);
  CHECK(st[std::size_t(T) + 69] == 69);
}

// Document-masked attention over a packed row is plain causal attention over each document on its
// own: outputs, log-sum-exps and all four gradients, in double.
TEST_CASE("document-masked attention equals attention over each document alone", "[attention][documents]") {
  for (int Hkv : {4, 2, 1}) {
    ops::cpu::AttentionShape s{2, 70, 4, Hkv, 8};
    const auto ids = doc_ids(s.B, s.T);
    std::vector<std::int32_t> starts(ids.size());
    ops::cpu::document_starts(ids.data(), s.B, s.T, 1, starts.data());
    s.doc_start = starts.data();
    const auto q = randn(std::size_t(s.B) * s.T * s.H * s.D, 50), k = randn(std::size_t(s.B) * s.T * s.Hkv * s.D, 51),
               v = randn(std::size_t(s.B) * s.T * s.Hkv * s.D, 52), dy = randn(q.size(), 53);
    const std::vector<double> gain = {1.5, 0.7, 2.0, 1.1};
    std::vector<double> y(q.size(), -5), lse(std::size_t(s.B) * s.H * s.T, -5);
    ops::cpu::attention_forward(q.data(), k.data(), v.data(), gain.data(), s, y.data(), lse.data());
    std::vector<double> dq(q.size(), 9), dk(k.size(), 9), dv(v.size(), 9), dgain(gain.size(), 0.0);
    ops::cpu::attention_backward(dy.data(), q.data(), k.data(), v.data(), gain.data(), y.data(), lse.data(), s,
                                 dq.data(), dk.data(), dv.data(), dgain.data());
    std::vector<double> dgain_docs(gain.size(), 0.0);
    int count = 0;
    for (int b = 0; b < s.B; ++b)
      for (auto [t0, t1] : documents(starts, b, s.T)) {
        ++count;
        const ops::cpu::AttentionShape d{1, t1 - t0, s.H, s.Hkv, s.D};
        const auto cut = [&](const std::vector<double>& x, int heads) {
          const std::size_t w = std::size_t(heads) * s.D;
          return std::vector<double>(x.begin() + std::ptrdiff_t((std::size_t(b) * s.T + t0) * w),
                                     x.begin() + std::ptrdiff_t((std::size_t(b) * s.T + t1) * w));
        };
        const auto dq_ = cut(q, s.H), dk_ = cut(k, s.Hkv), dv_ = cut(v, s.Hkv), ddy = cut(dy, s.H);
        std::vector<double> yd(dq_.size()), ld(std::size_t(s.H) * d.T);
        ops::cpu::attention_forward(dq_.data(), dk_.data(), dv_.data(), gain.data(), d, yd.data(), ld.data());
        std::vector<double> gq(dq_.size()), gk(dk_.size()), gv(dv_.size());
        ops::cpu::attention_backward(ddy.data(), dq_.data(), dk_.data(), dv_.data(), gain.data(), yd.data(), ld.data(),
                                     d, gq.data(), gk.data(), gv.data(), dgain_docs.data());
        const auto near = [](const std::vector<double>& a, const std::vector<double>& full) {
          REQUIRE(a.size() == full.size());
          for (std::size_t i = 0; i < a.size(); ++i) REQUIRE(a[i] == Approx(full[i]).margin(1e-12));
        };
        near(yd, cut(y, s.H));
        near(gq, cut(dq, s.H));
        near(gk, cut(dk, s.Hkv));
        near(gv, cut(dv, s.Hkv));
        for (int h = 0; h < s.H; ++h)
          for (int t = t0; t < t1; ++t)
            REQUIRE(ld[std::size_t(h) * d.T + (t - t0)] == Approx(lse[s.lse_index(b, h, t)]).margin(1e-12));
      }
    CHECK(count == 8);  // row 0: [0,5) [5] [6] [7,40) [40,70); row 1: [0,66) [66,69) [69]
    for (std::size_t h = 0; h < gain.size(); ++h) REQUIRE(dgain_docs[h] == Approx(dgain[h]).margin(1e-10));
  }
}

TEST_CASE("document-masked attention backward matches finite differences", "[gradcheck][attention][documents]") {
  ops::cpu::AttentionShape s{1, 9, 4, 2, 4};
  const std::vector<std::int32_t> ids = {5, 5, 1, 1, 7, 7, 1, 8, 8};  // documents [0,2) [2] [3,6) [6,9)
  std::vector<std::int32_t> starts(ids.size());
  ops::cpu::document_starts(ids.data(), s.B, s.T, 1, starts.data());
  s.doc_start = starts.data();
  auto q = randn(std::size_t(s.T) * s.H * s.D, 54), k = randn(std::size_t(s.T) * s.Hkv * s.D, 55),
       v = randn(std::size_t(s.T) * s.Hkv * s.D, 56);
  std::vector<double> gain = {1.5, 0.7, 2.0, 1.1};
  const auto r = randn(q.size(), 57);
  std::vector<double> y(q.size()), lse(std::size_t(s.H) * s.T);
  auto loss = [&] {
    ops::cpu::attention_forward(q.data(), k.data(), v.data(), gain.data(), s, y.data(), lse.data());
    return weighted_sum(r, y.data());
  };
  loss();
  std::vector<double> dq(q.size(), 9), dk(k.size(), 9), dv(v.size(), 9), dgain(gain.size(), 0.0);
  ops::cpu::attention_backward(r.data(), q.data(), k.data(), v.data(), gain.data(), y.data(), lse.data(), s, dq.data(),
                               dk.data(), dv.data(), dgain.data());
  REQUIRE(fd_max_error(loss, q.data(), dq.data(), q.size()) < 1e-6);
  REQUIRE(fd_max_error(loss, k.data(), dk.data(), k.size()) < 1e-6);
  REQUIRE(fd_max_error(loss, v.data(), dv.data(), v.size()) < 1e-6);
  REQUIRE(fd_max_error(loss, gain.data(), dgain.data(), gain.size()) < 1e-6);
  // The one-token document at position 2 sees only itself.
  for (int h = 0; h < s.H; ++h)
    for (int d = 0; d < s.D; ++d) REQUIRE(y[s.q_index(0, 2, h) + d] == Approx(v[s.kv_index(0, 2, h / 2) + d]));
}

TEST_CASE("PGOLF_ATTENTION names the CUDA attention path; anything else is refused", "[attention][config]") {
  CHECK(pgolf::parse_attention_path("") == pgolf::AttentionPath::gemm);
  CHECK(pgolf::parse_attention_path("gemm") == pgolf::AttentionPath::gemm);
  CHECK(pgolf::parse_attention_path("flash") == pgolf::AttentionPath::flash);
  CHECK(pgolf::parse_attention_path("flash-mma") == pgolf::AttentionPath::flash_mma);
  CHECK_THROWS_AS(pgolf::parse_attention_path("flash_mma"), pgolf::Error);
  CHECK_THROWS_WITH(pgolf::parse_attention_path("Flash"), Catch::Contains("PGOLF_ATTENTION") && Catch::Contains("'Flash'"));
  CHECK_THROWS_AS(pgolf::parse_attention_path("cudnn"), pgolf::Error);
}
