// Whole-model finite-difference checks in double precision: every parameter tensor of each tiny
// spec, on sampled entries, against the hand-written backward.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdio>

#include "gpt_test_specs.hpp"
#include "model_gradcheck.hpp"

using namespace pgolf;
using namespace pgolf::test;

template <GptSpec S>
void gradcheck_model(int batch, int seq, std::uint32_t stream, int phase = 0) {
  Gpt<S, double> model(batch, seq);
  model.set_phase(phase);
  randomize(model, stream);
  const auto tokens = random_tokens(std::size_t(batch) * seq + 1, S.vocab, stream);
  const std::vector<std::int32_t> x(tokens.begin(), tokens.end() - 1), y(tokens.begin() + 1, tokens.end());

  model.zero_grad();
  model.forward(x, y);
  model.backward();
  check_every_tensor(model, [&] { return model.forward(x, y); }, 8);
}

TEST_CASE("whole-model gradients match finite differences: tiny baseline spec", "[gradcheck][gpt]") {
  gradcheck_model<kTiny>(2, 16, 1);
}

TEST_CASE("whole-model gradients match finite differences: partial RoPE, leaky, untied, no skips",
          "[gradcheck][gpt]") {
  gradcheck_model<kTinyVariant>(2, 12, 2);
}

TEST_CASE("whole-model gradients match finite differences: shared blocks (depth recurrence)",
          "[gradcheck][gpt]") {
  gradcheck_model<kTinyShared>(2, 8, 3);
}

TEST_CASE("whole-model gradients match finite differences: blocks repeated in place", "[gradcheck][gpt]") {
  STATIC_REQUIRE(kTinyInPlace.schedule() == schedule_of(0, 1, 1, 1, 2, 2, 2, 3));
  gradcheck_model<kTinyInPlace>(2, 8, 4);
}

TEST_CASE("whole-model gradients match finite differences: a span repeated", "[gradcheck][gpt]") {
  STATIC_REQUIRE(kTinySpan.schedule() == schedule_of(0, 1, 2, 1, 2, 1, 2, 3));
  gradcheck_model<kTinySpan>(2, 8, 5);
}

TEST_CASE("whole-model gradients match finite differences: only matrices shared, scalars per virtual layer",
          "[gradcheck][gpt]") {
  gradcheck_model<kTinySpanMatrices>(2, 8, 6);
}

TEST_CASE("whole-model gradients match finite differences: both schedules of a looped model", "[gradcheck][gpt]") {
  SECTION("loop off") { gradcheck_model<kTinyLooped>(2, 8, 7, 0); }
  SECTION("loop on") { gradcheck_model<kTinyLooped>(2, 8, 7, 1); }
}

// Self-distillation through the whole model: with a teacher's logits set, the loss is the
// distillation loss of the model's capped logits and its gradient flows through the softcap and
// the trunk (the head's hand-written backward); clearing the teacher restores the cross-entropy.
TEST_CASE("whole-model gradients match finite differences: self-distillation loss", "[gradcheck][gpt][distill]") {
  const int batch = 2, seq = 8;
  Gpt<kTiny, double> model(batch, seq), teacher(batch, seq);
  randomize(model, 11);
  randomize(teacher, 12);
  const auto tokens = random_tokens(std::size_t(batch) * seq + 1, kTiny.vocab, 11);
  const std::vector<std::int32_t> x(tokens.begin(), tokens.end() - 1), y(tokens.begin() + 1, tokens.end());
  const double ce = model.forward(x, y);
  teacher.forward(x, y);
  const std::vector<double> zt(teacher.logits().begin(), teacher.logits().end());
  for (bool per_sequence : {false, true}) {
    model.set_teacher(zt, {.temperature = 2.0, .alpha = 0.7, .per_sequence = per_sequence});
    const double loss = model.forward(x, y);
    std::vector<double> rows(model.tokens());
    const std::vector<double> zs(model.logits().begin(), model.logits().end());
    CHECK(loss == Approx(ops::cpu::distill_forward(zs.data(), zt.data(), y.data(), model.tokens(), kTiny.vocab,
                                                   {.temperature = 2.0, .alpha = 0.7, .per_sequence = per_sequence,
                                                    .batch_rows = batch},
                                                   rows.data()))
                      .epsilon(1e-14));
    CHECK(loss != Approx(ce));
    CHECK(std::equal(rows.begin(), rows.end(), model.row_losses().begin()));  // row losses stay the CE
    model.zero_grad();
    model.backward();
    check_every_tensor(model, [&] { return model.forward(x, y); }, 6);
  }
  model.clear_teacher();
  CHECK(model.forward(x, y) == ce);
}

// distill_from(teacher), the form the Trainer uses on both backends, reads the teacher's last
// logits: the same loss and gradient bits as set_teacher with a copy of them. A teacher of another
// batch shape, or one that has not run, is refused by name.
TEST_CASE("distill_from a teacher model equals set_teacher with its logits", "[gpt][distill]") {
  const int batch = 2, seq = 8;
  Gpt<kTiny, double> model(batch, seq), teacher(batch, seq), idle(batch, seq), other(batch, seq * 2);
  randomize(model, 11);
  randomize(teacher, 12);
  const auto tokens = random_tokens(std::size_t(batch) * seq + 1, kTiny.vocab, 13);
  const std::vector<std::int32_t> x(tokens.begin(), tokens.end() - 1), y(tokens.begin() + 1, tokens.end());
  teacher.forward(x, y);
  const std::vector<double> zt(teacher.logits().begin(), teacher.logits().end());
  const ops::cpu::DistillOptions opt{.temperature = 1.5, .alpha = 0.4};
  model.set_teacher(zt, opt);
  const double by_copy = model.forward(x, y);
  model.zero_grad();
  model.backward(0.5);
  const std::vector<double> grads_copy(model.grads().begin(), model.grads().end());
  model.clear_teacher();
  model.distill_from(teacher, opt);
  CHECK(model.forward(x, y) == by_copy);
  model.zero_grad();
  model.backward(0.5);
  CHECK(std::equal(grads_copy.begin(), grads_copy.end(), model.grads().begin()));
  model.clear_teacher();
  CHECK_THROWS_WITH(model.distill_from(idle, opt), Catch::Contains("the teacher has not run a forward"));
  CHECK_THROWS_WITH(model.distill_from(other, opt), Catch::Contains("the teacher's batch is 2 x 16"));
  CHECK_THROWS_WITH(model.distill_from(teacher, {.temperature = 0}), Catch::Contains("distill_temperature"));
}
