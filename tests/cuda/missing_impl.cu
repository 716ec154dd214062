// Compiled by the CUDA compile-fail test: the PRISM harness's Transformer baseline is built from
// components with no CUDA implementation (its weighted norms among them), so instantiating it on the
// CUDA backend must fail and name one (case 1). The GPT on the same backend builds (case 0).
#include "pgolf/model/gpt_cuda.cuh"
#include "pgolf/model/prism_baselines.hpp"

#ifndef PGOLF_BAD_SPEC
#error "define PGOLF_BAD_SPEC"
#endif

int main() {
#if PGOLF_BAD_SPEC == 1
  using Arch = pgolf::BaselineArch<pgolf::prism_presets::toy(256), pgolf::BaselineMixer::transformer>;
  pgolf::LanguageModel<Arch, pgolf::Cuda> model(1, 8);
#else
  constexpr pgolf::GptSpec kSpec{.vocab = 256, .dim = 64, .depth = {.layers = 2},
                                 .attention = {.heads = 2, .kv_heads = 1, .rope_dims = 16}};
  pgolf::GptCuda<kSpec> model(1, 8);
#endif
  return model.num_params > 0 ? 0 : 1;
}
