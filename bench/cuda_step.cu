// CUDA step benchmark: full training steps of GptCuda (forward, backward, Muon, Adam) for a spec:
// the baseline (9x512, seq 1024, 524,288 tokens per step by gradient accumulation), the Frugendorff
// (6x2 at d 640) or the records' stack (11 blocks, looped: --phase 1), with a per-phase table. A
// benchmark, never a test: figures depend on the machine. Timing: device events after warm-up steps;
// median and spread over the timed steps. Tokens are drawn from a skewed distribution (a few hot ids,
// many rare ones, as in text).
//
//   pgolf-bench-cuda-step [--spec baseline|frugendorff|records_stack] [--phase P] [--batch-tokens N]
//                         [--seq T] [--micro-seqs B] [--steps S] [--warmup W] [--nccl]
#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>

#include "cuda_step.cuh"

int main(int argc, char** argv) {
  pgolf::bench::StepOptions o;
  std::string spec = "baseline";
  CLI::App app("pgolf CUDA training-step benchmark", "pgolf-bench-cuda-step");
  app.add_option("--spec", spec, "model")->check(CLI::IsMember({"baseline", "frugendorff", "records_stack"}))->capture_default_str();
  app.add_option("--phase", o.phase, "depth schedule: 0, or 1 for a looped model's loop-on schedule")
      ->check(CLI::Range(0, 1))
      ->capture_default_str();
  app.add_option("--batch-tokens", o.batch_tokens)->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--seq", o.seq)->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--micro-seqs", o.micro, "sequences per micro-batch")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--steps", o.steps)->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--warmup", o.warmup)->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_flag("--nccl", o.nccl, "all-reduce the gradients through NCCL at world size 1 every step (the communicator's cost)");
  CLI11_PARSE(app, argc, argv);
  try {
    if (pgolf::cuda::device_count() == 0) {
      std::printf("SKIP: no CUDA device\n");
      return 0;
    }
    if (spec == "frugendorff") return pgolf::bench::run_frugendorff(o);
    if (spec == "records_stack") return pgolf::bench::run_records_stack(o);
    return pgolf::bench::run_baseline(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
