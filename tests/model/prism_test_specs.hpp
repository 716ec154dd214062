// Tiny PRISM specs shared by the PRISM model tests.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "pgolf/model/prism.hpp"
#include "../test_util.hpp"

namespace pgolf::test {

inline constexpr PrismSpec kPrismTiny{.vocab = 11, .d_model = 8, .layers = 3, .num_rates = 2, .num_slots = 3,
                                      .d_mem = 4};
inline constexpr PrismSpec kPrismTinyRef = [] {
  PrismSpec s = kPrismTiny;
  s.behaviour = PrismBehaviour::reference;
  return s;
}();
// Top-2 routing, an untied head, a wider SwiGLU.
inline constexpr PrismSpec kPrismTop2{.vocab = 13, .d_model = 8, .layers = 2, .num_rates = 4, .num_slots = 2,
                                      .d_mem = 3, .router_topk = 2, .neural_hidden_mult = 3,
                                      .tie_embeddings = false};
inline constexpr PrismSpec kPrismTop2Ref = [] {
  PrismSpec s = kPrismTop2;
  s.behaviour = PrismBehaviour::reference;
  return s;
}();
// Another mix and order: symbolic first, then memory (the last block keeps only symbolic).
inline constexpr PrismSpec kPrismMix{.vocab = 9, .d_model = 6, .layers = 3, .num_rates = 3, .num_slots = 4,
                                     .d_mem = 5,
                                     .experts = {.count = 2, .kinds = {ExpertKind::symbolic, ExpertKind::memory}}};

inline std::vector<std::int32_t> prism_tokens(std::size_t n, int vocab, std::uint32_t stream, std::uint64_t seed = 99) {
  std::vector<std::int32_t> t(n);
  for (std::size_t i = 0; i < n; ++i) t[i] = std::int32_t(uniform01(seed, stream, i) * vocab);
  return t;
}

// Reference init plus a perturbation of every tensor, so small inits hide no gradient path.
template <class Model>
void prism_randomize(Model& m, std::uint32_t stream, double scale = 1.0) {
  m.init(7);
  auto p = m.params();
  for (const auto& info : Model::param_table) {
    const auto name = info.name.view();
    const double s = name == "embed.weight" || name == "head.weight"
                         ? 1.0
                         : (info.rank == 2 ? 1.0 / std::sqrt(double(info.cols)) : 0.3);
    for (std::size_t i = 0; i < info.numel(); ++i)
      p[info.offset + i] += typename Model::Scalar(scale * s * normal01(stream, name_stream(name), i));
  }
}

}  // namespace pgolf::test
