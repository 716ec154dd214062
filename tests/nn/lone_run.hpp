// A run of components executed alone, on any backend, through the same machinery a model uses
// (the parameter table, the arena plan, resources, forward_program / backward_program):
//
//   inputs   the registers the run reads, random, in host layout (token-major, double)
//   loss     grad_scale * the run's own loss (a loss component's) + sum_r <out_r, R_r> over the registers it
//            writes, so the gradient reaching each output is R_r
//   results  the outputs, the gradient of every input register and of every parameter, all in host
//            layouts, so the CPU in double, the CPU in float and CUDA can be compared value for value.
//
// One parity check written once (tests/nn/test_components.cpp) runs it for every component on
// Cpu<double> and Cpu<float>, and on Cuda where a device is present (tests/cuda/component_kernels.cu);
// the same run in double is the components' finite-difference check.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "pgolf/backend/cpu.hpp"
#include "pgolf/model/language_model.hpp"

namespace pgolf::test {

// The architecture of a lone run: A's sizes, P as its block program over three layers of three
// blocks (the run executes at one of them). Extra components join the table (a tied head reads the
// embedding's tensor) but do not run.
template <class A, class P, class Extra = Program<>>
struct LoneArch : A {
  using Embed = Extra;
  using Block = P;
  using Head = Program<>;
  using Skip = void;
  using RowOrder = Program<>;
  static constexpr DepthPlan depth{.phase = {cyclic(3, 3), {}}, .phases = 1, .unet = false};
};

struct LoneInput {
  int batch = 0, seq = 0;
  std::vector<std::int32_t> ids, targets;
  std::array<int, kRegCount> width{};                    // per-token width of each input register
  std::array<std::vector<double>, kRegCount> in, weight;  // input values; R of each output register
  std::vector<double> params;                             // table layout
  double grad_scale = 1.0;
  int layer = 0;  // the virtual layer (and block) the run executes at, 0..2
};

struct LoneResult {
  double loss = 0;
  std::array<std::vector<double>, kRegCount> out, din;
  std::vector<double> grads;  // table layout
};

template <class P>
consteval Regs lone_inputs() {
  return run_dataflow<P, 0, P::size>()[0];
}
template <class P>
consteval Regs lone_outputs() {
  return run_dataflow<P, 0, P::size>()[1];
}

// Host <-> backend copies of a register's values and gradients. The CPU keeps every register
// token-major in T; Cuda specialises this in tests/cuda/lone_layout.cuh.
template <class B>
struct LoneLayout;
template <class T>
struct LoneLayout<Cpu<T>> {
  template <class X>
  static void put(Reg, const std::vector<double>& host, X* dev, int, int, const Shape&) {
    for (std::size_t i = 0; i < host.size(); ++i) dev[i] = X(host[i]);
  }
  template <class X>
  static std::vector<double> get(Reg, const X* dev, std::size_t n, int, int, const Shape&) {
    return std::vector<double>(dev, dev + n);
  }
};

// Out: the registers whose values count as the run's outputs (by default all it writes; a run that
// ends in a loss consumes what it writes).
template <class A, class P, class B, class Extra = Program<>, Regs Out = lone_outputs<P>()>
LoneResult run_lone(const LoneInput& in, bool backward = true) {
  using LA = LoneArch<A, P, Extra>;
  using Impls = unique_t<impls_of<B, P>>;
  using Layout = LoneLayout<B>;
  using Scalar = typename B::Scalar;
  constexpr Regs kIn = lone_inputs<P>(), kOut = Out;
  constexpr Regs kAnchors = has(kIn, Reg::x0) && !has(kOut, Reg::x0) ? regs<Reg::x0> : 0;
  static_assert(program_implemented<B, P>());
  constexpr auto layout = arch_layout<LA>();
  constexpr auto storage = B::storage_table(layout.table);

  const Shape sh{in.batch, in.seq};
  const std::size_t N = sh.tokens();
  typename B::Runtime rt(B::storage_size(storage));
  ResourceSet<LA, B, Impls> res(sh, rt);
  ProgramState<B, P> st{};
  GradRegs<B> g{};
  std::array<void*, kRegCount> values{};
  // A register may be read and written at different widths (mlp.proj reads h at the hidden width
  // and writes it at dim): inputs and their gradients at the input's, outputs at the run's.
  std::array<int, kRegCount> in_width{}, out_width{};

  ArenaPlan plan;
  plan_program<LA, B, P>(plan, st, sh);
  constexpr Regs kTransformed = transformed_regs<P>();
  [&]<int... R>(std::integer_sequence<int, R...>) {
    ([&] {
      constexpr Reg r = Reg(R);
      if constexpr (has(kIn | kOut, r)) {
        using V = typename B::template Value<r>;
        using G = typename B::template Grad<r>;
        in_width[R] = in.width[std::size_t(R)];
        out_width[R] = register_width<P, LA>(r);
        const std::size_t n = N * std::size_t(std::max(in_width[R], out_width[R]));
        plan.take_raw(values[R], N * std::size_t(in_width[R]) * sizeof(V));
        plan.take_raw(g.buf[std::size_t(R)][0], n * sizeof(G));
        plan.take_raw(g.buf[std::size_t(R)][1], has(kTransformed, r) ? n * sizeof(G) : 0);
      }
    }(), ...);
  }(std::make_integer_sequence<int, kRegCount>{});
  rt.allocate(plan, sh);

  std::vector<Scalar> p(in.params.begin(), in.params.end());
  rt.set_params(layout.table, storage, std::span<const Scalar>(p));
  rt.zero_grad();
  rt.begin_forward(in.ids, in.targets, A::vocab);

  Flow<B> f;
  [&]<int... R>(std::integer_sequence<int, R...>) {
    ([&] {
      constexpr Reg r = Reg(R);
      if constexpr (has(kIn, r)) {
        using V = typename B::template Value<r>;
        Layout::put(r, in.in[std::size_t(R)], static_cast<V*>(values[R]), in_width[R], A::head_dim, sh);
        f.template set<r>(static_cast<const V*>(values[R]));
      }
    }(), ...);
  }(std::make_integer_sequence<int, kRegCount>{});

  ModelContext<LA, B, Impls> c{sh, rt, res};
  c.at_layer(0, in.layer);
  c.grad_scale = in.grad_scale;
  forward_program<B, P>(c, st, f);

  LoneResult out;
  out.loss = in.grad_scale * c.loss;  // the backward computes d(grad_scale * the run's loss)
  [&]<int... R>(std::integer_sequence<int, R...>) {
    ([&] {
      constexpr Reg r = Reg(R);
      if constexpr (has(kOut, r)) {
        out.out[R] = Layout::get(r, f.template get<r>(), N * std::size_t(out_width[R]), out_width[R], A::head_dim, sh);
        for (std::size_t i = 0; i < out.out[R].size(); ++i) out.loss += in.weight[std::size_t(R)][i] * out.out[R][i];
      }
    }(), ...);
  }(std::make_integer_sequence<int, kRegCount>{});
  if (!backward) return out;

  [&]<int... R>(std::integer_sequence<int, R...>) {
    ([&] {
      constexpr Reg r = Reg(R);
      using G = typename B::template Grad<r>;
      if constexpr (has(kOut, r))
        Layout::put(r, in.weight[std::size_t(R)], static_cast<G*>(g.buf[std::size_t(R)][0]), out_width[R], A::head_dim,
                    sh);
      if constexpr (has(kAnchors, r))
        Layout::put(r, std::vector<double>(N * std::size_t(in_width[R]), 0.0),
                    static_cast<G*>(g.buf[std::size_t(R)][0]), in_width[R], A::head_dim, sh);
    }(), ...);
  }(std::make_integer_sequence<int, kRegCount>{});
  backward_program<B, P, kOut, kAnchors>(c, st, g);
  [&]<int... R>(std::integer_sequence<int, R...>) {
    ([&] {
      constexpr Reg r = Reg(R);
      if constexpr (has(kIn, r))
        out.din[R] = Layout::get(r, g.template now<r>(), N * std::size_t(in_width[R]), in_width[R], A::head_dim, sh);
    }(), ...);
  }(std::make_integer_sequence<int, kRegCount>{});
  const auto grads = rt.grads_host(layout.table, storage);
  out.grads.assign(grads.begin(), grads.end());
  return out;
}

}  // namespace pgolf::test
