// pgolf-tiny: a small preset of the reference GPT for CPU runs: 4 layers x 128, 4 heads and 2 KV
// heads (head dim 32), relu^2 MLP x2, tied embedding, vocab 1024; seq 256. The run-time defaults
// are sized so `pgolf-tiny train` finishes in a few minutes on 2 cores and shows val_bpb falling
// on the bundled FineWeb validation shard (scored on its first 131,072 tokens by default; pass
// --val-tokens 0 for all of it). Everything else is the baseline's recipe. It is also the base of
// the example ablation grid (examples/CMakeLists.txt, pgolf_add_ablation): apply() is the identity
// here and a point's overrides there.
#include <pgolf/app/ablation.hpp>
#include <pgolf/pgolf.hpp>

constexpr pgolf::GptSpec kTiny = pgolf::ablation::apply(
    {.vocab = 1024, .dim = 128, .depth = {.layers = 4}, .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 32}});

int main(int argc, char** argv) {
  pgolf::TrainConfig preset;
  preset.iterations = 300;
  preset.warmdown_iters = 100;
  preset.max_wallclock_seconds = 0;  // warmdown by iterations
  preset.val_loss_every = 100;
  preset.train_log_every = 25;
  preset.train_batch_tokens = 8192;
  preset.train_seq_len = 256;
  preset.micro_batch_tokens = 8192;
  preset.muon_momentum_warmup_steps = 100;
  preset.val_tokens = 131072;
  return pgolf::app::gpt_main<kTiny>(
      argc, argv,
      {.name = "pgolf-tiny", .description = "pgolf-tiny: a 4x128 reference GPT for CPU runs", .defaults = preset});
}
