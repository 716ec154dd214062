// pgolf::ablation: how a variant source takes part in an ablation grid (pgolf_add_ablation).
//
//   constexpr pgolf::GptSpec kBase{...};
//   constexpr pgolf::GptSpec kSpec = pgolf::ablation::apply(kBase);
//
// Built alone (pgolf_add_variant), apply() is the identity. Built as one point of a grid,
// PGOLF_ABLATION_HEADER names a header generated for that point that defines
//   constexpr pgolf::GptSpec pgolf_ablate(pgolf::GptSpec s)   (the point's field overrides)
//   inline constexpr char pgolf_ablation_point[]               ("mlp.mult=2 depth.loops=2")
// and apply() returns pgolf_ablate(base). point() is that string ("" outside a grid); the
// variant command line prints it in `info` and the training log.
#pragma once

#include "pgolf/model/gpt_spec.hpp"

#ifdef PGOLF_ABLATION_HEADER
#include PGOLF_ABLATION_HEADER
#endif

namespace pgolf::ablation {

constexpr GptSpec apply(GptSpec base) {
#ifdef PGOLF_ABLATION_HEADER
  return ::pgolf_ablate(base);
#else
  return base;
#endif
}

constexpr const char* point() {
#ifdef PGOLF_ABLATION_HEADER
  return ::pgolf_ablation_point;
#else
  return "";
#endif
}

}  // namespace pgolf::ablation
