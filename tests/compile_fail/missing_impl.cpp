// Compiled by the compile-fail tests: a model whose block program holds a component with no
// implementation for the backend must not compile, and the error must name the component (case 1);
// the same model without it builds (case 0).
#include "pgolf/model/gpt.hpp"

#ifndef PGOLF_BAD_SPEC
#error "define PGOLF_BAD_SPEC"
#endif

// A technique declared (registers, no tensors) but not yet implemented for the CPU backend.
struct NotYetOnTheCpu {
  static constexpr pgolf::Regs reads = pgolf::regs<pgolf::Reg::x>, writes = pgolf::regs<pgolf::Reg::x>;
  template <class A>
  static constexpr int width(pgolf::Reg) { return A::dim; }
};

constexpr pgolf::GptSpec kSpec{.vocab = 64, .dim = 32, .depth = {.layers = 2},
                               .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 8}};

struct Arch : pgolf::GptArch<kSpec> {
#if PGOLF_BAD_SPEC == 1
  using Block = pgolf::cat_t<pgolf::Program<NotYetOnTheCpu>, pgolf::GptArch<kSpec>::Block>;
#endif
};

int main() {
  pgolf::LanguageModel<Arch, pgolf::Cpu<float>> model(1, 4);
  return model.num_params > 0 ? 0 : 1;
}
