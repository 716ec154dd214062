// pgolf-frugendorff: the Frugendorff (parameter-golf PR #498; pgolf::presets::frugendorff): 6 blocks
// looped twice at d 640, MLP 4x, loop positions, U-Net per loop, BigramHash, SmearGate, value
// embedding, XSA, partial NTK RoPE, LN scale, orthogonal init; 28,224,320 parameters. Its recipe:
// 786,432 tokens per step at seq 2048, Muon 0.025 (momentum 0.92 -> 0.99 over 1500 steps, weight
// decay 0.04), AdamW 0.035 / 0.025 (weight decay 0.04), gradient clip 0.3, wall-clock warmdown 3500;
// EMA 0.997 (scored and exported), late int6 QAT from an LR multiplier of 0.15, late replay of the last
// 100 micro-batches (2 epochs at 0.1x the LR, after the clock as the record did); export GPTQ-lite int6
// on the block matrices, int8 on the embedding, zstd-22; sliding-window scores at stride 64
// (TECHNIQUES.md 4.12, 4.14, 5.4, 6, 7.5). Not on by default: its self-distillation (`--distill-steps
// 50 --distill-per-sequence`, the CPU backend only) and its SWA, which the record collected and never
// used.
//
//   pgolf-frugendorff train --data-path DIR --tokenizer-path FILE
//   pgolf-frugendorff info
#include <pgolf/pgolf.hpp>
#include <pgolf/presets/frugendorff.hpp>

int main(int argc, char** argv) {
  pgolf::TrainConfig r;
  r.train_batch_tokens = 786432;
  r.train_seq_len = 2048;
  r.warmdown_iters = 3500;
  r.matrix_lr = 0.025;
  r.scalar_lr = 0.025;
  r.tied_embed_lr = 0.035;
  r.muon_momentum = 0.99;
  r.muon_momentum_warmup_start = 0.92;
  r.muon_momentum_warmup_steps = 1500;
  r.muon_weight_decay = 0.04;
  r.weight_decay = 0.04;
  r.grad_clip_norm = 0.3;
  r.ema_decay = 0.997;
  r.qat_threshold = 0.15;
  r.qat_bits = 6;
  r.replay_batches = 100;
  r.quant = "gptq-lite";
  r.quant_bits = 6;
  r.codec = pgolf::Codec::zstd;
  r.eval_stride = 64;
  return pgolf::app::gpt_main<pgolf::presets::frugendorff>(
      argc, argv,
      {.name = "pgolf-frugendorff", .description = "pgolf-frugendorff: 6 blocks x 2 loops at d 640 (PR #498)", .defaults = r});
}
