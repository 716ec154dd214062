// LnScale: the records' layerwise LN scale, n := n / sqrt(i + 1) on the normalised input of
// attention and of the MLP, where i is the physical block (the Frugendorff) or the virtual layer
// (looped models that scale by depth). A constant: no tensor, no gradient of its own.
//
// Spec: GptSpec.norm.ln_scale = LnScaleIndex::off | block | layer.
#pragma once

#include <cmath>

#include "pgolf/backend/cpu.hpp"
#include "pgolf/nn/component.hpp"

namespace pgolf {

enum class LnScaleIndex { off, block, layer };

struct LnScale {
  static constexpr Regs reads = regs<Reg::n>, writes = regs<Reg::n>;
  template <class A>
  static constexpr int width(Reg) { return A::dim; }
  // The factor at virtual layer v of physical block b.
  template <class A>
  static double factor(int v, int b) {
    return 1.0 / std::sqrt(double(A::ln_scale == LnScaleIndex::layer ? v : b) + 1.0);
  }
};

template <class T>
struct Impl<Cpu<T>, LnScale> {
  struct Saved {
    T* out = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) { p.take(s.out, sh.tokens() * A::dim); }
  static void forward(auto& c, Saved& s, Flow<Cpu<T>>& f) {
    using A = arch_of<decltype(c)>;
    const T k = T(LnScale::factor<A>(c.v, c.b));
    const T* n = value<Reg::n>(f);
    for (std::size_t e = 0; e < c.tokens() * A::dim; ++e) s.out[e] = k * n[e];
    set_value<Reg::n>(f, s.out);
  }
  static void backward(auto& c, Saved&, auto& io) {
    using A = arch_of<decltype(c)>;
    const T k = T(LnScale::factor<A>(c.v, c.b));
    const T* g = dout<Reg::n>(io);
    T* d = din<Reg::n>(io);
    for (std::size_t e = 0; e < c.tokens() * A::dim; ++e) d[e] = k * g[e];
  }
};

}  // namespace pgolf

#ifdef __CUDACC__
#include "pgolf/backend/cuda/backend.cuh"

namespace pgolf {

template <>
struct Impl<Cuda, LnScale> {
  struct Saved {
    Cuda::bf16* out = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) { p.take(s.out, sh.tokens() * A::dim); }
  static void forward(auto& c, Saved& s, Flow<Cuda>& f) {
    using A = arch_of<decltype(c)>;
    ops::cuda::scale_into(value<Reg::n>(f), float(LnScale::factor<A>(c.v, c.b)), c.tokens() * A::dim, s.out);
    set_value<Reg::n>(f, s.out);
  }
  static void backward(auto& c, Saved&, auto& io) {
    using A = arch_of<decltype(c)>;
    ops::cuda::scale_into(dout<Reg::n>(io), float(LnScale::factor<A>(c.v, c.b)), c.tokens() * A::dim, din<Reg::n>(io));
  }
};

}  // namespace pgolf
#endif
