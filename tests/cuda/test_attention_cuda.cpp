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
#include <string>
#include <vector>

#include "attention_kernels.hpp"
#include "pgolf/core/rng.hpp"
#include "pgolf/ops/cpu/attention.hpp"

namespace {
using pgolf::test::rel_l2;

struct Inputs {
  std::vector<float> q, k, v, dy, gain;
};
// Normal q, k, v, dy in the CPU layouts ([B,T,H,D], [B,T,G,D]) from stream `seed`; gain_h = 0.5 + 0.4 h.
Inputs random_inputs(int B, int T, int H, int G, int D, std::uint64_t seed) {
  Inputs in;
  in.q.resize(std::size_t(B) * T * H * D), in.k.resize(std::size_t(B) * T * G * D), in.v.resize(in.k.size());
  in.dy.resize(in.q.size()), in.gain.resize(std::size_t(H));
  for (std::size_t i = 0; i < in.q.size(); ++i) in.q[i] = float(pgolf::normal01(seed, 1, i));
  for (std::size_t i = 0; i < in.k.size(); ++i) in.k[i] = float(pgolf::normal01(seed, 2, i));
  for (std::size_t i = 0; i < in.v.size(); ++i) in.v[i] = float(pgolf::normal01(seed, 3, i));
  for (std::size_t i = 0; i < in.dy.size(); ++i) in.dy[i] = float(pgolf::normal01(seed, 4, i));
  for (int h = 0; h < H; ++h) in.gain[std::size_t(h)] = float(0.5 + 0.4 * h);
  return in;
}

// The CPU reference in double on the (bf16-rounded) inputs, against the GPU's results: the bounds
// stated at the top.
void check_against_cpu(const GpuAttention& g, const Inputs& in, const pgolf::ops::cpu::AttentionShape& s,
                       const std::string& label) {
  auto d = [](const std::vector<float>& x) { return std::vector<double>(x.begin(), x.end()); };
  const auto qd = d(in.q), kd = d(in.k), vd = d(in.v), dyd = d(in.dy), gd = d(in.gain);
  std::vector<double> y(qd.size()), lse(std::size_t(s.B) * s.H * s.T), dq(qd.size()), dk(kd.size()), dv(vd.size()),
      dgain(std::size_t(s.H), 0.0);
  pgolf::ops::cpu::attention_forward(qd.data(), kd.data(), vd.data(), gd.data(), s, y.data(), lse.data());
  pgolf::ops::cpu::attention_backward(dyd.data(), qd.data(), kd.data(), vd.data(), gd.data(), y.data(), lse.data(), s,
                                      dq.data(), dk.data(), dv.data(), dgain.data());
  double lse_err = 0;
  for (std::size_t i = 0; i < lse.size(); ++i) lse_err = std::max(lse_err, std::abs(double(g.lse[i]) - lse[i]));
  std::printf("  %s: y %.2e  lse %.2e  dq %.2e  dk %.2e  dv %.2e  dgain %.2e\n", label.c_str(), rel_l2(g.y, y), lse_err,
              rel_l2(g.dq, dq), rel_l2(g.dk, dk), rel_l2(g.dv, dv), rel_l2(g.dgain, dgain));
  CHECK(rel_l2(g.y, y) < 1e-2);
  CHECK(lse_err < 1e-3);
  CHECK(rel_l2(g.dq, dq) < 1e-2);
  CHECK(rel_l2(g.dk, dk) < 1e-2);
  CHECK(rel_l2(g.dv, dv) < 1e-2);
  CHECK(rel_l2(g.dgain, dgain) < 2e-3);
}
}  // namespace

TEST_CASE("CUDA attention matches the CPU reference (GQA, causal, gain)", "[cuda][attention]") {
  const int B = 2, T = 160, H = 6, G = 2, D = 64;
  struct Case {
    std::size_t workspace;
    int tiles;
  };
  for (const Case cs : {Case{std::size_t(1) << 30, 4}, Case{1, 4}, Case{std::size_t(1) << 30, 1}, Case{1, 7}}) {
    const std::size_t workspace = cs.workspace;
    Inputs in = random_inputs(B, T, H, G, D, 31);
    const GpuAttention g = gpu_attention_64(B, T, H, G, in.q, in.k, in.v, in.gain, in.dy, workspace, cs.tiles);
    check_against_cpu(g, in, {B, T, H, G, D},
                      "workspace " + std::to_string(workspace) + ", " + std::to_string(cs.tiles) + " tiles");
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
    Inputs in = random_inputs(B, T, H, G, D, 32);
    const GpuAttention g =
        gpu_attention_64(B, T, H, G, in.q, in.k, in.v, in.gain, in.dy, std::size_t(1) << 30, tiles, ids);
    std::vector<std::int32_t> starts(ids.size());
    pgolf::ops::cpu::document_starts(ids.data(), B, T, 1, starts.data());
    REQUIRE(g.starts == starts);
    pgolf::ops::cpu::AttentionShape s{B, T, H, G, D};
    s.doc_start = starts.data();
    check_against_cpu(g, in, s, "documents, " + std::to_string(tiles) + " tiles");
  }
}
