// Flash attention (ops/cuda/flash_attention.cuh) against the CPU reference (double) on the same
// bf16-representable inputs, so only the GPU's own roundings differ (P and c*dZ in bf16 for the
// products, y in bf16). Head dims 64 and 128, query heads per KV head 1, 2 and 4, sequence
// lengths 1, 37, 64, 200, 1000 (multiples of the 64-row tile and not) and one T = 4096 case; head
// dim 32 (the small test models', which test_cuda.flash_path runs on this path) at T 37 and 200.
// Bounds: y, dq, dk, dv relative L2 < 1e-2; lse within 1e-3 absolute; the gain gradient (fp32
// path) within 2e-3 relative L2, as for the cuBLASLt path (test_attention_cuda.cpp). Outputs are
// NaN before every run, so an element left unwritten fails. The backward is run twice: dq, dk
// bitwise equal, dv and dgain (accumulating) exactly doubled. Where T % 8 == 0 the cuBLASLt path
// runs on the same inputs and the two agree within the bf16 bound. Document masking
// (FlashAttention::set_doc_starts) against the CPU reference with the same starts, with the same
// bounds and the same determinism checks: documents of one token, BOS at 0, rows without a BOS,
// boundaries on and off the 64-row tiles, T not a multiple of the tile, and T = 4096 with many
// documents. The atomic backward (FlashAttention(dims, false)) against the same reference with the
// same bounds, with and without documents; its dq is summed with atomicAdd in no fixed order, so its
// two runs' dq agree only to rounding (relative L2 < 1e-5), not bitwise, while dk, dv and dgain
// (fixed order in both modes) are still checked bitwise. Every case also runs the forward on
// registers (FlashKernels::mma: forward_mma_kernel, and in the deterministic mode dq_mma_kernel and
// dkv_mma_kernel), same bounds.
#include <catch2/catch.hpp>

#include "../test_util.hpp"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "flash_attention_kernels.hpp"
#include "pgolf/core/rng.hpp"
#include "pgolf/ops/cpu/attention.hpp"

namespace {
using pgolf::test::rel_l2;
bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}
bool exactly_doubled(const std::vector<float>& twice, const std::vector<float>& once) {
  if (twice.size() != once.size()) return false;
  for (std::size_t i = 0; i < once.size(); ++i) {
    const float d = once[i] + once[i];
    if (std::memcmp(&d, &twice[i], sizeof(float)) != 0) return false;
  }
  return true;
}

// BOS positions of each row (token id 1 there, 9 elsewhere); none: plain causal.
using Bos = std::vector<std::vector<int>>;

void check_case(int Hd, int B, int T, int H, int G, const Bos& bos = {}, bool deterministic = true) {
  const bool docs = !bos.empty();
  CAPTURE(Hd, B, T, H, G, docs, deterministic);
  const std::vector<std::int32_t> starts = pgolf::test::doc_starts_at(B, T, bos);
  std::vector<float> q(std::size_t(B) * T * H * Hd), k(std::size_t(B) * T * G * Hd), v(k.size()), dy(q.size());
  std::vector<float> gain(H);
  const std::uint64_t seed = 41 + std::uint64_t(Hd) * 1000 + std::uint64_t(T) * 10 + std::uint64_t(H / G);
  for (std::size_t i = 0; i < q.size(); ++i) q[i] = float(pgolf::normal01(seed, 1, i));
  for (std::size_t i = 0; i < k.size(); ++i) k[i] = float(pgolf::normal01(seed, 2, i));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = float(pgolf::normal01(seed, 3, i));
  for (std::size_t i = 0; i < dy.size(); ++i) dy[i] = float(pgolf::normal01(seed, 4, i));
  for (int h = 0; h < H; ++h) gain[h] = float(0.5 + 0.3 * h);
  const bool with_gemm = T % 8 == 0 && !docs;  // the cuBLASLt path has no document mask
  const FlashAttentionRun g = gpu_flash_attention(Hd, B, T, H, G, q, k, v, gain, dy, with_gemm, starts, deterministic);

  auto d = [](const std::vector<float>& x) { return std::vector<double>(x.begin(), x.end()); };
  const auto qd = d(q), kd = d(k), vd = d(v), dyd = d(dy), gd = d(gain);
  const pgolf::ops::cpu::AttentionShape s{B, T, H, G, Hd, docs ? starts.data() : nullptr};
  std::vector<double> y(q.size()), lse(std::size_t(B) * H * T), dq(q.size()), dk(k.size()), dv(v.size()),
      dgain(H, 0.0);
  pgolf::ops::cpu::attention_forward(qd.data(), kd.data(), vd.data(), gd.data(), s, y.data(), lse.data());
  pgolf::ops::cpu::attention_backward(dyd.data(), qd.data(), kd.data(), vd.data(), gd.data(), y.data(), lse.data(), s,
                                      dq.data(), dk.data(), dv.data(), dgain.data());
  const AttentionOutputs& f = g.flash;
  double lse_err = 0;
  for (std::size_t i = 0; i < lse.size(); ++i)
    lse_err = std::max(lse_err, std::isfinite(f.lse[i]) ? std::abs(double(f.lse[i]) - lse[i]) : INFINITY);
  std::printf("  flash Hd %3d B %d T %4d H %d G %d%s%s: y %.2e  lse %.2e  dq %.2e  dk %.2e  dv %.2e  dgain %.2e\n", Hd, B,
              T, H, G, docs ? " docs" : "", deterministic ? "" : " atomic", rel_l2(f.y, y), lse_err, rel_l2(f.dq, dq), rel_l2(f.dk, dk), rel_l2(f.dv, dv),
              rel_l2(f.dgain, dgain));
  CHECK(rel_l2(f.y, y) < 1e-2);
  CHECK(lse_err < 1e-3);
  CHECK(rel_l2(f.dq, dq) < 1e-2);
  CHECK(rel_l2(f.dk, dk) < 1e-2);
  CHECK(rel_l2(f.dv, dv) < 1e-2);
  CHECK(rel_l2(f.dgain, dgain) < 2e-3);
  // The kernels on registers (FlashKernels::mma; the atomic backward stays wmma's).
  const AttentionOutputs& fm = g.mma;
  double lse_err_mma = 0;
  for (std::size_t i = 0; i < lse.size(); ++i)
    lse_err_mma = std::max(lse_err_mma, std::isfinite(fm.lse[i]) ? std::abs(double(fm.lse[i]) - lse[i]) : INFINITY);
  std::printf("    on registers (mma): y %.2e  lse %.2e  dq %.2e  dk %.2e  dv %.2e  dgain %.2e\n", rel_l2(fm.y, y),
              lse_err_mma, rel_l2(fm.dq, dq), rel_l2(fm.dk, dk), rel_l2(fm.dv, dv), rel_l2(fm.dgain, dgain));
  CHECK(rel_l2(fm.y, y) < 1e-2);
  CHECK(lse_err_mma < 1e-3);
  CHECK(rel_l2(fm.dq, dq) < 1e-2);
  CHECK(rel_l2(fm.dk, dk) < 1e-2);
  CHECK(rel_l2(fm.dv, dv) < 1e-2);
  CHECK(rel_l2(fm.dgain, dgain) < 2e-3);
  // Deterministic backward; in the atomic mode dq only to rounding (atomicAdd's order varies).
  if (deterministic)
    CHECK(bitwise_equal(g.again.dq, f.dq));
  else
    CHECK(rel_l2(g.again.dq, f.dq) < 1e-5);
  CHECK(bitwise_equal(g.again.dk, f.dk));
  CHECK(exactly_doubled(g.again.dv, f.dv));
  CHECK(exactly_doubled(g.again.dgain, f.dgain));
  if (with_gemm) {
    const AttentionOutputs& m = g.gemm;
    std::printf("    flash vs gemm: y %.2e  dq %.2e  dk %.2e  dv %.2e  dgain %.2e\n", rel_l2(f.y, m.y),
                rel_l2(f.dq, m.dq), rel_l2(f.dk, m.dk), rel_l2(f.dv, m.dv), rel_l2(f.dgain, m.dgain));
    CHECK(rel_l2(f.y, m.y) < 1e-2);
    CHECK(rel_l2(f.lse, m.lse) < 1e-4);
    CHECK(rel_l2(f.dq, m.dq) < 1e-2);
    CHECK(rel_l2(f.dk, m.dk) < 1e-2);
    CHECK(rel_l2(f.dv, m.dv) < 1e-2);
    CHECK(rel_l2(f.dgain, m.dgain) < 2e-3);
  }
}
}  // namespace

TEST_CASE("CUDA flash attention matches the CPU reference (GQA, causal, gain)", "[cuda][attention][flash]") {
  for (const int Hd : {64, 128})
    for (const int R : {1, 2, 4})
      for (const int T : {1, 37, 64, 200, 1000}) check_case(Hd, T <= 200 ? 2 : 1, T, 2 * R, 2);
}

TEST_CASE("CUDA flash attention at seq 4096", "[cuda][attention][flash]") { check_case(64, 1, 4096, 2, 1); }

TEST_CASE("CUDA flash attention at head dim 32 (the test models')", "[cuda][attention][flash]") {
  for (const int R : {1, 2, 4})
    for (const int T : {37, 200}) check_case(32, 2, T, 2 * R, 2);
}

// Row 0: BOS at 0, one-token documents (5, 6, 7; 130, 131), a boundary on a tile boundary (64) and
// off one (100), the last token alone (149); row 1: no BOS; row 2: first BOS at 70, then 128, 129.
TEST_CASE("CUDA flash attention with document masking matches the CPU reference", "[cuda][attention][flash]") {
  const Bos bos = {{0, 5, 6, 7, 64, 100, 130, 131, 149}, {}, {70, 128, 129}};
  for (const int Hd : {64, 128})
    for (const int R : {1, 2, 4})
      for (const int T : {150, 200}) check_case(Hd, 3, T, 2 * R, 2, bos);
  check_case(32, 3, 150, 4, 2, bos);
}

// T 4096, many documents: row 0 cycles through lengths 1, 37, 1, 1, 256, 64, 500, 3, 129 from a BOS
// at 0; row 1 has no BOS before 1000, then documents of exactly 64 (on the tiles) and, from 3000,
// one-token documents for 20 positions, then one to the end.
TEST_CASE("CUDA flash attention with many documents at seq 4096", "[cuda][attention][flash]") {
  const int T = 4096;
  Bos bos(2);
  const int lengths[] = {1, 37, 1, 1, 256, 64, 500, 3, 129};
  for (int t = 0, i = 0; t < T; t += lengths[i++ % 9]) bos[0].push_back(t);
  for (int t = 1000; t < 3000; t += 64) bos[1].push_back(t);
  for (int t = 3000; t <= 3020; ++t) bos[1].push_back(t);
  check_case(64, 2, T, 4, 2, bos);
  check_case(128, 1, T, 4, 1, bos);
}

// The atomic backward: the plain cases (fewer lengths), the document cases, and seq 4096 with and
// without documents.
TEST_CASE("CUDA flash attention's atomic backward matches the CPU reference", "[cuda][attention][flash]") {
  for (const int Hd : {64, 128})
    for (const int R : {1, 2, 4})
      for (const int T : {1, 37, 200, 1000}) check_case(Hd, T <= 200 ? 2 : 1, T, 2 * R, 2, {}, false);
  for (const int R : {1, 2, 4}) check_case(32, 2, 200, 2 * R, 2, {}, false);
  const Bos bos = {{0, 5, 6, 7, 64, 100, 130, 131, 149}, {}, {70, 128, 129}};
  for (const int Hd : {64, 128})
    for (const int R : {1, 2, 4}) check_case(Hd, 3, 150, 2 * R, 2, bos, false);
  check_case(32, 3, 150, 4, 2, bos, false);
  check_case(64, 1, 4096, 2, 1, {}, false);
  Bos many(1);
  const int lengths[] = {1, 37, 1, 1, 256, 64, 500, 3, 129};
  for (int t = 0, i = 0; t < 4096; t += lengths[i++ % 9]) many[0].push_back(t);
  check_case(128, 1, 4096, 4, 1, many, false);
}
