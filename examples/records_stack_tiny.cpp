// pgolf-records-stack-tiny: the strongest records' design at CPU scale
// (pgolf::presets::records_stack_tiny: 6 blocks at d 128, blocks 2..3 run three times from 35% of the
// run, lanes from block 4, every one of its techniques), with its recipe scaled to pgolf-tiny's run (300
// steps of 8,192 tokens at seq 256) on the bundled sp1024 data.
#include <pgolf/pgolf.hpp>
#include <pgolf/presets/records_stack.hpp>

int main(int argc, char** argv) {
  pgolf::TrainConfig r;
  r.iterations = 300;
  r.warmdown_iters = 100;
  r.max_wallclock_seconds = 0;  // warmdown by iterations
  r.val_loss_every = 100;
  r.train_log_every = 25;
  r.train_batch_tokens = 8192;
  r.train_seq_len = 256;
  r.micro_batch_tokens = 8192;
  r.val_tokens = 131072;
  r.matrix_lr = 0.028;
  r.scalar_lr = 0.02;
  r.tied_embed_lr = 0.03;
  r.muon_momentum = 0.97;
  r.muon_momentum_warmup_start = 0.92;
  r.muon_momentum_warmup_steps = 100;
  r.muon_weight_decay = 0.095;
  r.muon_row_normalize = true;
  r.beta2 = 0.99;
  r.weight_decay = 0.02;
  r.grad_clip_norm = 0.3;
  r.loop_enable_at = 0.35;
  return pgolf::app::gpt_main<pgolf::presets::records_stack_tiny>(
      argc, argv,
      {.name = "pgolf-records-stack-tiny", .description = "pgolf-records-stack-tiny: the PR #2135 design at d 128",
       .defaults = r});
}
