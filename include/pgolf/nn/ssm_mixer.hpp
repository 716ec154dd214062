// SsmMixer: the PRISM harness's SSM mixer (PRISM.md 2.9), h := W_out h_t with the diagonal recurrence
//   h_t = exp(dt_t A) h_{t-1} + dt_t W_B n_t,  dt_t = softplus(w . n_t + b),  A = -softplus(A_log)
// over each sequence; no C(x), no D-skip, no gating (as the reference). State width A::ssm_state.
// Init as the reference: PyTorch's default for the linears, A_log ~ N(0, 0.1^2).
#pragma once

#include <array>
#include <cmath>
#include <vector>

#include "pgolf/backend/cpu.hpp"
#include "pgolf/nn/component.hpp"
#include "pgolf/ops/cpu/linear.hpp"
#include "pgolf/ops/cpu/swiglu.hpp"

namespace pgolf {

struct SsmMixer {
  static constexpr Regs reads = regs<Reg::n>, writes = regs<Reg::h>;
  template <class A>
  static constexpr RowList rows() {
    const int D = A::dim, N = A::ssm_state;
    const auto Sc = OptimGroup::adam_scalar;
    return RowList{}
        .add({.name = "ssm.B.weight", .rows = N, .cols = D, .rank = 2, .init = torch_linear_init(D),
              .group = OptimGroup::muon_matrix})
        .add({.name = "ssm.dt.weight", .rows = 1, .cols = D, .rank = 2, .init = torch_linear_init(D), .group = Sc})
        .add({.name = "ssm.dt.bias", .rows = 1, .cols = 1, .rank = 1, .init = torch_linear_init(D), .group = Sc})
        .add({.name = "ssm.A_log", .rows = N, .cols = 1, .rank = 1, .init = {InitKind::normal, 0.1}, .group = Sc})
        .add({.name = "ssm.out.weight", .rows = D, .cols = N, .rank = 2, .init = torch_linear_init(N),
              .group = OptimGroup::muon_matrix});
  }
  template <class A>
  static constexpr int width(Reg) { return A::dim; }
  template <class T>
  static T softplus(T u) { return u > T(20) ? u : std::log1p(std::exp(u)); }
};

template <class T>
struct Impl<Cpu<T>, SsmMixer> {
  using C = SsmMixer;
  template <class A>
  struct Resources {
    std::vector<T> dh, dB, ddt;
    explicit Resources(const Shape& sh)
        : dh(sh.tokens() * A::ssm_state), dB(sh.tokens() * A::ssm_state), ddt(sh.tokens()) {}
  };
  struct Saved {
    const T* n = nullptr;
    T *Bt = nullptr, *dt = nullptr, *h = nullptr, *out = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) {
    const std::size_t N = sh.tokens();
    p.take(s.Bt, N * A::ssm_state), p.take(s.dt, N), p.take(s.h, N * A::ssm_state), p.take(s.out, N * A::dim);
  }
  static void forward(auto& c, Saved& s, Flow<Cpu<T>>& f) {
    using A = arch_of<decltype(c)>;
    constexpr int S = A::ssm_state;
    const int n = int(c.tokens());
    s.n = value<Reg::n>(f);
    ops::cpu::linear_forward(s.n, param<C, 0>(c), s.Bt, n, A::dim, S);
    ops::cpu::linear_forward(s.n, param<C, 1>(c), s.dt, n, A::dim, 1);
    for (int t = 0; t < n; ++t) s.dt[t] += param<C, 2>(c)[0];
    const T* A_log = param<C, 3>(c);
    for (int b = 0; b < c.batch(); ++b)
      for (int t = 0; t < c.seq(); ++t) {
        const std::size_t i = std::size_t(b) * c.seq() + t;
        const T dt = C::softplus(s.dt[i]);
        for (int k = 0; k < S; ++k) {
          const T a = std::exp(-dt * C::softplus(A_log[k]));
          const T prev = t > 0 ? s.h[(i - 1) * S + k] : T(0);
          s.h[i * S + k] = a * prev + dt * s.Bt[i * S + k];
        }
      }
    ops::cpu::linear_forward(s.h, param<C, 4>(c), s.out, n, S, A::dim);
    set_value<Reg::h>(f, s.out);
  }
  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    constexpr int S = A::ssm_state;
    const int n = int(c.tokens());
    auto& r = resources<Impl>(c);
    T* dn = din<Reg::n>(io);
    ops::cpu::linear_backward(dout<Reg::h>(io), s.h, param<C, 4>(c), r.dh.data(), grad<C, 4>(c), n, S, A::dim, false);
    std::fill(r.ddt.begin(), r.ddt.end(), T(0));
    const T* A_log = param<C, 3>(c);
    T* dA_log = grad<C, 3>(c);
    for (int b = 0; b < c.batch(); ++b) {
      std::array<T, A::ssm_state> carry{};
      for (int t = c.seq() - 1; t >= 0; --t) {
        const std::size_t i = std::size_t(b) * c.seq() + t;
        const T dt = C::softplus(s.dt[i]);
        for (int k = 0; k < S; ++k) {
          const T Ak = -C::softplus(A_log[k]);
          const T a = std::exp(dt * Ak);
          const T prev = t > 0 ? s.h[(i - 1) * S + k] : T(0);
          const T gh = r.dh[i * S + k] + carry[std::size_t(k)];
          r.ddt[i] += gh * (prev * a * Ak + s.Bt[i * S + k]);
          r.dB[i * S + k] = gh * dt;
          dA_log[k] += gh * prev * a * dt * (-ops::cpu::sigmoid(A_log[k]));
          carry[std::size_t(k)] = gh * a;
        }
        r.ddt[i] *= ops::cpu::sigmoid(s.dt[i]);
      }
    }
    ops::cpu::linear_backward(r.dB.data(), s.n, param<C, 0>(c), dn, grad<C, 0>(c), n, A::dim, S,
                              adds<Reg::n, decltype(io)>);
    ops::cpu::linear_backward(r.ddt.data(), s.n, param<C, 1>(c), dn, grad<C, 1>(c), n, A::dim, 1, true);
    ops::cpu::bias_backward(r.ddt.data(), n, 1, grad<C, 2>(c));
  }
};

}  // namespace pgolf
