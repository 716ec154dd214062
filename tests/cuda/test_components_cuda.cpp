// Every component the CUDA backend runs (alone, or in the fused runs it has), against the CPU
// reference in double on the same inputs and tensors (tests/nn/lone_run.hpp, the cases of
// tests/nn/component_cases.hpp). bf16 products and activations: outputs, input gradients and every
// tensor's gradient within 5e-2 relative L2 and cosine > 0.999 (q_gain's, a covariance over each
// softmax row, 0.4 and 0.95 as in test_gpt_cuda.cpp); the loss within 1%.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <string_view>

#include "../nn/component_cases.hpp"
#include "component_kernels.hpp"

using namespace pgolf;
using namespace pgolf::test;

namespace {

struct Compare {
  double cosine, rel_l2;
};
Compare compare(const double* a, const double* b, std::size_t n) {
  double ab = 0, aa = 0, bb = 0, dd = 0;
  for (std::size_t i = 0; i < n; ++i) ab += a[i] * b[i], aa += a[i] * a[i], bb += b[i] * b[i], dd += (a[i] - b[i]) * (a[i] - b[i]);
  if (bb == 0 && aa == 0) return {1, 0};
  return {ab / std::sqrt(aa * bb + 1e-300), std::sqrt(dd / (bb + 1e-300))};
}

template <class C>
void cuda_parity() {
  using LA = LoneArch<typename C::Arch, typename C::Run, typename C::Table>;
  constexpr auto table = arch_layout<LA>().table;
  const LoneInput in = case_input<C>(2, 64, 41);
  const LoneResult ref = run_case<C>(in);
  const LoneResult gpu = run_case_cuda(C::name, in);
  const LoneResult again = run_case_cuda(C::name, in);
  INFO("case " << C::name << ": loss cpu " << ref.loss << " gpu " << gpu.loss);
  CHECK(std::abs(gpu.loss - ref.loss) <= 1e-2 * (1 + std::abs(ref.loss)));
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
    const bool gain = std::string_view(p.name.c_str()).ends_with("q_gain");
    INFO(p.name.c_str() << ": cosine " << c.cosine << ", rel_l2 " << c.rel_l2);
    CHECK(c.cosine > (gain ? 0.95 : 0.999));
    CHECK(c.rel_l2 < (gain ? 0.4 : 5e-2));
  }
  std::printf("  %-40s loss cpu %.6f gpu %.6f\n", std::string(C::name).c_str(), ref.loss, gpu.loss);
}

}  // namespace

TEST_CASE("every component on the GPU matches the CPU reference", "[cuda][components]") {
  for_each_case([]<class C>(std::type_identity<C>) {
    if constexpr (C::cuda) {
      SECTION(std::string(C::name)) { cuda_parity<C>(); }
    }
  });
}
