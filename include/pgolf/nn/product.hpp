// Product<Def>: Out := In W^T with one weight W [out, in] (PyTorch's Linear, no bias). Def names the
// tensor and gives its registers, widths, initialisation, optimizer group and scope; Linear<...>
// writes one in a line:
//   using MlpUp = Linear<"mlp.fc.weight", Reg::n, Reg::h, Width::dim, Width::hidden, InitRule::fan_in>;
// By default a product is a Muon matrix owned by its physical block (a block's matrices are shared by
// every virtual layer that runs it, whatever else is per layer).
#pragma once

#include "pgolf/backend/cpu.hpp"
#include "pgolf/core/fixed_string.hpp"
#include "pgolf/nn/component.hpp"
#include "pgolf/ops/cpu/linear.hpp"

namespace pgolf {

// The architecture's widths a product's sides take.
enum class Width { dim, kv_dim, hidden, vocab };
template <class A>
constexpr int arch_width(Width w) {
  switch (w) {
    case Width::dim: return A::dim;
    case Width::kv_dim: return A::kv_dim;
    case Width::hidden: return A::hidden;
    case Width::vocab: return A::vocab;
  }
  return 0;
}
// zeros (the reference's output projections), fan_in (PyTorch's Linear default over the input
// width), normal (N(0, A::init_std^2)).
enum class InitRule { zeros, fan_in, normal };

// A product weight [rows, cols] that is not zero-init: orthogonal (gain 1) when the architecture asks
// for the records' orthogonal init and both dims are at least 64, else `otherwise`.
template <class A>
constexpr Init matrix_init(int rows, int cols, Init otherwise) {
  if constexpr (requires { A::orthogonal_init; })
    if (A::orthogonal_init && rows >= 64 && cols >= 64) return Init{InitKind::orthogonal, 1.0};
  return otherwise;
}

// sqrt as a constant expression (nvcc's std::sqrt is not constexpr): Newton's iteration to a fixed point.
constexpr double constexpr_sqrt(double v) {
  if (v <= 0) return 0;
  double r = v > 1 ? v : 1;
  for (int i = 0; i < 200; ++i) {
    const double next = 0.5 * (r + v / r);
    if (next == r) break;
    r = next;
  }
  return r;
}

// The embedding-side projections of the records (bigram.proj, ve_shared.proj; in [out, in] = [rows,
// cols]): under the orthogonal init, orthogonal scaled by 1/sqrt(2 * physical blocks) (their ".proj"
// rule) whatever the size (their tables start at zero or small, and the records' constructor zeros for a
// small projection would leave it dead), else PyTorch's Linear init.
template <class A>
constexpr Init side_projection_init(int cols) {
  if constexpr (requires { A::orthogonal_init; })
    if (A::orthogonal_init) return Init{InitKind::orthogonal, 1.0 / constexpr_sqrt(2.0 * A::blocks)};
  return torch_linear_init(cols);
}

template <class A, InitRule I, Width In, Width Out>
constexpr Init linear_init() {
  if constexpr (I == InitRule::zeros) return Init{InitKind::zeros};
  else if constexpr (I == InitRule::fan_in)
    return matrix_init<A>(arch_width<A>(Out), arch_width<A>(In), torch_linear_init(arch_width<A>(In)));
  else return Init{InitKind::normal, A::init_std};
}

template <FixedName Name, Reg In, Reg Out, Width InW, Width OutW, InitRule I,
          OptimGroup Group = OptimGroup::muon_matrix, Scope S = Scope::block>
struct Linear {
  static constexpr const char* name = Name.data;
  static constexpr Reg in = In, out = Out;
  static constexpr OptimGroup group = Group;
  static constexpr Scope scope = S;
  template <class A>
  static constexpr int in_width = arch_width<A>(InW);
  template <class A>
  static constexpr int out_width = arch_width<A>(OutW);
  template <class A>
  static constexpr Init init = linear_init<A, I, InW, OutW>();
};

template <class Def>
struct Product {
  static constexpr Regs reads = Regs(1) << int(Def::in), writes = Regs(1) << int(Def::out);
  template <class A>
  static constexpr RowList rows() {
    return RowList{}.add({.name = Def::name, .rows = Def::template out_width<A>, .cols = Def::template in_width<A>,
                          .rank = 2, .init = Def::template init<A>, .group = Def::group, .control = false,
                          .scope = Def::scope});
  }
  template <class A>
  static constexpr int width(Reg) { return Def::template out_width<A>; }
};

template <class T, class Def>
struct Impl<Cpu<T>, Product<Def>> {
  using C = Product<Def>;
  struct Saved {
    const T* x = nullptr;
    T* y = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) { p.take(s.y, sh.tokens() * Def::template out_width<A>); }
  static void forward(auto& c, Saved& s, Flow<Cpu<T>>& f) {
    using A = arch_of<decltype(c)>;
    s.x = value<Def::in>(f);
    ops::cpu::linear_forward(s.x, param<C>(c), s.y, int(c.tokens()), Def::template in_width<A>,
                             Def::template out_width<A>);
    set_value<Def::out>(f, s.y);
  }
  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    ops::cpu::linear_backward(dout<Def::out>(io), s.x, param<C>(c), din<Def::in>(io), grad<C>(c), int(c.tokens()),
                              Def::template in_width<A>, Def::template out_width<A>, adds<Def::in, decltype(io)>);
  }
};

}  // namespace pgolf

#ifdef __CUDACC__
#include "pgolf/backend/cuda/backend.cuh"

namespace pgolf {

// A cuBLASLt product on the bf16 weight copy; the weight gradient accumulates into the fp32
// gradient in the same product (beta 1).
template <class Def>
struct Impl<Cuda, Product<Def>> {
  using C = Product<Def>;
  struct Saved {
    const Cuda::bf16* x = nullptr;
    Cuda::bf16* y = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) { p.take(s.y, sh.tokens() * Def::template out_width<A>); }
  static void forward(auto& c, Saved& s, Flow<Cuda>& f) {
    using A = arch_of<decltype(c)>;
    s.x = value<Def::in>(f);
    Cuda::linear(c.rt().gemm, int(c.tokens()), s.x, weight<C>(c), s.y, Def::template in_width<A>,
                 Def::template out_width<A>, cuda::DType::bf16);
    set_value<Def::out>(f, s.y);
  }
  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    auto* dx = din<Def::in>(io);
    Cuda::linear_backward(c.rt().gemm, int(c.tokens()), dout<Def::out>(io), s.x, weight<C>(c), grad<C>(c), dx,
                          Cuda::dtype<std::remove_pointer_t<decltype(dx)>>(), Def::template in_width<A>,
                          Def::template out_width<A>, adds<Def::in, decltype(io)>);
  }
};

}  // namespace pgolf
#endif
