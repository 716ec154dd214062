// Standard (non-overlapping) evaluation, as the reference's eval_val: the validation stream is cut
// into windows of seq_len, x = window, y = window shifted by one, every position scored (the first
// of each window with no context). Sequences are batched by the model's batch size; a short last
// batch is padded with copies of its final sequence whose scores are not counted.
// Data parallel (rank of world): this rank scores the sequences [S*rank/world, S*(rank+1)/world),
// as the reference splits them; the caller sums the ranks' meters.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "pgolf/core/error.hpp"
#include "pgolf/data/byte_tables.hpp"
#include "pgolf/train/val_bpb.hpp"

namespace pgolf {

template <class Model>
BpbMeter evaluate(Model& model, std::span<const std::int32_t> val_tokens, const data::ByteTables& tables, int rank = 0,
                  int world = 1) {
  const std::size_t T = std::size_t(model.seq_len()), B = std::size_t(model.batch());
  PGOLF_CHECK(val_tokens.size() > T, "evaluate: ", val_tokens.size(), " validation tokens, fewer than one sequence");
  const std::size_t all = (val_tokens.size() - 1) / T;
  const std::size_t first = all * std::size_t(rank) / std::size_t(world);
  const std::size_t sequences = all * std::size_t(rank + 1) / std::size_t(world);
  BpbMeter meter;
  std::vector<std::int32_t> x(B * T), y(B * T);
  for (std::size_t s0 = first; s0 < sequences; s0 += B) {
    const std::size_t rows = std::min(B, sequences - s0);
    for (std::size_t r = 0; r < B; ++r) {
      const std::size_t s = s0 + std::min(r, rows - 1);
      std::copy_n(val_tokens.begin() + s * T, T, x.begin() + r * T);
      std::copy_n(val_tokens.begin() + s * T + 1, T, y.begin() + r * T);
    }
    model.forward(x, y);
    const auto nll = model.row_losses();
    meter.add(tables, std::span<const std::int32_t>(x).first(rows * T), std::span<const std::int32_t>(y).first(rows * T),
              nll.first(rows * T));
  }
  return meter;
}

}  // namespace pgolf
