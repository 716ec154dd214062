#include "train_kernels.hpp"

#include "cuda_specs.hpp"
#include "pgolf/model/gpt_cuda.cuh"
#include "pgolf/train/trainer.hpp"

GpuRun gpu_train_small(const pgolf::TrainConfig& cfg) {
  pgolf::RunLog quiet;
  pgolf::Trainer<pgolf::GptCuda<cuda_test::kSmall>> tr(cfg, quiet);
  const auto r = tr.run();
  GpuRun out;
  for (const auto& t : r.train) out.losses.push_back(t.train_loss);
  out.val_bpb = r.val.back().val_bpb;
  return out;
}

GpuEvals gpu_evaluate_small(const pgolf::TrainConfig& cfg) {
  pgolf::RunLog quiet;
  pgolf::Trainer<pgolf::GptCuda<cuda_test::kSmall>> tr(cfg, quiet);
  tr.run();
  GpuEvals out;
  out.standard = tr.validate();
  out.sliding_window_stride = tr.data().evaluate_sliding(tr.model(), cfg.train_seq_len);
  out.sliding = tr.validate_final();
  out.params = tr.model().params_host();
  return out;
}
