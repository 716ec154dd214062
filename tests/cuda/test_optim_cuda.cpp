// The GPU optimizers against the CPU reference over three steps on random gradients, Muon with and
// without MuonEq-R row normalisation.
// Adam is fp32 elementwise: the parameter change must match within 1e-4 relative L2 per tensor.
// Muon runs Newton-Schulz in bf16 (as the reference trainer) against the CPU's double: the change
// of each matrix must have cosine > 0.99 and relative L2 < 5e-2 with the CPU's.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "cuda_specs.hpp"
#include "optim_kernels.hpp"
#include "pgolf/core/rng.hpp"
#include "pgolf/model/gpt.hpp"
#include "pgolf/optim/adam.hpp"
#include "pgolf/optim/clip.hpp"
#include "pgolf/optim/muon.hpp"

TEST_CASE("CUDA Muon and Adam match the CPU optimizers", "[cuda][optim]") {
  using Cpu = pgolf::Gpt<cuda_test::kSmall, double>;
  constexpr auto& table = Cpu::param_table;
  const std::size_t n = Cpu::num_params;
  std::vector<double> w(n);
  for (std::size_t i = 0; i < n; ++i) w[i] = 0.05 * pgolf::normal01(21, 1, i);
  std::vector<std::vector<float>> gf;
  std::vector<std::vector<double>> gd;
  for (int s = 0; s < 3; ++s) {
    std::vector<double> g(n);
    for (std::size_t i = 0; i < n; ++i) g[i] = pgolf::normal01(21, 2 + s, i) * (1.0 + (i % 7));
    gd.push_back(g);
    gf.emplace_back(g.begin(), g.end());
  }
  const double mlr = 0.04, alr = 0.01, mom = 0.9;
  const bool row_normalize = GENERATE(false, true);  // plain Muon, and MuonEq-R
  INFO("MuonEq-R " << row_normalize);
  std::vector<float> wf(w.begin(), w.end());
  const std::vector<float> gpu = gpu_optimizer_steps(wf, gf, mlr, alr, mom, row_normalize);

  pgolf::Muon<double> muon(table, pgolf::MuonOptions{.momentum = mom, .row_normalize = row_normalize});
  pgolf::Adam<double> embed(table, pgolf::OptimGroup::adam_embed, pgolf::AdamOptions{});
  pgolf::Adam<double> scalar(table, pgolf::OptimGroup::adam_scalar, pgolf::AdamOptions{.weight_decay = 0.1});
  std::vector<double> cpu = w;
  for (const auto& g : gd) {
    muon.step(cpu, g, mlr);
    embed.step(cpu, g, alr);
    scalar.step(cpu, g, alr);
  }
  for (const auto& p : table) {
    double ab = 0, aa = 0, bb = 0, dd = 0;
    for (std::size_t i = p.offset; i < p.offset + p.numel(); ++i) {
      const double x = double(gpu[i]) - w[i], y = cpu[i] - w[i];
      ab += x * y, aa += x * x, bb += y * y, dd += (x - y) * (x - y);
    }
    const double cosine = ab / std::sqrt(aa * bb), rel = std::sqrt(dd / bb);
    std::printf("  %-28s cosine %.6f  rel_l2 %.3e\n", p.name.c_str(), cosine, rel);
    INFO(p.name.c_str() << ": cosine " << cosine << ", rel_l2 " << rel);
    if (p.group == pgolf::OptimGroup::muon_matrix) {
      CHECK(cosine > 0.99);
      CHECK(rel < 5e-2);
    } else {
      CHECK(rel < 1e-4);
    }
  }
}

TEST_CASE("CUDA global-norm clipping matches the CPU's", "[cuda][optim]") {
  // Bounds: the norm is summed in double on both sides (1e-12 relative); clipped values are one
  // fp32 multiply each (1e-6 relative).
  const std::size_t n = 1'000'003;  // not a multiple of any block size
  std::vector<float> g(n);
  for (std::size_t i = 0; i < n; ++i) g[i] = float(pgolf::normal01(23, 1, i));
  for (const double max_norm : {10.0, 1e6}) {  // clips, then leaves alone
    std::vector<float> gpu = g, cpu = g;
    const double gn = gpu_clip_grad_norm(gpu, max_norm);
    const double cn = pgolf::clip_grad_norm(std::span<float>(cpu), max_norm);
    CHECK(gn == Approx(cn).epsilon(1e-12));
    double worst = 0;
    for (std::size_t i = 0; i < n; ++i) worst = std::max(worst, std::abs(double(gpu[i]) - cpu[i]) / (std::abs(cpu[i]) + 1e-30));
    CHECK(worst < 1e-6);
    if (max_norm > gn) CHECK(gpu == g);
  }
}
