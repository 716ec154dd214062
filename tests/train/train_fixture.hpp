// Shared setup of the trainer tests: the bundled FineWeb sample and a tiny spec.
#pragma once

#include <filesystem>
#include <string>

#include "pgolf/model/gpt.hpp"
#include "pgolf/train/config.hpp"

namespace pgolf::test {

inline constexpr GptSpec kTrainSpec{.vocab = 1024, .dim = 64, .depth = {.layers = 2},
                                    .attention = {.heads = 2, .kv_heads = 1, .rope_dims = 16}};

inline TrainConfig small_config() {
  TrainConfig c;
  c.data_path = (std::filesystem::path(PGOLF_DATA_DIR) / "fineweb_sp1024_mini").string();
  c.tokenizer_path = (std::filesystem::path(PGOLF_DATA_DIR) / "tokenizers/fineweb_1024_bpe.model").string();
  c.iterations = 4;
  c.warmdown_iters = 0;
  c.max_wallclock_seconds = 0;
  c.val_loss_every = 0;
  c.train_log_every = 0;
  c.train_batch_tokens = 1024;
  c.train_seq_len = 64;
  c.micro_batch_tokens = 1024;
  c.muon_momentum_warmup_steps = 10;
  c.val_tokens = 4097;
  return c;
}

// A fresh, empty folder under the system's temp dir (whatever an earlier run left there removed).
inline std::filesystem::path scratch_dir(const std::string& name) {
  const std::filesystem::path p = std::filesystem::temp_directory_path() / ("pgolf_test_" + name);
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p;
}

}  // namespace pgolf::test
