// Every component the CUDA backend runs (alone, or in the fused runs it has), against the CPU
// reference in double on the same inputs and tensors (tests/nn/lone_run.hpp, the cases of
// tests/nn/component_cases.hpp). bf16 products and activations: outputs and input gradients within
// 5e-2 relative L2 and cosine > 0.999; every tensor's gradient within cuda_test::bf16_bound (those
// floors, or 3x / 6x how far the reference's own gradient moves when its parameters are rounded to
// bf16; q_gain's floors, a covariance over each softmax row, 0.4 and 0.95 as in test_gpt_cuda.cpp);
// the run's own loss (a loss component's) within 1%. The projections <out_r, R_r> that the lone run
// adds to its loss are not compared as a sum: R has random signs, so the sum cancels and its bf16
// error can reach several percent of it; the outputs they project are compared instead.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <string_view>

#include "../nn/component_cases.hpp"
#include "compare.hpp"
#include "component_kernels.hpp"
#include "pgolf/optim/muon.hpp"

using namespace pgolf;
using namespace pgolf::test;

namespace {

using cuda_test::Bound;
using cuda_test::Compare;

Compare compare(const double* a, const double* b, std::size_t n) {
  bool zero = true;
  for (std::size_t i = 0; i < n; ++i) zero = zero && a[i] == 0 && b[i] == 0;
  if (zero) return {1, 0};
  return cuda_test::compare(a, b, n);
}

// The run's own loss: its total less the projections <out_r, R_r> of its outputs.
double own_loss(const LoneResult& r, const LoneInput& in) {
  double loss = r.loss;
  for (int k = 0; k < kRegCount; ++k) {
    const auto& o = r.out[std::size_t(k)];
    const auto& w = in.weight[std::size_t(k)];
    for (std::size_t i = 0; i < o.size() && i < w.size(); ++i) loss -= w[i] * o[i];
  }
  return loss;
}

template <class C>
void cuda_parity() {
  using LA = LoneArch<typename C::Arch, typename C::Run, typename C::Table>;
  constexpr auto table = arch_layout<LA>().table;
  const LoneInput in = case_input<C>(2, 64, 41);
  const LoneResult ref = run_case<C>(in);
  const LoneResult gpu = run_case_cuda(C::name, in);
  const LoneResult again = run_case_cuda(C::name, in);
  LoneInput rounded = in;
  for (double& v : rounded.params) v = double(pgolf::round_to_bf16(float(v)));
  const LoneResult moved = run_case<C>(rounded);
  const double own_ref = own_loss(ref, in), own_gpu = own_loss(gpu, in);
  INFO("case " << C::name << ": loss cpu " << ref.loss << " gpu " << gpu.loss << "; own loss cpu " << own_ref
               << " gpu " << own_gpu);
  CHECK(std::abs(own_gpu - own_ref) <= 1e-2 * (1 + std::abs(own_ref)));
  CHECK(gpu.grads == again.grads);  // no atomics: the same bits every run
  for (int r = 0; r < kRegCount; ++r) {
    for (const auto* pair : {&ref.out, &ref.din}) {
      const auto& a = (pair == &ref.out ? gpu.out : gpu.din)[std::size_t(r)];
      const auto& b = (*pair)[std::size_t(r)];
      if (b.empty()) continue;
      const Compare c = compare(a.data(), b.data(), b.size());
      INFO("register " << r << (pair == &ref.out ? " value" : " gradient") << ": cosine " << c.cosine << ", rel_l2 "
                       << c.rel_l2);
      CHECK(c.cosine > 0.999);
      CHECK(c.rel_l2 < 5e-2);
    }
  }
  for (const auto& p : table) {
    const Compare c = compare(gpu.grads.data() + p.offset, ref.grads.data() + p.offset, p.numel());
    const Compare sens = compare(moved.grads.data() + p.offset, ref.grads.data() + p.offset, p.numel());
    const Bound b = cuda_test::bf16_bound(p.name.c_str(), sens, p.numel());
    INFO(p.name.c_str() << ": cosine " << c.cosine << ", rel_l2 " << c.rel_l2 << "; bound " << b.cosine << ", "
                        << b.rel_l2 << " (bf16 parameters alone " << sens.rel_l2 << ")");
    CHECK(c.cosine > b.cosine);
    CHECK(c.rel_l2 < b.rel_l2);
  }
  std::printf("  %-40s loss cpu %.6f gpu %.6f (own %.6f, %.6f)\n", std::string(C::name).c_str(), ref.loss, gpu.loss,
              own_ref, own_gpu);
}

}  // namespace

TEST_CASE("every component on the GPU matches the CPU reference", "[cuda][components]") {
  for_each_case([]<class C>(std::type_identity<C>) {
    if constexpr (C::cuda) {
      SECTION(std::string(C::name)) { cuda_parity<C>(); }
    }
  });
}
