// Every component (and every run a backend fuses) alone, through the machinery a model uses
// (lone_run.hpp): its backward against central finite differences in double, for every tensor it
// owns and every register it reads; and the same run on Cpu<float> against Cpu<double>. The CUDA
// side of the parity check is tests/cuda/test_components_cuda.cpp, on the same cases.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>

#include "../test_util.hpp"
#include "component_cases.hpp"

using namespace pgolf;
using namespace pgolf::test;

namespace {

// Up to `samples` entries spread over [0, n).
std::vector<std::size_t> spread(std::size_t n, std::size_t samples) {
  std::vector<std::size_t> idx;
  const std::size_t k = std::min(n, samples);
  for (std::size_t j = 0; j < k; ++j) idx.push_back((j * n) / k + (j * 7919) % std::max<std::size_t>(1, n / k));
  return idx;
}


template <class C>
void gradcheck_case() {
  using LA = LoneArch<typename C::Arch, typename C::Run, typename C::Table>;
  constexpr auto table = arch_layout<LA>().table;
  LoneInput in = case_input<C>(2, 8, 11);
  const LoneResult r = run_case<C>(in);
  INFO("case " << C::name);
  auto loss = [&] { return run_case<C>(in, false).loss; };
  for (const auto& p : table) {
    // Only the run's own tensors carry gradient; the other blocks' copies must stay exactly zero.
    if (p.scope == Scope::block && p.block != C::layer) {
      for (std::size_t i = 0; i < p.numel(); ++i) REQUIRE(r.grads[p.offset + i] == 0.0);
      continue;
    }
    if (p.scope == Scope::layer && p.layer != C::layer) continue;
    const double err = fd_max_error(loss, in.params.data() + p.offset, r.grads.data() + p.offset, p.numel(),
                                    spread(p.numel(), 12), 1e-5, 1e-3);
    INFO("tensor " << p.name.c_str() << " max relative error " << err);
    CHECK(err < 1e-6);
  }
  for (int reg = 0; reg < kRegCount; ++reg)
    if (!in.in[std::size_t(reg)].empty()) {
      auto& x = in.in[std::size_t(reg)];
      const double err = fd_max_error(loss, x.data(), r.din[std::size_t(reg)].data(), x.size(), spread(x.size(), 16),
                                      1e-5, 1e-3);
      INFO("register " << reg << " max relative error " << err);
      CHECK(err < 1e-6);
    }
}

template <class C>
void float_parity_case() {
  const LoneInput in = case_input<C>(2, 16, 23);
  const LoneResult d = run_case<C>(in);
  const LoneResult f = run_case_on<C, float>(in);
  INFO("case " << C::name << ": loss double " << d.loss << " float " << f.loss);
  CHECK(std::abs(f.loss - d.loss) <= 1e-5 * (1 + std::abs(d.loss)));
  for (int reg = 0; reg < kRegCount; ++reg) {
    if (!d.out[std::size_t(reg)].empty()) CHECK(rel_l2(f.out[std::size_t(reg)], d.out[std::size_t(reg)]) < 1e-5);
    if (!d.din[std::size_t(reg)].empty()) CHECK(rel_l2(f.din[std::size_t(reg)], d.din[std::size_t(reg)]) < 1e-4);
  }
  CHECK(rel_l2(f.grads, d.grads) < 1e-4);
}

}  // namespace

TEST_CASE("every component's backward matches finite differences in double", "[gradcheck][components]") {
  for_each_case([]<class C>(std::type_identity<C>) {
    SECTION(std::string(C::name)) { gradcheck_case<C>(); }
  });
}

TEST_CASE("every component in float agrees with double", "[forward][components]") {
  for_each_case([]<class C>(std::type_identity<C>) {
    SECTION(std::string(C::name)) { float_parity_case<C>(); }
  });
}

TEST_CASE("a lone run reports every register it reads and writes", "[forward][components]") {
  // The harness itself: a ResidMix run reads x and x0 and writes x; the gradient reaching x0 (an
  // anchor) is m1 * R, reaching x is m0 * R, per channel.
  using C = At<Cases, 0>;
  STATIC_REQUIRE(C::name == "resid_mix");
  const LoneInput in = case_input<C>(1, 4, 5);
  const LoneResult r = run_case<C>(in);
  using LA = LoneArch<typename C::Arch, typename C::Run>;
  constexpr auto table = arch_layout<LA>().table;
  const auto* mix = find_param(table, "blocks.1.resid_mix");
  REQUIRE(mix != nullptr);
  const int D = CaseArch::dim;
  const auto& R = in.weight[std::size_t(Reg::x)];
  for (int t = 0; t < 4; ++t)
    for (int c = 0; c < D; ++c) {
      const std::size_t e = std::size_t(t) * D + c;
      CHECK(r.din[std::size_t(Reg::x)][e] == Approx(in.params[mix->offset + c] * R[e]).margin(1e-15));
      CHECK(r.din[std::size_t(Reg::x0)][e] == Approx(in.params[mix->offset + D + c] * R[e]).margin(1e-15));
    }
}
