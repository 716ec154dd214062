// Learning-rate multiplier and Muon momentum warm-up, as the reference trainer computes them.
// There is no LR warm-up: the multiplier is 1, then decays linearly to 0 over the warmdown.
#pragma once

#include <algorithm>
#include <cmath>

namespace pgolf {

// The newest records' variant: warmdown_fraction > 0 replaces warmdown_iters with a fraction f of the
// run, progress p = step / iterations (elapsed / cap when capped), multiplier (1 - p) / f once
// p >= 1 - f; and min_scale floors the multiplier during the warmdown (either form).
struct WarmdownSchedule {
  long long iterations = 20000;
  long long warmdown_iters = 1200;
  double max_wallclock_ms = 600000.0;  // <= 0: warmdown by iterations instead of by wall clock
  double warmdown_fraction = 0.0;      // > 0: warmdown over this fraction of the run
  double min_scale = 0.0;              // the multiplier's floor

  // step: optimizer steps taken so far; elapsed_ms: training time so far (validation excluded).
  double multiplier(long long step, double elapsed_ms) const {
    const double m = raw_multiplier(step, elapsed_ms);
    return m < 1.0 ? std::max(m, min_scale) : m;
  }

 private:
  double raw_multiplier(long long step, double elapsed_ms) const {
    if (warmdown_fraction > 0) {
      const double p = max_wallclock_ms > 0 ? elapsed_ms / max_wallclock_ms
                                            : double(step) / double(std::max(iterations, 1LL));
      return p >= 1.0 - warmdown_fraction ? std::max((1.0 - p) / warmdown_fraction, 0.0) : 1.0;
    }
    if (warmdown_iters <= 0) return 1.0;
    if (max_wallclock_ms <= 0) {
      const long long start = std::max(iterations - warmdown_iters, 0LL);
      if (step >= start && step < iterations)
        return std::max(double(iterations - step) / double(std::max(warmdown_iters, 1LL)), 0.0);
      return 1.0;
    }
    // The decay starts when the projected remaining time equals warmdown_iters average steps.
    const double step_ms = elapsed_ms / double(std::max(step, 1LL));
    const double warmdown_ms = double(warmdown_iters) * step_ms;
    const double remaining_ms = std::max(max_wallclock_ms - elapsed_ms, 0.0);
    return remaining_ms <= warmdown_ms ? remaining_ms / std::max(warmdown_ms, 1e-9) : 1.0;
  }
};

// Linear warm-up then cosine decay to 0 (the PRISM toy harness's LambdaLR): (step + 1) / warmup
// during the warm-up, then 0.5 (1 + cos(pi (step - warmup) / (iterations - warmup))).
struct WarmupCosineSchedule {
  long long iterations = 400;
  long long warmup = 40;

  double multiplier(long long step) const {
    const long long w = std::max(warmup, 1LL);
    if (step < w) return double(step + 1) / double(w);
    const double span = double(std::max(iterations - w, 1LL));
    const double f = std::min(double(step - w) / span, 1.0);
    return 0.5 * (1.0 + std::cos(3.14159265358979323846 * f));
  }
};

struct MomentumWarmup {
  double start = 0.85;
  double end = 0.95;
  long long steps = 500;

  double at(long long step) const {
    const double f = steps > 0 ? std::min(double(step) / double(steps), 1.0) : 1.0;
    return (1.0 - f) * start + f * end;
  }
};

}  // namespace pgolf
