// pgolf-bench-cuda-step's frugendorff model, in a translation unit of its own.
#include "cuda_step.cuh"

namespace pgolf::bench {
int run_frugendorff(const StepOptions& o) {
  PGOLF_CHECK(o.phase < GptCuda<presets::frugendorff>::kPhases, "--phase ", o.phase, ": the frugendorff model has one schedule");
  return run_steps<presets::frugendorff>("frugendorff", o);
}
}  // namespace pgolf::bench
