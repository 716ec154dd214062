// PRISM's curriculum (PRISM.md 5.2): three phases by step, neural for step < int(t1 * total), memory
// for step < int(t2 * total), symbolic after; a data source whose focus is the current phase has its
// weight multiplied by `strength` (others unchanged; the sampler normalises). A hard step function,
// as in the reference, whose docs describe smooth transitions that its code does not have.
#pragma once

#include "pgolf/core/error.hpp"
#include "pgolf/model/prism_spec.hpp"

namespace pgolf {

struct CurriculumSchedule {
  long long total_steps = 0;
  double t1_frac = 0.33, t2_frac = 0.66, strength = 3.0;

  void validate() const {
    PGOLF_CHECK(total_steps > 0, "curriculum: total_steps must be positive, got ", total_steps);
    PGOLF_CHECK(0 <= t1_frac && t1_frac <= t2_frac && t2_frac <= 1, "curriculum: need 0 <= t1_frac <= t2_frac <= 1");
    PGOLF_CHECK(strength > 0, "curriculum: strength must be positive, got ", strength);
  }
  ExpertKind phase(long long step) const {
    if (step < (long long)(t1_frac * double(total_steps))) return ExpertKind::neural;
    if (step < (long long)(t2_frac * double(total_steps))) return ExpertKind::memory;
    return ExpertKind::symbolic;
  }
  double weight(double base, ExpertKind focus, long long step) const {
    return focus == phase(step) ? base * strength : base;
  }
};

}  // namespace pgolf
