// pgolf-records-stack: the strongest records' architecture (parameter-golf PR #2135;
// pgolf::presets::records_stack): 11 blocks at d 512 with blocks 3..5 run three times from 35% of
// training, parallel lanes from block 8, XSA everywhere, SparseAttnGate, SmearGate, gated U-Net skips,
// AsymLogit, sp8192; 35,945,673 parameters. Its recipe (TECHNIQUES.md 13.2) as far as pgolf has it:
// 786,432 tokens per step at seq 2048; Muon 0.028 with MuonEq-R and Polar Express coefficients
// (momentum 0.92 -> 0.97 over 1500 steps, weight decay 0.095); Adam 0.03 / 0.02 with beta2 0.99 and
// weight decay 0.02 on both Adam groups (the record uses 0.085 on the embedding); clip 0.3; the loop
// on at 35%; warmdown over the last 85% of the run (of the wall clock when capped) to a floor of 0.1;
// EMA 0.9965, scored and exported; GPTQ int6 on every block matrix and int7 on the embedding, from
// 32 calibration batches, with a rank-4 LQER correction of the 3 worst tensors; brotli-11. Not here:
// the record's lrzip grouping, its test-time LoRA and its n-gram tilt at evaluation.
//
//   pgolf-records-stack train --data-path DIR --tokenizer-path FILE   (sp8192 data)
#include <pgolf/pgolf.hpp>
#include <pgolf/presets/records_stack.hpp>

int main(int argc, char** argv) {
  pgolf::TrainConfig r;
  r.train_batch_tokens = 786432;
  r.train_seq_len = 2048;
  r.warmdown_fraction = 0.85;
  r.min_lr_scale = 0.1;
  r.matrix_lr = 0.028;
  r.scalar_lr = 0.02;
  r.tied_embed_lr = 0.03;
  r.muon_momentum = 0.97;
  r.muon_momentum_warmup_start = 0.92;
  r.muon_momentum_warmup_steps = 1500;
  r.muon_weight_decay = 0.095;
  r.muon_row_normalize = true;
  r.muon_polar_express = true;
  r.beta2 = 0.99;
  r.weight_decay = 0.02;
  r.grad_clip_norm = 0.3;
  r.loop_enable_at = 0.35;
  r.ema_decay = 0.9965;
  r.quant = "gptq";
  r.quant_bits = 6;
  r.embed_quant = "gptq";
  r.embed_bits = 7;
  r.gptq_calib_batches = 32;
  r.lqer_rank = 4;
  r.lqer_tensors = 3;
  r.codec = pgolf::Codec::brotli;
  return pgolf::app::gpt_main<pgolf::presets::records_stack>(
      argc, argv,
      {.name = "pgolf-records-stack", .description = "pgolf-records-stack: the PR #2135 architecture (11x512, looped, lanes)",
       .defaults = r});
}
