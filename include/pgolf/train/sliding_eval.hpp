// Sliding-window evaluation (TECHNIQUES.md 6; the records' eval_val_sliding, PRISM's fixed variant).
// With n = val_tokens.size() - 1 scored positions (targets val[1..n], inputs val[0..n-1]), window L
// and stride S, windows start at ws = 0, S, 2S, ...; a window covers positions [ws, min(ws + L, n)),
// the model runs on all of it and scores only its last S positions, [ws + L - S, min(ws + L, n)),
// except the first window, which scores all of its positions. Only windows with ws = 0 or
// ws + (L - S) < n exist (the fixed variant), so the scored ranges tile [0, n) and EVERY position is
// scored exactly once, each one after ws > 0 with at least L - S tokens of context. The Frugendorff's
// variant (every ws < n, tail windows scoring all they hold) re-scores some tokens near the end; it
// is not implemented. Stride L is the standard evaluation (evaluate.hpp) on a stream of whole
// windows. Cost: about n / S forwards of L positions, L / S times the standard evaluation.
//
// L is the model's seq_len: the model is built for one shape. A window other than train_seq_len
// (--eval-seq-len, the records' eval_seq_len) is a second model of that length holding the same
// weights, which Trainer::validate_final builds and passes here.
//
// Windows are batched by the model's batch size; a short batch is padded with copies of its last
// window whose scores are not counted. A tail window shorter than L is padded after its end (inputs
// token 0, targets -1: not scored); the model is causal, so the scores of its real positions do not
// depend on what follows them. Positions a window does not score get target -1 as well.
// Data parallel (rank of world): this rank evaluates the windows [W*rank/world, W*(rank+1)/world)
// of the W windows, as the records split them; the caller sums the ranks' meters.
//
// Generic over the backend: it uses only seq_len(), batch(), forward(ids, targets) and row_losses()
// (a host span of the per-position losses on both the CPU and the CUDA model).
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "pgolf/core/error.hpp"
#include "pgolf/data/byte_tables.hpp"
#include "pgolf/train/val_bpb.hpp"

namespace pgolf {

// The windows of the fixed variant: their count and, for window k, its start, length and the first
// position it scores (relative to its start).
struct SlidingWindows {
  std::size_t n = 0, L = 0, S = 0;

  SlidingWindows(std::size_t positions, std::size_t window, std::size_t stride) : n(positions), L(window), S(stride) {
    PGOLF_CHECK(L > 0, "sliding-window evaluation: the window (the model's seq_len) must be positive");
    PGOLF_CHECK(S >= 1 && S <= L, "sliding-window evaluation: eval_stride must be in 1..", L,
                " (the window, the model's seq_len), got ", S);
    PGOLF_CHECK(n >= 1, "sliding-window evaluation: the validation stream has no position to score");
  }
  // ws = 0 always; ws = kS (k >= 1) while kS + L - S < n, i.e. k < (n - L + S) / S.
  std::size_t count() const { return n + S > L ? (n + S - L + S - 1) / S : 1; }
  std::size_t start(std::size_t k) const { return k * S; }
  std::size_t length(std::size_t k) const { return std::min(L, n - start(k)); }
  std::size_t first_scored(std::size_t k) const { return k == 0 ? 0 : L - S; }
};

// stride: 1..model.seq_len(). val_tokens: the stream (n + 1 tokens). rank/world: this rank's share.
template <class Model>
BpbMeter evaluate_sliding(Model& model, std::span<const std::int32_t> val_tokens, const data::ByteTables& tables,
                          int stride, int rank = 0, int world = 1) {
  PGOLF_CHECK(world >= 1 && rank >= 0 && rank < world, "evaluate_sliding: rank ", rank, " of world ", world);
  PGOLF_CHECK(stride >= 1, "evaluate_sliding: eval_stride must be in 1..", model.seq_len(), " (the model's seq_len), got ",
              stride);
  PGOLF_CHECK(val_tokens.size() >= 2, "evaluate_sliding: ", val_tokens.size(),
              " validation tokens, need at least two (an input and its target)");
  const SlidingWindows win(val_tokens.size() - 1, std::size_t(model.seq_len()), std::size_t(stride));
  const std::size_t L = win.L, B = std::size_t(model.batch()), W = win.count();
  const std::size_t first = W * std::size_t(rank) / std::size_t(world);
  const std::size_t last = W * std::size_t(rank + 1) / std::size_t(world);
  BpbMeter meter;
  std::vector<std::int32_t> x(B * L), y(B * L);
  for (std::size_t k0 = first; k0 < last; k0 += B) {
    const std::size_t rows = std::min(B, last - k0);
    for (std::size_t r = 0; r < B; ++r) {
      const std::size_t k = k0 + std::min(r, rows - 1);
      const std::size_t ws = win.start(k), len = win.length(k), s = win.first_scored(k);
      auto xr = x.begin() + std::ptrdiff_t(r * L), yr = y.begin() + std::ptrdiff_t(r * L);
      std::copy_n(val_tokens.begin() + std::ptrdiff_t(ws), len, xr);
      std::fill(xr + std::ptrdiff_t(len), xr + std::ptrdiff_t(L), 0);
      std::fill(yr, yr + std::ptrdiff_t(L), -1);
      if (r < rows)  // a padding row scores nothing
        std::copy_n(val_tokens.begin() + std::ptrdiff_t(ws + s + 1), len - s, yr + std::ptrdiff_t(s));
    }
    model.forward(std::span<const std::int32_t>(x), std::span<const std::int32_t>(y));
    const auto nll = model.row_losses();
    for (std::size_t r = 0; r < rows; ++r) {
      const std::size_t k = k0 + r, len = win.length(k), s = win.first_scored(k);
      const std::size_t at = r * L + s, count = len - s;
      meter.add(tables, std::span<const std::int32_t>(x).subspan(at, count),
                std::span<const std::int32_t>(y).subspan(at, count), nll.subspan(at, count));
    }
  }
  return meter;
}

}  // namespace pgolf
