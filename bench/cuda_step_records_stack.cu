// pgolf-bench-cuda-step's records_stack model, in a translation unit of its own.
#include "cuda_step.cuh"

namespace pgolf::bench {
int run_records_stack(const StepOptions& o) {
  PGOLF_CHECK(o.phase < GptCuda<presets::records_stack>::kPhases, "--phase ", o.phase, ": the records_stack model has one schedule");
  return run_steps<presets::records_stack>("records_stack", o);
}
}  // namespace pgolf::bench
