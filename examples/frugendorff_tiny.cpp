// pgolf-frugendorff-tiny: the Frugendorff's design at CPU scale (pgolf::presets::frugendorff_tiny: 3
// blocks x 2 loops at d 128 with every one of its techniques), trained with its recipe scaled to
// pgolf-tiny's run (300 steps of 8,192 tokens at seq 256, warmdown 100), so it finishes in minutes on
// 2 cores on the bundled data.
#include <pgolf/presets/frugendorff.hpp>  // before pgolf.hpp: an ablation point may name its constants
#include <pgolf/pgolf.hpp>

// One point of an ablation grid when built by pgolf_add_ablation (examples/CMakeLists.txt); the
// preset itself otherwise.
constexpr pgolf::GptSpec kSpec = pgolf::ablation::apply(pgolf::presets::frugendorff_tiny);

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
  r.matrix_lr = 0.025;
  r.scalar_lr = 0.025;
  r.tied_embed_lr = 0.035;
  r.muon_momentum = 0.99;
  r.muon_momentum_warmup_start = 0.92;
  r.muon_momentum_warmup_steps = 100;
  r.muon_weight_decay = 0.04;
  r.weight_decay = 0.04;
  r.grad_clip_norm = 0.3;
  return pgolf::app::gpt_main<kSpec>(
      argc, argv,
      {.name = "pgolf-frugendorff-tiny", .description = "pgolf-frugendorff-tiny: 3 blocks x 2 loops at d 128", .defaults = r});
}
