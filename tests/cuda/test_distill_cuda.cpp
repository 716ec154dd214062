// Self-distillation on the GPU (ops/cuda/distill.cuh, Fused<Cuda, Softcap, CrossEntropy> with a
// teacher) against the CPU reference (ops/cpu/distill.hpp on capped logits, in double):
//   - the kernels alone on the same bf16 logits: per-row cross-entropy and KL within 2e-3 absolute
//     (fast exp/log in fp32), the raw-logit gradient within 1e-2 relative L2 (bf16 output), 0 on
//     unscored rows;
//   - a whole GptCuda forward + backward distilling from a second GptCuda, against Gpt<Spec, double>
//     distilling from its twin: the bounds of test_gpt_cuda (loss 1%, gradients cosine > 0.999 and
//     relative L2 < 5e-2, q_gain's looser), both KL normalisations;
//   - the Trainer's distillation phase on the GPU ends at the CPU's val_bpb within 2%.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string_view>
#include <vector>

#include "../train/train_fixture.hpp"
#include "compare.hpp"
#include "cuda_specs.hpp"
#include "distill_kernels.hpp"
#include "pgolf/core/rng.hpp"
#include "pgolf/model/gpt.hpp"
#include "pgolf/ops/cpu/distill.hpp"
#include "pgolf/train/trainer.hpp"
#include "train_kernels.hpp"

namespace {

// The float nearest to bf16(x), round to nearest even: what the GPU reads.
float bf16_round(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, 4);
  u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
  std::memcpy(&x, &u, 4);
  return x;
}

using cuda_test::Compare;
using cuda_test::compare;

}  // namespace

TEST_CASE("The softcap + distillation kernels match the CPU reference on the same logits", "[cuda][distill]") {
  constexpr int V = 1024;
  const std::size_t rows = 40;
  const double cap = 30, tau = 2.0, grad_scale = 0.5;
  std::vector<float> zs(rows * V), zt(rows * V);
  std::vector<std::int32_t> y(rows);
  for (std::size_t i = 0; i < zs.size(); ++i) {
    zs[i] = bf16_round(float(6 * pgolf::normal01(21, 1, i)));
    zt[i] = bf16_round(float(zs[i] + 3 * pgolf::normal01(21, 2, i)));  // a teacher near the student
  }
  for (std::size_t n = 0; n < rows; ++n) y[n] = n % 7 == 3 ? -1 : std::int32_t(pgolf::uniform01(21, 3, n) * V);
  for (bool per_sequence : {false, true}) {
    INFO("per_sequence " << per_sequence);
    const pgolf::ops::cpu::DistillOptions o{.temperature = tau, .alpha = 0.7, .per_sequence = per_sequence,
                                            .batch_rows = 4};
    const std::size_t scored = pgolf::ops::cpu::scored_rows(y.data(), rows);
    const auto a = pgolf::ops::cpu::distill_scales(o, scored, grad_scale);
    const GpuDistillRows g = gpu_softcap_distill_1024(zs, zt, y, float(cap), float(1 / tau), float(a.ce), float(a.kl));

    // The reference in double on the capped logits.
    std::vector<double> cs(zs.size()), ct(zt.size()), dz(zs.size()), ce(rows);
    for (std::size_t i = 0; i < zs.size(); ++i) cs[i] = cap * std::tanh(zs[i] / cap), ct[i] = cap * std::tanh(zt[i] / cap);
    const double loss = pgolf::ops::cpu::distill_forward(cs.data(), ct.data(), y.data(), rows, V, o, ce.data());
    pgolf::ops::cpu::distill_backward(cs.data(), ct.data(), y.data(), rows, V, o, grad_scale, dz.data());
    double ce_sum = 0, kl_sum = 0, worst_ce = 0, worst_kl = 0;
    for (std::size_t n = 0; n < rows; ++n) {
      double one_ce = 0;  // one row, alpha 1, scored 1: tau^2 KL_n
      const double kl = y[n] < 0 ? 0.0
                                 : pgolf::ops::cpu::distill_forward(cs.data() + n * V, ct.data() + n * V, y.data() + n,
                                                                    1, V, {.temperature = tau, .alpha = 1.0}, &one_ce) /
                                       (tau * tau);
      worst_ce = std::max(worst_ce, std::abs(g.row_ce[n] - ce[n]));
      worst_kl = std::max(worst_kl, std::abs(g.row_kl[n] - kl));
      ce_sum += g.row_ce[n], kl_sum += g.row_kl[n];
      if (y[n] < 0) {
        CHECK(g.row_ce[n] == 0.f);
        CHECK(g.row_kl[n] == 0.f);
        for (int i = 0; i < V; ++i) REQUIRE(g.dlogits[n * V + i] == 0.f);
      }
    }
    for (std::size_t i = 0; i < dz.size(); ++i) dz[i] *= 1 - (cs[i] / cap) * (cs[i] / cap);  // through the softcap
    const double gpu_loss = pgolf::ops::cpu::distill_loss(o, ce_sum / double(scored), kl_sum, scored);
    const Compare d = compare(g.dlogits.data(), dz.data(), dz.size());
    std::printf("  distill kernels: loss cpu %.6f gpu %.6f; worst |ce| %.2e |kl| %.2e; grad cosine %.6f rel_l2 %.2e\n",
                loss, gpu_loss, worst_ce, worst_kl, d.cosine, d.rel_l2);
    CHECK(worst_ce < 2e-3);
    CHECK(worst_kl < 2e-3);
    CHECK(std::abs(gpu_loss - loss) < 1e-3 * loss);
    CHECK(d.rel_l2 < 1e-2);
  }
}

TEST_CASE("GptCuda distilling from a GptCuda teacher matches the CPU reference", "[cuda][distill][model]") {
  using Cpu = pgolf::Gpt<cuda_test::kSmall, double>;
  const int batch = 2, seq = 96;
  Cpu cpu(batch, seq), teacher(batch, seq);
  cpu.init(11);
  std::vector<double> p(cpu.params().begin(), cpu.params().end()), pt(p.size());
  for (const auto& row : Cpu::param_table) {  // random weights everywhere; the teacher near them
    const double scale = row.rank == 2 ? 1.0 / std::sqrt(double(row.cols)) : 0.2;
    for (std::size_t i = 0; i < row.numel(); ++i) {
      const double noise = scale * pgolf::normal01(5, pgolf::name_stream(row.name.view()), i);
      p[row.offset + i] = row.rank == 2 ? noise : p[row.offset + i] + noise;
      pt[row.offset + i] = p[row.offset + i] + 0.3 * scale * pgolf::normal01(6, pgolf::name_stream(row.name.view()), i);
    }
  }
  std::copy(p.begin(), p.end(), cpu.params().begin());
  std::copy(pt.begin(), pt.end(), teacher.params().begin());
  const std::size_t N = std::size_t(batch) * seq;
  std::vector<std::int32_t> ids(N), targets(N);
  for (std::size_t i = 0; i < N; ++i) {
    ids[i] = std::int32_t(pgolf::uniform01(3, 1, i) * cuda_test::kSmall.vocab);
    targets[i] = i % 9 == 4 ? -1 : std::int32_t(pgolf::uniform01(3, 2, i) * cuda_test::kSmall.vocab);
  }
  const std::vector<float> pf(p.begin(), p.end()), ptf(pt.begin(), pt.end());
  for (bool per_sequence : {false, true}) {
    INFO("per_sequence " << per_sequence);
    const pgolf::ops::cpu::DistillOptions o{.temperature = 2.0, .alpha = 0.7, .per_sequence = per_sequence};
    teacher.forward(ids, targets);
    cpu.distill_from(teacher, o);
    const double cpu_loss = cpu.forward(ids, targets);
    cpu.zero_grad();
    cpu.backward(0.5);
    cpu.clear_teacher();
    const GpuStep g = gpu_step_small_distill(pf, ptf, ids, targets, batch, seq, 0.5, o);
    const GpuStep g2 = gpu_step_small_distill(pf, ptf, ids, targets, batch, seq, 0.5, o);
    std::printf("  distill model (per_sequence %d): loss cpu %.6f gpu %.6f\n", int(per_sequence), cpu_loss, g.loss);
    CHECK(std::isfinite(g.loss));
    CHECK(std::abs(g.loss - cpu_loss) < 1e-2 * cpu_loss);
    CHECK(compare(g.row_losses.data(), cpu.row_losses().data(), N).rel_l2 < 3e-2);  // the cross-entropy
    CHECK(g.loss == g2.loss);
    CHECK(g.grads == g2.grads);
    REQUIRE(g.grads.size() == Cpu::num_params);
    for (const auto& row : Cpu::param_table) {
      const Compare c = compare(g.grads.data() + row.offset, cpu.grads().data() + row.offset, row.numel());
      INFO(row.name.c_str() << ": cosine " << c.cosine << ", rel_l2 " << c.rel_l2);
      const cuda_test::Bound f = cuda_test::floors(row.name.c_str());
      CHECK(c.cosine > f.cosine);
      CHECK(c.rel_l2 < f.rel_l2);
    }
  }
}

TEST_CASE("The Trainer's self-distillation on the GPU ends where the CPU's does", "[cuda][distill][train]") {
  pgolf::TrainConfig c = pgolf::test::small_config();
  c.iterations = 40;
  c.warmdown_iters = 10;
  c.train_batch_tokens = 2048;
  c.train_seq_len = 256;
  c.micro_batch_tokens = 2048;
  c.muon_momentum_warmup_steps = 20;
  c.val_tokens = 16385;
  c.ema_decay = 0.9;
  c.distill_steps = 10;
  c.distill_lr_scale = 0.5;  // large enough that the phase moves val_bpb measurably
  const GpuRun gpu = gpu_train_small(c);
  pgolf::TrainConfig plain = c;
  plain.distill_steps = 0;
  const GpuRun gpu_plain = gpu_train_small(plain);

  pgolf::RunLog quiet;
  pgolf::Trainer<pgolf::Gpt<cuda_test::kSmall, float>> tr(c, quiet);
  const auto cpu = tr.run();
  std::printf("  distillation: final val_bpb cpu %.4f gpu %.4f (gpu without distillation %.4f)\n",
              cpu.val.back().val_bpb, gpu.val_bpb, gpu_plain.val_bpb);
  CHECK(std::isfinite(gpu.val_bpb));
  CHECK(gpu.val_bpb != gpu_plain.val_bpb);  // the phase ran and changed the weights
  CHECK(std::abs(gpu.val_bpb - cpu.val.back().val_bpb) < 0.02 * cpu.val.back().val_bpb);
}
