#pragma once

#include <vector>

#include "pgolf/train/config.hpp"
#include "pgolf/train/val_bpb.hpp"

// Runs the Trainer on GptCuda<kSmall> with the given config; returns the train losses per step and
// the final val_bpb.
struct GpuRun {
  std::vector<double> losses;
  double val_bpb = 0;
};
GpuRun gpu_train_small(const pgolf::TrainConfig& cfg);

// Trains GptCuda<kSmall> for cfg's steps, then scores the weights three ways on the GPU: standard,
// sliding window with stride = train_seq_len, and sliding window with cfg.eval_stride (the
// Trainer's final scores); with the trained weights in the table layout for the CPU to score.
struct GpuEvals {
  pgolf::BpbMeter standard, sliding_window_stride, sliding;
  std::vector<float> params;
};
GpuEvals gpu_evaluate_small(const pgolf::TrainConfig& cfg);
