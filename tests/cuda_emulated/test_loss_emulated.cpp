// The head's loss row kernels: softcap + cross-entropy, the asymmetric softcap + cross-entropy and
// softcap + self-distillation (the text of `namespace detail` in ops/cuda/cross_entropy.cuh,
// asym_softcap.cuh and distill.cuh, extracted at configure time) run on the CPU under
// emulate_cuda.hpp, launched as their host wrappers launch them (one warp per row, common.cuh's rows
// per block), against the CPU reference in double (ops/cpu/cross_entropy.hpp, ops/cpu/distill.hpp
// on the capped logits; the asymmetric cap's formulas of nn/asym_softcap.hpp) on the same bf16
// inputs. Rows: 21 (a partial last block), every fifth not scored; vocabulary 512. The emulation's
// exp and log are exact, so the bounds are fp32's: per-row values within 1e-4, the loss within 1e-5
// relative, the bf16 gradient within 5e-3 relative L2. Outputs are NaN beforehand (a row left
// unwritten fails); unscored rows must be exactly 0; a target out of the vocabulary gives NaN in its
// row only; the gradient is written over the student's logits, as the model's head does.
// This checks the kernels' logic without a GPU; tests/cuda/ checks them on one.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "loss_kernels_emulated.hpp"
#include "pgolf/core/rng.hpp"
#include "pgolf/ops/cpu/cross_entropy.hpp"
#include "pgolf/ops/cpu/distill.hpp"

namespace {
namespace k = pgolf::ops::cuda;
namespace cpu = pgolf::ops::cpu;
using bf16 = __nv_bfloat16;

constexpr int V = 512;
constexpr std::size_t kRows = 21;
constexpr double kCap = 30;

struct Inputs {
  std::vector<bf16> zs, zt;               // raw logits, as the head's product writes them
  std::vector<double> cs, ct;             // the same values capped, in double
  std::vector<std::int32_t> y;
  std::size_t scored = 0;
};
Inputs inputs() {
  Inputs in;
  in.zs.resize(kRows * V), in.zt.resize(kRows * V), in.cs.resize(kRows * V), in.ct.resize(kRows * V), in.y.resize(kRows);
  for (std::size_t i = 0; i < in.zs.size(); ++i) {
    // Large enough that the cap bends some of them; the teacher near the student.
    const double s = 12 * pgolf::normal01(31, 1, i), t = s + 4 * pgolf::normal01(31, 2, i);
    in.zs[i] = __float2bfloat16_rn(float(s)), in.zt[i] = __float2bfloat16_rn(float(t));
    in.cs[i] = kCap * std::tanh(double(__bfloat162float(in.zs[i])) / kCap);
    in.ct[i] = kCap * std::tanh(double(__bfloat162float(in.zt[i])) / kCap);
  }
  for (std::size_t n = 0; n < kRows; ++n) in.y[n] = n % 5 == 2 ? -1 : std::int32_t(pgolf::uniform01(31, 3, n) * V);
  in.scored = cpu::scored_rows(in.y.data(), kRows);
  return in;
}

unsigned row_blocks() { return unsigned((kRows + k::kWarpsPerBlock - 1) / k::kWarpsPerBlock); }
void launch_rows(auto&& body) { emu::launch(row_blocks(), 1, body, 32 * k::kWarpsPerBlock); }

// d(loss)/d(raw) from d(loss)/d(capped), through the softcap.
void through_cap(const std::vector<double>& capped, std::vector<double>& d) {
  for (std::size_t i = 0; i < d.size(); ++i) d[i] *= 1 - (capped[i] / kCap) * (capped[i] / kCap);
}

double rel_l2(const std::vector<bf16>& got, const std::vector<double>& want) {
  double dd = 0, ww = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    const double g = __bfloat162float(got[i]);
    dd += (g - want[i]) * (g - want[i]), ww += want[i] * want[i];
  }
  return std::sqrt(dd / ww);
}
// A cross-entropy forward's row losses against the CPU reference on the capped logits.
void check_row_losses(const std::vector<float>& row, const std::vector<double>& capped, const Inputs& in) {
  std::vector<double> ref(kRows);
  const double mean = cpu::cross_entropy_forward(capped.data(), in.y.data(), kRows, V, ref.data());
  double sum = 0;
  for (std::size_t n = 0; n < kRows; ++n) {
    CAPTURE(n);
    CHECK(std::abs(row[n] - ref[n]) < 1e-4);
    if (in.y[n] < 0) CHECK(row[n] == 0.f);
    sum += row[n];
  }
  CHECK(sum / double(in.scored) == Approx(mean).epsilon(1e-5));
}

// A forward's per-row outputs with row 0's target moved out of the vocabulary: NaN in row 0 only.
void check_out_of_vocabulary(std::vector<std::int32_t> y, auto&& forward) {
  y[0] = V;
  std::vector<float> row(kRows, NAN);
  launch_rows([&] { forward(y.data(), row.data()); });
  CHECK(std::isnan(row[0]));
  for (std::size_t n = 1; n < kRows; ++n) CHECK(std::isfinite(row[n]));
}
}  // namespace

TEST_CASE("emulated: softcap + cross-entropy row kernels match the CPU reference", "[loss_emulated]") {
  Inputs in = inputs();
  std::vector<float> row(kRows, NAN), lse(kRows, NAN);
  launch_rows([&] { k::detail::softcap_ce_forward_kernel<V>(in.zs.data(), in.y.data(), kRows, float(kCap), row.data(), lse.data()); });
  check_row_losses(row, in.cs, in);
  const float scale = 0.5f / float(in.scored);
  launch_rows([&] {
    k::detail::softcap_ce_backward_kernel<V>(in.zs.data(), in.y.data(), lse.data(), kRows, float(kCap), scale, in.zs.data());
  });
  std::vector<double> d(in.cs.size());
  cpu::cross_entropy_backward(in.cs.data(), in.y.data(), kRows, V, double(scale), d.data());
  through_cap(in.cs, d);
  CHECK(rel_l2(in.zs, d) < 5e-3);
  const Inputs fresh = inputs();
  check_out_of_vocabulary(fresh.y, [&](const std::int32_t* y, float* row_loss) {
    std::vector<float> l(kRows);
    k::detail::softcap_ce_forward_kernel<V>(fresh.zs.data(), y, kRows, float(kCap), row_loss, l.data());
  });
}

TEST_CASE("emulated: asymmetric softcap + cross-entropy row kernels match the CPU reference", "[loss_emulated]") {
  Inputs in = inputs();
  const float sp = 25.f, sn = 35.f;  // distinct caps, so a swapped sign shows
  std::vector<double> capped(in.zs.size()), u(in.zs.size());
  for (std::size_t i = 0; i < capped.size(); ++i) {
    const double z = __bfloat162float(in.zs[i]), c = z >= 0 ? sp : sn;
    u[i] = z / c, capped[i] = c * std::tanh(u[i]);
  }
  std::vector<float> row(kRows, NAN), lse(kRows, NAN);
  launch_rows([&] {
    k::detail::asym_softcap_ce_forward_kernel<V>(in.zs.data(), in.y.data(), kRows, &sp, &sn, row.data(), lse.data());
  });
  check_row_losses(row, capped, in);

  // Backward: the raw logits' gradient (over them), the per-row partials, then each cap's sum.
  const float scale = 0.5f / float(in.scored);
  std::vector<float> part(2 * kRows, NAN);
  const std::vector<bf16> raw = in.zs;
  launch_rows([&] {
    k::detail::asym_softcap_ce_backward_kernel<V>(in.zs.data(), in.y.data(), lse.data(), kRows, &sp, &sn, scale,
                                                  in.zs.data(), part.data());
  });
  const float gp0 = 0.015625f, gn0 = -0.03125f;  // the kernel adds to what the gradients hold
  float gp = gp0, gn = gn0;
  emu::launch(1, 1, [&] { k::detail::asym_cap_grads_kernel(part.data(), kRows, &gp, &gn); }, 1024);
  std::vector<double> d(capped.size());
  cpu::cross_entropy_backward(capped.data(), in.y.data(), kRows, V, double(scale), d.data());
  double ref_gp = 0, ref_gn = 0;
  for (std::size_t i = 0; i < d.size(); ++i) {
    const double th = std::tanh(u[i]), sech2 = 1 - th * th;
    (__bfloat162float(raw[i]) >= 0 ? ref_gp : ref_gn) += d[i] * (th - u[i] * sech2);
    d[i] *= sech2;
  }
  CHECK(rel_l2(in.zs, d) < 5e-3);
  std::printf("  emulated asymmetric softcap: cap gradients cpu %.8f %.8f kernels %.8f %.8f\n", ref_gp, ref_gn,
              gp - gp0, gn - gn0);
  CHECK(gp - gp0 == Approx(ref_gp).epsilon(1e-4));
  CHECK(gn - gn0 == Approx(ref_gn).epsilon(1e-4));
  for (std::size_t n = 0; n < kRows; ++n)
    if (in.y[n] < 0) CHECK((part[n] == 0.f && part[kRows + n] == 0.f));

  const Inputs fresh = inputs();
  check_out_of_vocabulary(fresh.y, [&](const std::int32_t* y, float* row_loss) {
    std::vector<float> l(kRows);
    k::detail::asym_softcap_ce_forward_kernel<V>(fresh.zs.data(), y, kRows, &sp, &sn, row_loss, l.data());
  });
}

TEST_CASE("emulated: softcap + self-distillation row kernels match the CPU reference", "[loss_emulated]") {
  for (bool per_sequence : {false, true})
    for (double tau : {1.0, 2.0}) {
      CAPTURE(per_sequence, tau);
      Inputs in = inputs();
      const cpu::DistillOptions o{.temperature = tau, .alpha = 0.7, .per_sequence = per_sequence, .batch_rows = 3};
      std::vector<float> ce(kRows, NAN), kl(kRows, NAN), lse(3 * kRows, NAN);
      const float kk = float(1 / tau);
      launch_rows([&] {
        k::detail::softcap_distill_forward_kernel<V>(in.zs.data(), in.zt.data(), in.y.data(), kRows, float(kCap), kk,
                                                     ce.data(), kl.data(), lse.data());
      });
      std::vector<double> ref_ce(kRows);
      const double loss = cpu::distill_forward(in.cs.data(), in.ct.data(), in.y.data(), kRows, V, o, ref_ce.data());
      double ce_sum = 0, kl_sum = 0;
      for (std::size_t n = 0; n < kRows; ++n) {
        CAPTURE(n);
        double unused = 0;  // one row, alpha 1: tau^2 KL_n
        const double ref_kl = in.y[n] < 0 ? 0.0
                                          : cpu::distill_forward(in.cs.data() + n * V, in.ct.data() + n * V,
                                                                 in.y.data() + n, 1, V, {.temperature = tau, .alpha = 1.0},
                                                                 &unused) /
                                                (tau * tau);
        CHECK(std::abs(ce[n] - ref_ce[n]) < 1e-4);
        CHECK(std::abs(kl[n] - ref_kl) < 1e-4);
        if (in.y[n] < 0) CHECK((ce[n] == 0.f && kl[n] == 0.f && lse[3 * n] == 0.f));
        ce_sum += ce[n], kl_sum += kl[n];
      }
      // The loss as the head assembles it from the two fixed-order sums.
      std::vector<double> sums(2, NAN);
      for (int part : {0, 1}) {
        std::vector<double> out(1, NAN);
        const float* x = part == 0 ? ce.data() : kl.data();
        emu::launch(1, 1, [&] { k::detail::ordered_sum_kernel(x, kRows, out.data()); }, 1024);
        sums[part] = out[0];
      }
      CHECK(sums[0] == Approx(ce_sum).epsilon(1e-12));
      CHECK(sums[1] == Approx(kl_sum).epsilon(1e-12));
      const double gpu_loss = cpu::distill_loss(o, sums[0] / double(in.scored), sums[1], in.scored);
      std::printf("  emulated distillation (per_sequence %d, tau %.0f): loss cpu %.8f kernels %.8f\n", int(per_sequence),
                  tau, loss, gpu_loss);
      CHECK(gpu_loss == Approx(loss).epsilon(1e-5));

      const double grad_scale = 0.5;
      const cpu::DistillScales a = cpu::distill_scales(o, in.scored, grad_scale);
      launch_rows([&] {
        k::detail::softcap_distill_backward_kernel<V>(in.zs.data(), in.zt.data(), in.y.data(), lse.data(), kRows,
                                                      float(kCap), kk, float(a.ce), float(a.kl), in.zs.data());
      });
      std::vector<double> d(in.cs.size());
      cpu::distill_backward(in.cs.data(), in.ct.data(), in.y.data(), kRows, V, o, grad_scale, d.data());
      through_cap(in.cs, d);
      CHECK(rel_l2(in.zs, d) < 5e-3);
      for (std::size_t n = 0; n < kRows; ++n)
        if (in.y[n] < 0)
          for (int i = 0; i < V; ++i) REQUIRE(__bfloat162float(in.zs[n * V + i]) == 0.f);
    }
  const Inputs fresh = inputs();
  check_out_of_vocabulary(fresh.y, [&](const std::int32_t* y, float* row_ce) {
    std::vector<float> kl(kRows), lse(3 * kRows);
    k::detail::softcap_distill_forward_kernel<V>(fresh.zs.data(), fresh.zt.data(), y, kRows, float(kCap), 1.f, row_ce,
                                                 kl.data(), lse.data());
  });
}

// Hidden (run by ctest, expected to fail): logits one bf16 off a 16-byte boundary. The device faults
// on the kernel's 16-byte loads; UBSan's alignment check, compiled into every emulated build, must
// stop the emulated run as well (ctest: loss_emulated.misaligned_vector_load).
TEST_CASE("emulated: a misaligned vector load stops the run", "[.misaligned_vector_load]") {
  Inputs in = inputs();
  std::vector<bf16> shifted(in.zs.size() + 8);
  std::copy(in.zs.begin(), in.zs.end(), shifted.begin() + 1);
  std::vector<float> row(kRows, NAN), lse(kRows, NAN);
  launch_rows([&] {
    k::detail::softcap_ce_forward_kernel<V>(shifted.data() + 1, in.y.data(), kRows, float(kCap), row.data(),
                                            lse.data());
  });
  std::printf("the misaligned vector load went unnoticed\n");
}
