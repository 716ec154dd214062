// pgolf-frugendorff: the Frugendorff (parameter-golf PR #498; pgolf::presets::frugendorff): 6 blocks
// looped twice at d 640, MLP 4x, loop positions, U-Net per loop, BigramHash, SmearGate, value
// embedding, XSA, partial NTK RoPE, LN scale, orthogonal init; 28,224,320 parameters. Its recipe:
// 786,432 tokens per step at seq 2048, Muon 0.025 (momentum 0.92 -> 0.99 over 1500 steps, weight
// decay 0.04), AdamW 0.035 / 0.025 (weight decay 0.04), gradient clip 0.3, wall-clock warmdown 3500.
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
  return pgolf::app::gpt_main<pgolf::presets::frugendorff>(
      argc, argv,
      {.name = "pgolf-frugendorff", .description = "pgolf-frugendorff: 6 blocks x 2 loops at d 640 (PR #498)", .defaults = r});
}
