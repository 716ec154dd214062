#pragma once

#include <vector>

#include "pgolf/train/config.hpp"

// Runs the Trainer on GptCuda<kSmall> with the given config; returns the train losses per step and
// the final val_bpb.
struct GpuRun {
  std::vector<double> losses;
  double val_bpb = 0;
};
GpuRun gpu_train_small(const pgolf::TrainConfig& cfg);
