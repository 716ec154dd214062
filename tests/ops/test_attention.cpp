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

TEST_CASE("PGOLF_ATTENTION names the CUDA attention path; anything else is refused", "[attention][config]") {
  CHECK(pgolf::parse_attention_path("") == pgolf::AttentionPath::gemm);
  CHECK(pgolf::parse_attention_path("gemm") == pgolf::AttentionPath::gemm);
  CHECK(pgolf::parse_attention_path("flash") == pgolf::AttentionPath::flash);
  CHECK_THROWS_WITH(pgolf::parse_attention_path("Flash"), Catch::Contains("PGOLF_ATTENTION") && Catch::Contains("'Flash'"));
  CHECK_THROWS_AS(pgolf::parse_attention_path("cudnn"), pgolf::Error);
}
