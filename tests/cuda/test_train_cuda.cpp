// The same Trainer, config and data on both backends: GptCuda (bf16 products) against the CPU's
// Gpt<Spec, float>, 100 steps of the small spec on the bundled FineWeb shard (8 x 256 tokens per
// step, Muon + Adam with the reference's learning rates). Bound: the loss curves agree within 3%
// at every logged step after the first ten and within 2% at the end, and the final val_bpb within
// 2%: bf16 rounding moves individual steps, not the trajectory.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "../train/train_fixture.hpp"
#include "cuda_specs.hpp"
#include "pgolf/model/gpt.hpp"
#include "pgolf/train/sliding_eval.hpp"
#include "pgolf/train/trainer.hpp"
#include "train_kernels.hpp"

TEST_CASE("Training on the GPU follows the CPU's loss curve for 100 steps", "[cuda][train]") {
  pgolf::TrainConfig c = pgolf::test::small_config();  // the bundled data, no periodic val or logs
  c.iterations = 100;
  c.warmdown_iters = 30;
  c.train_batch_tokens = 2048;
  c.train_seq_len = 256;
  c.micro_batch_tokens = 2048;
  c.muon_momentum_warmup_steps = 50;
  c.val_tokens = 32769;
  const GpuRun gpu = gpu_train_small(c);

  pgolf::RunLog quiet;
  pgolf::Trainer<pgolf::Gpt<cuda_test::kSmall, float>> tr(c, quiet);
  const auto cpu = tr.run();
  REQUIRE(gpu.losses.size() == cpu.train.size());
  double worst = 0;
  for (std::size_t i = 0; i < gpu.losses.size(); ++i) {
    const double rel = std::abs(gpu.losses[i] - cpu.train[i].train_loss) / cpu.train[i].train_loss;
    if (i % 10 == 0 || i + 1 == gpu.losses.size())
      std::printf("  step %3zu  cpu %.4f  gpu %.4f  rel %.4f\n", i + 1, cpu.train[i].train_loss, gpu.losses[i], rel);
    if (i >= 10) worst = std::max(worst, rel);
  }
  const double last = std::abs(gpu.losses.back() - cpu.train.back().train_loss) / cpu.train.back().train_loss;
  std::printf("  worst step-wise relative difference after step 10: %.4f; final val_bpb cpu %.4f gpu %.4f\n", worst,
              cpu.val.back().val_bpb, gpu.val_bpb);
  CHECK(gpu.losses.front() < gpu.losses.back() + 10);  // finite and sane
  CHECK(gpu.losses.back() < gpu.losses.front() - 1.0);  // it learned
  CHECK(worst < 0.03);
  CHECK(last < 0.02);
  CHECK(std::abs(gpu.val_bpb - cpu.val.back().val_bpb) < 0.02 * cpu.val.back().val_bpb);
}

// Sliding-window evaluation through the same generic template on the GPU: stride = window scores
// what the standard evaluation scores, and a stride of 64 scores every token once, as the CPU
// model does on the same weights (bf16 products: the sums agree to a bound, the counts exactly).
TEST_CASE("Sliding-window evaluation on the GPU matches the standard one and the CPU's", "[cuda][train]") {
  pgolf::TrainConfig c = pgolf::test::small_config();
  c.iterations = 20;
  c.train_batch_tokens = 2048;
  c.train_seq_len = 256;
  c.micro_batch_tokens = 2048;
  c.val_tokens = 8193;
  c.eval_stride = 64;
  const GpuEvals gpu = gpu_evaluate_small(c);
  CHECK(gpu.standard.tokens == 8192);
  CHECK(gpu.sliding_window_stride.tokens == gpu.standard.tokens);
  CHECK(gpu.sliding_window_stride.bytes == gpu.standard.bytes);
  CHECK(std::abs(gpu.sliding_window_stride.loss_sum - gpu.standard.loss_sum) <= 1e-9 * gpu.standard.loss_sum);
  CHECK(gpu.sliding.tokens == 8192);
  CHECK(gpu.sliding.bytes == gpu.standard.bytes);

  pgolf::FineWebData data(c, cuda_test::kSmall.vocab);
  pgolf::Gpt<cuda_test::kSmall, float> cpu(c.micro_batch_rows(), c.train_seq_len);
  cpu.set_params(gpu.params);
  const pgolf::BpbMeter want = pgolf::evaluate_sliding(cpu, data.val_tokens(), data.tables(), 64);
  std::printf("  sliding stride 64: cpu val_bpb %.5f  gpu %.5f  (standard gpu %.5f)\n", want.val_bpb(),
              gpu.sliding.val_bpb(), gpu.standard.val_bpb());
  CHECK(gpu.sliding.tokens == want.tokens);
  CHECK(gpu.sliding.bytes == want.bytes);
  CHECK(std::abs(gpu.sliding.val_bpb() - want.val_bpb()) < 0.01 * want.val_bpb());
}
