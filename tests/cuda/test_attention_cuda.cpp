// CUDA attention against the CPU reference (double) on the same bf16-representable inputs, so
// only the GPU's own roundings differ: P and dS in bf16 for the products, y in bf16. Bounds:
// y, dq, dk, dv relative L2 < 1e-2; lse within 1e-3 absolute; the gain gradient (fp32 path) within
// 2e-3 relative L2. Two workspace sizes (one chunk holding every (batch, KV head) pair, and chunks
// of one pair each) and three query tilings (the default, none, and 7 tiles of 24 rows whose last
// tile is short), so every path is covered. Outputs are poisoned with NaN beforehand.
#include <catch2/catch.hpp>

#include "../test_util.hpp"

#include <cmath>
#include <cstdio>
#include <vector>

#include "attention_kernels.hpp"
#include "pgolf/core/rng.hpp"
#include "pgolf/ops/cpu/attention.hpp"

namespace {
using pgolf::test::rel_l2;
}  // namespace

TEST_CASE("CUDA attention matches the CPU reference (GQA, causal, gain)", "[cuda][attention]") {
  const int B = 2, T = 160, H = 6, G = 2, D = 64;
  struct Case {
    std::size_t workspace;
    int tiles;
  };
  for (const Case cs : {Case{std::size_t(1) << 30, 4}, Case{1, 4}, Case{std::size_t(1) << 30, 1}, Case{1, 7}}) {
    const std::size_t workspace = cs.workspace;
    std::vector<float> q(std::size_t(B) * T * H * D), k(std::size_t(B) * T * G * D), v(k.size()), dy(q.size());
    std::vector<float> gain(H);
    for (std::size_t i = 0; i < q.size(); ++i) q[i] = float(pgolf::normal01(31, 1, i));
    for (std::size_t i = 0; i < k.size(); ++i) k[i] = float(pgolf::normal01(31, 2, i));
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = float(pgolf::normal01(31, 3, i));
    for (std::size_t i = 0; i < dy.size(); ++i) dy[i] = float(pgolf::normal01(31, 4, i));
    for (int h = 0; h < H; ++h) gain[h] = float(0.5 + 0.4 * h);
    const GpuAttention g = gpu_attention_64(B, T, H, G, q, k, v, gain, dy, workspace, cs.tiles);

    auto d = [](const std::vector<float>& x) { return std::vector<double>(x.begin(), x.end()); };
    const auto qd = d(q), kd = d(k), vd = d(v), dyd = d(dy), gd = d(gain);
    const pgolf::ops::cpu::AttentionShape s{B, T, H, G, D};
    std::vector<double> y(q.size()), lse(std::size_t(B) * H * T), dq(q.size()), dk(k.size()), dv(v.size()), dgain(H, 0.0);
    pgolf::ops::cpu::attention_forward(qd.data(), kd.data(), vd.data(), gd.data(), s, y.data(), lse.data());
    pgolf::ops::cpu::attention_backward(dyd.data(), qd.data(), kd.data(), vd.data(), gd.data(), y.data(), lse.data(), s,
                                        dq.data(), dk.data(), dv.data(), dgain.data());
    double lse_err = 0;
    for (std::size_t i = 0; i < lse.size(); ++i) lse_err = std::max(lse_err, std::abs(double(g.lse[i]) - lse[i]));
    std::printf("  workspace %zu, %d tiles: y %.2e  lse %.2e  dq %.2e  dk %.2e  dv %.2e  dgain %.2e\n", workspace, cs.tiles, rel_l2(g.y, y),
                lse_err, rel_l2(g.dq, dq), rel_l2(g.dk, dk), rel_l2(g.dv, dv), rel_l2(g.dgain, dgain));
    CHECK(rel_l2(g.y, y) < 1e-2);
    CHECK(lse_err < 1e-3);
    CHECK(rel_l2(g.dq, dq) < 1e-2);
    CHECK(rel_l2(g.dk, dk) < 1e-2);
    CHECK(rel_l2(g.dv, dv) < 1e-2);
    CHECK(rel_l2(g.dgain, dgain) < 2e-3);
  }
}

// Document masking in the gemm path's kernels: starts computed on the device from the ids (equal to
// the CPU's document_starts), BOS at 0, adjacent BOSes (documents of one token), a row without a
// BOS until late, and the last token alone; then the same bounds as above against the masked CPU
// reference.
TEST_CASE("CUDA attention with document masking matches the CPU reference", "[cuda][attention][documents]") {
  const int B = 2, T = 160, H = 4, G = 2, D = 64;
  std::vector<std::int32_t> ids(std::size_t(B) * T, 7);
  for (int t : {0, 5, 6, 7, 63, 64, 100}) ids[std::size_t(t)] = 1;
  for (int t : {150, 158, 159}) ids[std::size_t(T) + t] = 1;
  for (int tiles : {4, 7}) {
    std::vector<float> q(std::size_t(B) * T * H * D), k(std::size_t(B) * T * G * D), v(k.size()), dy(q.size());
    std::vector<float> gain(H);
    for (std::size_t i = 0; i < q.size(); ++i) q[i] = float(pgolf::normal01(32, 1, i));
    for (std::size_t i = 0; i < k.size(); ++i) k[i] = float(pgolf::normal01(32, 2, i));
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = float(pgolf::normal01(32, 3, i));
    for (std::size_t i = 0; i < dy.size(); ++i) dy[i] = float(pgolf::normal01(32, 4, i));
    for (int h = 0; h < H; ++h) gain[h] = float(0.5 + 0.4 * h);
    const GpuAttention g = gpu_attention_64(B, T, H, G, q, k, v, gain, dy, std::size_t(1) << 30, tiles, ids);
    std::vector<std::int32_t> starts(ids.size());
    pgolf::ops::cpu::document_starts(ids.data(), B, T, 1, starts.data());
    REQUIRE(g.starts == starts);

    auto d = [](const std::vector<float>& x) { return std::vector<double>(x.begin(), x.end()); };
    const auto qd = d(q), kd = d(k), vd = d(v), dyd = d(dy), gd = d(gain);
    pgolf::ops::cpu::AttentionShape s{B, T, H, G, D};
    s.doc_start = starts.data();
    std::vector<double> y(q.size()), lse(std::size_t(B) * H * T), dq(q.size()), dk(k.size()), dv(v.size()), dgain(H, 0.0);
    pgolf::ops::cpu::attention_forward(qd.data(), kd.data(), vd.data(), gd.data(), s, y.data(), lse.data());
    pgolf::ops::cpu::attention_backward(dyd.data(), qd.data(), kd.data(), vd.data(), gd.data(), y.data(), lse.data(), s,
                                        dq.data(), dk.data(), dv.data(), dgain.data());
    double lse_err = 0;
    for (std::size_t i = 0; i < lse.size(); ++i) lse_err = std::max(lse_err, std::abs(double(g.lse[i]) - lse[i]));
    std::printf("  documents, %d tiles: y %.2e  lse %.2e  dq %.2e  dk %.2e  dv %.2e  dgain %.2e\n", tiles,
                rel_l2(g.y, y), lse_err, rel_l2(g.dq, dq), rel_l2(g.dk, dk), rel_l2(g.dv, dv), rel_l2(g.dgain, dgain));
    CHECK(rel_l2(g.y, y) < 1e-2);
    CHECK(lse_err < 1e-3);
    CHECK(rel_l2(g.dq, dq) < 1e-2);
    CHECK(rel_l2(g.dk, dk) < 1e-2);
    CHECK(rel_l2(g.dv, dv) < 1e-2);
    CHECK(rel_l2(g.dgain, dgain) < 2e-3);
  }
}
