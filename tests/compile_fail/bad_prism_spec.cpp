// Compiled once per PGOLF_BAD_SPEC case by the compile-fail tests: each impossible PrismSpec must be
// rejected at compile time by a static_assert whose message names the offending field. Case 0 is
// the control: a valid spec that must compile.
#include "pgolf/model/prism.hpp"

#ifndef PGOLF_BAD_SPEC
#error "define PGOLF_BAD_SPEC"
#endif

using pgolf::ExpertKind;

constexpr pgolf::PrismSpec kSpec = [] {
  pgolf::PrismSpec s{.vocab = 16, .d_model = 8, .layers = 2, .num_rates = 4, .num_slots = 2, .d_mem = 4};
#if PGOLF_BAD_SPEC == 1
  s.num_rates = 3;  // 8 % 3 != 0
#elif PGOLF_BAD_SPEC == 2
  s.router_topk = 4;  // 3 experts
#elif PGOLF_BAD_SPEC == 3
  s.experts = {.count = 2, .kinds = {ExpertKind::neural, ExpertKind::neural}};
#elif PGOLF_BAD_SPEC == 4
  s.delta_max = 0.1;  // below delta0 = ln 2
#elif PGOLF_BAD_SPEC == 5
  s.router_epsilon = 1.5;
#endif
  return s;
}();

int main() {
  pgolf::Prism<kSpec, float> model(1, 4);
  return model.num_params > 0 ? 0 : 1;
}
