// PRISM model: parameter counts against PRISM.md's closed forms, the last-block rule, causality,
// batch independence, long-sequence stability, and the reference's documented defects (which the
// reference behaviour must keep and the causal behaviour must not have).
#include <catch2/catch.hpp>

#include <cmath>
#include <string>

#include "pgolf/model/prism_modular.hpp"
#include "prism_test_specs.hpp"

using namespace pgolf;
using namespace pgolf::test;

namespace {

template <PrismSpec S>
constexpr long long count_params() {
  return (long long)table_size(prism_layout<S>().table);
}
template <PrismSpec S>
long long block_params(int b) {
  long long n = 0;
  for (const auto& p : prism_layout<S>().table)
    if (p.block == b) n += (long long)p.numel();
  return n;
}
template <PrismSpec S>
constexpr PrismSpec as_reference() {
  PrismSpec s = S;
  s.behaviour = PrismBehaviour::reference;
  return s;
}

template <class Model>
double max_logit_diff(const std::vector<double>& a, const std::vector<double>& b, int t0, int t1, int seq, int batch) {
  double m = 0;
  for (int i = 0; i < batch; ++i)
    for (int t = t0; t < t1; ++t)
      for (int v = 0; v < Model::kVocab; ++v) {
        const std::size_t k = (std::size_t(i) * seq + t) * Model::kVocab + v;
        m = std::max(m, std::abs(a[k] - b[k]));
      }
  return m;
}

}  // namespace

TEST_CASE("PRISM parameter counts match the reference's closed forms", "[forward][prism]") {
  using prism_presets::toy;
  constexpr auto ref = PrismBehaviour::reference;
  // PRISM.md 2.10: the toy model (D 64, L 3, K 4, M 64, S 16, H 128).
  CHECK(block_params<toy(12, ref)>(0) == 67150);
  CHECK(block_params<toy(12, ref)>(1) == 67150);
  CHECK(block_params<toy(12, ref)>(2) == 50508);
  CHECK(prism_block_params(64, 4, 64, 128, 3, true) == 67150);
  CHECK(prism_block_params(64, 4, 64, 128, 2, false) == 50508);
  CHECK(count_params<toy(12, ref)>() == 185640);
  CHECK(count_params<toy(18, ref)>() == 186024);
  CHECK(count_params<toy(257, ref)>() == 201320);
  // PRISM.md 6.1: the scale presets, exact.
  CHECK(count_params<as_reference<prism_presets::tiny>()>() == 7335222);
  CHECK(count_params<as_reference<prism_presets::p300m>()>() == 319073838);
  CHECK(count_params<as_reference<prism_presets::p350m>()>() == 370774338);
  CHECK(count_params<as_reference<prism_presets::p1b>()>() == 1807233454);
  // Causal: + S*D + S per memory expert (write address), - (D*D + D) per symbolic expert (no a3),
  // - (D*M + M) for block 0's erase gate.
  constexpr long long D = 64, S = 16, M = 64;
  CHECK(count_params<toy(12)>() == 185640 + 2 * (S * D + S) - 3 * (D * D + D) - (D * M + M));
  CHECK(count_params<prism_presets::p1b>() ==
        1807233454LL + 23 * (64LL * 2048 + 64) - 24 * (2048LL * 2048 + 2048) - (2048LL * 1024 + 1024));
}

TEST_CASE("PRISM last-block rule: the last block drops memory, at compile time", "[forward][prism]") {
  using M = Prism<kPrismTiny, double>;
  STATIC_REQUIRE(M::BodyBlock::kMemory);
  STATIC_REQUIRE(!M::LastBlock::kMemory);
  STATIC_REQUIRE(M::LastBlock::E == 2);
  STATIC_REQUIRE(M::kLastMix.kinds[1] == ExpertKind::symbolic);  // symbolic moves to index 1
  // Memory alone keeps memory in the last block.
  constexpr PrismSpec only_memory{.vocab = 5, .d_model = 4, .layers = 2, .num_rates = 2, .num_slots = 2, .d_mem = 2,
                                  .experts = {.count = 1, .kinds = {ExpertKind::memory}}};
  STATIC_REQUIRE(Prism<only_memory, double>::LastBlock::kMemory);
  STATIC_REQUIRE(Prism<kPrismMix, double>::LastBlock::E == 1);
}

TEST_CASE("PRISM causal: perturbing token j changes no logit before j; the reference leaks", "[forward][prism]") {
  constexpr int B = 2, T = 12, j = 6;
  auto run = [&](auto& model) {
    prism_randomize(model, 11);
    auto x = prism_tokens(B * T, kPrismTiny.vocab, 12);
    const std::vector<std::int32_t> y(B * T, 1);
    model.forward(x, y);
    const std::vector<double> before(model.logits().begin(), model.logits().end());
    for (int b = 0; b < B; ++b) x[std::size_t(b) * T + j] = (x[std::size_t(b) * T + j] + 5) % kPrismTiny.vocab;
    model.forward(x, y);
    const std::vector<double> after(model.logits().begin(), model.logits().end());
    return std::pair{before, after};
  };
  {
    Prism<kPrismTiny, double> model(B, T);
    const auto [before, after] = run(model);
    CHECK(max_logit_diff<decltype(model)>(before, after, 0, j, T, B) == 0.0);
    CHECK(max_logit_diff<decltype(model)>(before, after, j, T, T, B) > 1e-6);
  }
  {
    Prism<kPrismTinyRef, double> model(B, T);
    const auto [before, after] = run(model);
    // PRISM.md 9.3: the sequence-mean write reaches every earlier position of later blocks.
    CHECK(max_logit_diff<decltype(model)>(before, after, 0, j, T, B) > 1e-6);
  }
}

TEST_CASE("PRISM causal: an item's logits do not depend on the rest of its batch; the reference's do",
          "[forward][prism]") {
  constexpr int B = 4, T = 9;
  auto run = [&](auto& big, auto& one) {
    prism_randomize(big, 21);
    std::copy(big.params().begin(), big.params().end(), one.params().begin());
    const auto x = prism_tokens(B * T, kPrismTiny.vocab, 22);
    const std::vector<std::int32_t> y(B * T, 1);
    big.forward(x, y);
    one.forward(std::span(x).first(T), std::span(y).first(T));
    double m = 0;
    for (std::size_t k = 0; k < one.logits().size(); ++k) m = std::max(m, std::abs(big.logits()[k] - one.logits()[k]));
    return m;
  };
  {
    Prism<kPrismTiny, double> big(B, T), one(1, T);
    CHECK(run(big, one) < 1e-12);
  }
  {
    Prism<kPrismTinyRef, double> big(B, T), one(1, T);
    CHECK(run(big, one) > 1e-9);  // PRISM.md 9.4: the blend fraction is shared by the batch
  }
}

TEST_CASE("PRISM is finite at T = 4096 with the 1b preset's rates", "[forward][prism]") {
  constexpr PrismSpec base{.vocab = 7, .d_model = 16, .layers = 2, .num_rates = 8, .delta0 = 0.3466,
                           .delta_max = 11.09, .num_slots = 2, .d_mem = 4};
  auto check = [](auto& model) {
    prism_randomize(model, 31);
    const auto x = prism_tokens(4096, 7, 32);
    const double loss = model.forward(x, x);
    CHECK(std::isfinite(loss));
    for (double v : model.logits()) REQUIRE(std::isfinite(v));
  };
  Prism<base, double> causal(1, 4096);
  check(causal);
  Prism<as_reference<base>(), double> reference(1, 4096);
  check(reference);
}

TEST_CASE("PRISM reference keeps its dead parameters and identical slots; causal has neither", "[forward][prism]") {
  constexpr int B = 4, T = 16;
  auto grads_of = [&](auto& model) {
    prism_randomize(model, 51);
    const auto x = prism_tokens(B * T, kPrismTiny.vocab, 42);
    const auto y = prism_tokens(B * T, kPrismTiny.vocab, 43);
    model.zero_grad();
    model.forward(x, y);
    model.backward();
  };
  auto norm = [](auto& model, const ParamInfo& p, std::size_t from = 0, std::size_t to = 0) {
    double s = 0;
    for (std::size_t i = from; i < (to ? to : p.numel()); ++i) s += std::abs(model.grads()[p.offset + i]);
    return s;
  };
  {
    using M = Prism<kPrismTinyRef, double>;
    M model(B, T);
    grads_of(model);
    // PRISM.md 9.6: q_proj in every memory block (uniform reads), erase gate and read-out in
    // block 0 (zero tape), the third argument head everywhere.
    for (const auto& p : M::param_table) {
      const std::string n(p.name.view());
      const bool dead = n.find("q_proj") != std::string::npos ||
                        (n.rfind("blocks.0.", 0) == 0 && (n.find("erase_gate") != std::string::npos ||
                                                          n.find("read_out") != std::string::npos));
      INFO(n);
      // Identical slots make the read softmax exactly uniform; what q_proj receives is rounding.
      if (dead) CHECK(norm(model, p) < 1e-13);
      else if (n.find("arg_proj") != std::string::npos) CHECK(norm(model, p, 2 * (p.numel() / 3)) == 0.0);
      else CHECK(norm(model, p) > 1e-8);
    }
    for (int b : {0, 1}) CHECK(std::as_const(model).stats()[std::size_t(b)].slot_spread == 0.0);
  }
  {
    using M = Prism<kPrismTiny, double>;
    M model(B, T);
    grads_of(model);
    // Every tensor learns. (The argument heads only when a token chose a primitive that takes
    // arguments; with this data every block's choices include one.)
    for (const auto& p : M::param_table) {
      INFO(p.name.c_str());
      CHECK(norm(model, p) > 1e-8);
    }
    for (int b : {0, 1}) CHECK(std::as_const(model).stats()[std::size_t(b)].slot_spread > 1e-6);
  }
}

TEST_CASE("PRISM modular assembly fills every block of the kind, the last block included", "[forward][prism]") {
  using Full = Prism<kPrismTiny, double>;
  auto check_kind = [](auto single_tag) {
    constexpr PrismSpec single = decltype(single_tag)::value;
    Full full(1, 4);
    full.init(1);
    const std::vector<double> before(full.params().begin(), full.params().end());
    std::vector<double> src(Prism<single, double>::num_params, 0.777);
    const int filled = assemble_experts<kPrismTiny, single>(full, std::span<const double>(src));
    constexpr ExpertKind kind = single.experts.kinds[0];
    CHECK(filled == (kind == ExpertKind::memory ? 2 : 3));  // the last block has no memory
    for (const auto& p : Full::param_table) {
      int b = 0, i = 0;
      std::string_view rest;
      const bool expert = detail::split_expert_name(p.name.view(), b, i, rest);
      const bool mine = expert && kPrismTiny.mix_of(b).kinds[std::size_t(i)] == kind;
      for (std::size_t j = 0; j < p.numel(); ++j) {
        INFO(p.name.c_str());
        REQUIRE(full.params()[p.offset + j] == (mine ? 0.777 : before[p.offset + j]));
      }
    }
  };
  check_kind(std::integral_constant<PrismSpec, prism_single_kind(kPrismTiny, ExpertKind::neural)>{});
  check_kind(std::integral_constant<PrismSpec, prism_single_kind(kPrismTiny, ExpertKind::symbolic)>{});
  check_kind(std::integral_constant<PrismSpec, prism_single_kind(kPrismTiny, ExpertKind::memory)>{});
}
