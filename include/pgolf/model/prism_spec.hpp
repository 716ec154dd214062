// pgolf::PrismSpec: the compile-time description of a PRISM variant (../shared PRISM.md; the
// public PyTorch project AFKmoney/prism). A structural class type used as a non-type template
// parameter, like GptSpec. Defaults are the reference's PrismConfig.
//
//   constexpr pgolf::PrismSpec toy{.vocab = 12, .d_model = 64, .layers = 3, .num_slots = 16};
//   pgolf::Prism<toy> model(batch, seq_len);
//
// The expert mix is an ordered list of expert kinds; the model turns it into a Boost.Hana tuple of
// expert types per block (prism_experts.hpp), so a block's loop over its experts unrolls at compile
// time and the last block's mix (memory dropped, its writes would never be read) is a type too.
//
// Two behaviours:
//   causal    (default) the architecture made correct: a position-wise tape (position t reads only
//             what positions < t wrote), writes addressed to slots by the writer's content so slots
//             differ, the tape blend fraction taken over the sequence's own positions up to t (no
//             coupling across the batch), no dead argument slice or erase gate.
//   reference reproduces AFKmoney/prism where it matters for its numbers: the sequence-mean write
//             applied to every slot alike, the batch-global blend fraction, the third argument head
//             computed and never used, the read entropy accumulated along the blocks.
#pragma once

#include <array>
#include <numbers>

namespace pgolf {

enum class ExpertKind : int { neural = 0, memory = 1, symbolic = 2 };
enum class PrismBehaviour : int { causal = 0, reference = 1 };

// Expert kinds of a block, in router order (the order fixes the router's output indices).
struct ExpertMix {
  int count = 3;
  std::array<ExpertKind, 3> kinds{ExpertKind::neural, ExpertKind::memory, ExpertKind::symbolic};

  constexpr bool has(ExpertKind k) const {
    for (int i = 0; i < count; ++i)
      if (kinds[std::size_t(i)] == k) return true;
    return false;
  }
  constexpr bool distinct() const {
    for (int i = 0; i < count; ++i)
      for (int j = i + 1; j < count; ++j)
        if (kinds[std::size_t(i)] == kinds[std::size_t(j)]) return false;
    return true;
  }
  // The same list without `k`.
  constexpr ExpertMix without(ExpertKind k) const {
    ExpertMix m{};
    m.count = 0;
    for (int i = 0; i < count; ++i)
      if (kinds[std::size_t(i)] != k) m.kinds[std::size_t(m.count++)] = kinds[std::size_t(i)];
    return m;
  }
};

struct PrismSpec {
  int vocab = 256;
  int d_model = 128;               // D
  int layers = 4;                  // L
  int num_rates = 4;               // K, divides D
  double delta0 = std::numbers::ln2;        // slowest decay rate of the Multi-Rate Bus
  double delta_max = 8 * std::numbers::ln2; // fastest; the K rates are log-spaced between them
  int num_slots = 32;              // S, memory tape slots
  int d_mem = 64;                  // M, slot width
  ExpertMix experts{};
  int router_topk = 1;
  double router_epsilon = 0.05;    // forward-visible soft share of every expert
  double load_balance_weight = 0.01;
  double read_entropy_weight = 0.01;
  int neural_hidden_mult = 2;      // H = mult * D
  bool tie_embeddings = true;
  double norm_eps = 1e-6;
  double init_std = 0.02;
  PrismBehaviour behaviour = PrismBehaviour::causal;

  constexpr int d_rate() const { return num_rates > 0 ? d_model / num_rates : 0; }
  constexpr int hidden() const { return neural_hidden_mult * d_model; }
  constexpr bool causal() const { return behaviour == PrismBehaviour::causal; }
  // The last-block rule: the last block drops memory (nothing reads its writes) when memory is in
  // the mix, there is more than one block and more than one kind.
  constexpr ExpertMix mix_of(int block) const {
    if (block == layers - 1 && layers > 1 && experts.count > 1 && experts.has(ExpertKind::memory))
      return experts.without(ExpertKind::memory);
    return experts;
  }
  // The symbolic library's argument heads: a1, a2 and, in the reference, the unused a3.
  constexpr int arg_heads() const { return causal() ? 2 : 3; }
};

template <PrismSpec S>
consteval bool validate_prism_spec() {
  static_assert(S.vocab > 0, "PrismSpec.vocab must be positive");
  static_assert(S.d_model > 0, "PrismSpec.d_model must be positive");
  static_assert(S.layers > 0, "PrismSpec.layers must be positive");
  static_assert(S.num_rates > 0, "PrismSpec.num_rates must be positive");
  static_assert(S.num_rates <= 0 || S.d_model % S.num_rates == 0,
                "PrismSpec.num_rates must divide PrismSpec.d_model");
  static_assert(S.delta0 > 0.0, "PrismSpec.delta0 must be positive");
  static_assert(S.delta_max >= S.delta0, "PrismSpec.delta_max must be >= PrismSpec.delta0");
  static_assert(S.num_slots > 0, "PrismSpec.num_slots must be positive");
  static_assert(S.d_mem > 0, "PrismSpec.d_mem must be positive");
  static_assert(S.experts.count >= 1 && S.experts.count <= 3, "PrismSpec.experts must list 1 to 3 expert kinds");
  static_assert(S.experts.distinct(), "PrismSpec.experts must not list a kind twice");
  static_assert(S.router_topk >= 1, "PrismSpec.router_topk must be at least 1");
  static_assert(S.router_topk <= S.experts.count, "PrismSpec.router_topk must not exceed the number of experts");
  static_assert(S.router_epsilon >= 0.0 && S.router_epsilon <= 1.0, "PrismSpec.router_epsilon must be in [0, 1]");
  static_assert(S.load_balance_weight >= 0.0, "PrismSpec.load_balance_weight must not be negative");
  static_assert(S.read_entropy_weight >= 0.0, "PrismSpec.read_entropy_weight must not be negative");
  static_assert(S.neural_hidden_mult > 0, "PrismSpec.neural_hidden_mult must be positive");
  static_assert(S.norm_eps > 0.0, "PrismSpec.norm_eps must be positive");
  static_assert(S.init_std > 0.0, "PrismSpec.init_std must be positive");
  static_assert(!(S.experts.count == 1 && S.experts.kinds[0] == ExpertKind::memory && S.layers < 2),
                "PrismSpec.layers must be at least 2 when memory is the only expert kind");
  return true;
}

// The reference's scale presets (PRISM.md 6.1), GPT-2's vocabulary rounded up to 50,304. They are
// GPU-sized; on the CPU they only compile and count their parameters.
namespace prism_presets {
inline constexpr PrismSpec tiny{.vocab = 50304, .d_model = 128, .layers = 4, .num_rates = 4, .num_slots = 16,
                                .d_mem = 64};
inline constexpr PrismSpec p300m{.vocab = 50304, .d_model = 896, .layers = 24, .num_rates = 8,
                                 .delta0 = 0.3466, .delta_max = 16.64, .num_slots = 64, .d_mem = 512,
                                 .router_topk = 2};
inline constexpr PrismSpec p350m{.vocab = 50304, .d_model = 1024, .layers = 18, .num_rates = 8, .num_slots = 32,
                                 .d_mem = 512, .router_topk = 2, .neural_hidden_mult = 3};
inline constexpr PrismSpec p1b{.vocab = 50304, .d_model = 2048, .layers = 24, .num_rates = 8, .delta0 = 0.3466,
                               .delta_max = 11.09, .num_slots = 64, .d_mem = 1024, .router_topk = 2,
                               .neural_hidden_mult = 3};
// The toy harness's model (PRISM.md 4): D 64, L 3, K 4, M 64, S 16; the vocabulary is the task's.
constexpr PrismSpec toy(int vocab, PrismBehaviour b = PrismBehaviour::causal) {
  return PrismSpec{.vocab = vocab, .d_model = 64, .layers = 3, .num_rates = 4, .num_slots = 16, .d_mem = 64,
                   .behaviour = b};
}
}  // namespace prism_presets

}  // namespace pgolf
