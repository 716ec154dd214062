// pgolf-bench-cuda-step's baseline model, in a translation unit of its own.
#include "cuda_step.cuh"

namespace pgolf::bench {
int run_baseline(const StepOptions& o) {
  PGOLF_CHECK(o.phase < GptCuda<pgolf::GptSpec{}>::kPhases, "--phase ", o.phase, ": the baseline model has one schedule");
  return run_steps<pgolf::GptSpec{}>("baseline", o);
}
}  // namespace pgolf::bench
