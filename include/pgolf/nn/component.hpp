// Components: a model is a compile-time composition of component types, and each component says,
// in one header named after it, everything the rest of the library needs to know about it:
//
//   struct ResidMix {                                  // x := m0 * x + m1 * x0
//     static constexpr Regs reads = regs<Reg::x, Reg::x0>, writes = regs<Reg::x>;
//     template <class A> static constexpr RowList rows();   // its parameter tensors (name, shape,
//                                                           // init, optimizer group, export, scope)
//     template <class A> static constexpr int width(Reg);   // per-token width of what it writes
//   };
//   template <class T> struct Impl<Cpu<T>, ResidMix> {     // the reference, templated on T
//     struct Saved { ... };  static void plan(auto& p, Saved&, const Shape&);   // what it keeps
//     static void forward(auto& ctx, Saved&, Flow<Cpu<T>>&);
//     static void backward(auto& ctx, Saved&, auto& io);
//   };
//   template <> struct Impl<Cuda, ResidMix> { ... };        // the fast path (nvcc only)
//
// Data moves between components through registers (Reg): the residual stream x, the embedding
// anchor x0, a normalised branch input n, a branch value h, attention's q, k, v, and a second
// residual lane x1 with a stashed branch output a (the parallel two-lane residual). A component
// reads some registers and writes others; it *redefines* a register it both reads and writes
// (x := f(x)), and *defines* one it writes without reading. The backward mirrors this: a component
// receives d(what it wrote) and produces d(what it read). Whether it must add to or overwrite that
// gradient is decided at compile time from the program (`accumulates`): it adds when a later
// component read the same value (its contribution is already there), as the hand-written
// backwards did with their `accumulate` flags.
//
// A backend may fuse a run of consecutive components (Fused<Backend, A, B, ...>): the fused run
// replaces their forward (and, when it provides one, their backward) wherever the run occurs in a
// program, so the reference stays unfused and the fast path keeps its fused kernels. A component
// that has neither an Impl for the backend nor a fused run covering it is a compile-time error
// naming the component (require_implementation below).
#pragma once

#include <array>
#include <cstddef>
#include <tuple>
#include <type_traits>
#include <utility>

#include "pgolf/nn/param_table.hpp"

namespace pgolf {

// Backend tags: Cpu<T> (backend/cpu.hpp), Cuda (backend/cuda/backend.cuh).
template <class T>
struct Cpu;
struct Cuda;

// ---------------------------------------------------------------------------------------------
// Registers

// x1 and a serve the parallel two-lane residual (nn/parallel_lanes.hpp): the second lane, and the
// attention branch's output kept until the lanes are updated.
enum class Reg : int { x, x0, n, h, q, k, v, x1, a };
inline constexpr int kRegCount = 9;
using Regs = unsigned;
template <Reg... R>
inline constexpr Regs regs = (Regs(0) | ... | (Regs(1) << int(R)));
constexpr bool has(Regs s, Reg r) { return ((s >> int(r)) & 1u) != 0; }

// ---------------------------------------------------------------------------------------------
// Parameter rows a component declares. The name is the part after the scope's prefix
// ("attn.c_q.weight" becomes "blocks.3.attn.c_q.weight" for block 3).

struct Row {
  const char* name = "";
  int rows = 0, cols = 1, rank = 1;
  Init init{};
  OptimGroup group = OptimGroup::adam_scalar;
  bool control = false;  // kept in fp32 by the reference's export rule
  Scope scope = Scope::block;
};

struct RowList {
  static constexpr int kCapacity = 12;
  std::array<Row, kCapacity> row{};
  int count = 0;
  constexpr RowList& add(Row r) {
    if (count >= kCapacity) throw "RowList: a component declares more than 12 rows";
    row[std::size_t(count++)] = r;
    return *this;
  }
};

// Where a module's tensors are in a parameter buffer: row j of its RowList at offset at[j] (a row
// with no elements is not in the table; its offset is unused). A module that is not a component of
// a LanguageModel (PRISM's experts, its router) reads its tensors through Tensors{buffer, rows}[j].
struct ModuleRows {
  std::array<std::size_t, RowList::kCapacity> at{};
};
template <class X>
struct Tensors {
  X* base = nullptr;
  const ModuleRows* rows = nullptr;
  X* operator[](int j) const { return base + rows->at[std::size_t(j)]; }
};

template <class C, class A>
constexpr RowList rows_of() {
  if constexpr (requires { C::template rows<A>(); }) return C::template rows<A>();
  else return RowList{};
}

// ---------------------------------------------------------------------------------------------
// Dataflow declarations

template <class C>
consteval Regs passes_value() {
  if constexpr (requires { C::passes; }) return C::passes;
  else return 0;
}
template <class C>
inline constexpr Regs reads_of = C::reads;
template <class C>
inline constexpr Regs writes_of = C::writes;
// Redefined registers whose gradient passes through unchanged (x := x + f(...)): their d(input) is
// d(output) itself, in the same buffer.
template <class C>
inline constexpr Regs passes_of = passes_value<C>();

template <class... Cs>
struct Program {
  static constexpr std::size_t size = sizeof...(Cs);
  static constexpr std::array<Regs, sizeof...(Cs)> reads{reads_of<Cs>...};
  static constexpr std::array<Regs, sizeof...(Cs)> writes{writes_of<Cs>...};
};

template <class P, std::size_t I>
struct program_at;
template <class... Cs, std::size_t I>
struct program_at<Program<Cs...>, I> {
  using type = std::tuple_element_t<I, std::tuple<Cs...>>;
};
template <class P, std::size_t I>
using At = typename program_at<P, I>::type;

// Concatenation and conditional inclusion, for building programs from a spec.
template <class... P>
struct program_cat;
template <>
struct program_cat<> {
  using type = Program<>;
};
template <class... A>
struct program_cat<Program<A...>> {
  using type = Program<A...>;
};
template <class... A, class... B, class... Rest>
struct program_cat<Program<A...>, Program<B...>, Rest...> {
  using type = typename program_cat<Program<A..., B...>, Rest...>::type;
};
template <class... P>
using cat_t = typename program_cat<P...>::type;
template <bool On, class... Cs>
using when = std::conditional_t<On, Program<Cs...>, Program<>>;

template <class C, class P>
struct program_contains;
template <class C, class... Cs>
struct program_contains<C, Program<Cs...>> : std::bool_constant<(std::is_same_v<C, Cs> || ...)> {};

// Distinct types in order of first appearance.
template <class Seen, class... Cs>
struct unique_impl;
template <class... S>
struct unique_impl<Program<S...>> {
  using type = Program<S...>;
};
template <class... S, class C, class... Cs>
struct unique_impl<Program<S...>, C, Cs...> {
  using type = typename unique_impl<std::conditional_t<(std::is_same_v<C, S> || ...), Program<S...>, Program<S..., C>>,
                                    Cs...>::type;
};
template <class P>
struct unique_program;
template <class... Cs>
struct unique_program<Program<Cs...>> {
  using type = typename unique_impl<Program<>, Cs...>::type;
};
template <class P>
using unique_t = typename unique_program<P>::type;

template <class C, class P>
consteval int index_in() {
  return []<std::size_t... I>(std::index_sequence<I...>) {
    int r = -1;
    ((r = (r < 0 && std::is_same_v<C, At<P, I>>) ? int(I) : r), ...);
    return r;
  }(std::make_index_sequence<P::size>{});
}

// True when the gradient that component I contributes to register r (which it reads without
// redefining) must be added: a later component read the same value of r, or the program's sink
// (what follows the program) does, or r is an anchor whose gradient collects over many programs.
template <class P>
constexpr bool later_reader(std::size_t i, Reg r, Regs sink) {
  for (std::size_t j = i + 1; j < P::size; ++j) {
    if (has(P::reads[j], r)) return true;
    if (has(P::writes[j], r)) return false;  // a new value of r: nobody later reads ours
  }
  return has(sink, r);
}

// ---------------------------------------------------------------------------------------------
// Backend implementations

template <class B, class C>
struct Impl;  // specialised per backend in each component's header

template <class B, class C>
concept Implemented = requires { sizeof(Impl<B, C>); };

// A fused run of consecutive components: specialised by a backend with available = true and a
// forward. With fused_backward = true it also has a backward (and may keep its own Saved); without,
// its forward fills the components' own states and their backwards run, last first.
template <class B, class... Cs>
struct Fused {
  static constexpr bool available = false;
  static constexpr bool fused_backward = false;
};

template <class R>
consteval bool has_fused_backward() {
  if constexpr (requires { R::fused_backward; }) return R::fused_backward;
  else return false;
}

template <class B, class P, std::size_t I>
consteval std::size_t run_length() {
  if constexpr (I + 3 <= P::size) {
    if constexpr (Fused<B, At<P, I>, At<P, I + 1>, At<P, I + 2>>::available) return 3;
    else if constexpr (Fused<B, At<P, I>, At<P, I + 1>>::available) return 2;
    else return 1;
  } else if constexpr (I + 2 <= P::size) {
    if constexpr (Fused<B, At<P, I>, At<P, I + 1>>::available) return 2;
    else return 1;
  } else {
    return 1;
  }
}

// The implementation type that runs components I..I+L-1.
template <class B, class P, std::size_t I, std::size_t L>
struct run_impl {
  using type = typename decltype([]<std::size_t... K>(std::index_sequence<K...>) {
    return std::type_identity<Fused<B, At<P, I + K>...>>{};
  }(std::make_index_sequence<L>{}))::type;
};
template <class B, class P, std::size_t I>
struct run_impl<B, P, I, 1> {
  using type = Impl<B, At<P, I>>;
};

// Start indices of the runs a backend executes for a program, in order.
template <class B, class P, std::size_t I, std::size_t... S>
constexpr auto runs_from() {
  if constexpr (I >= P::size) return std::index_sequence<S...>{};
  else return runs_from<B, P, I + run_length<B, P, I>(), S..., I>();
}
template <class B, class P>
using runs_t = decltype(runs_from<B, P, 0>());

// Names the component when a backend cannot run it: the failing instantiation in the compiler's
// message is require_implementation<Backend, Component>.
template <class B, class C>
struct require_implementation {
  static_assert(Implemented<B, C>,
                "pgolf: a component of this model has no implementation for this backend (the backend and "
                "the component are the arguments of pgolf::require_implementation in this error)");
  static constexpr bool ok = true;
};

template <class B, class P, std::size_t I, std::size_t L>
consteval bool run_implemented() {
  if constexpr (L == 1) return require_implementation<B, At<P, I>>::ok;
  else return true;
}
template <class B, class P>
consteval bool program_implemented() {
  return []<std::size_t... S>(std::index_sequence<S...>) {
    return (run_implemented<B, P, S, run_length<B, P, S>()>() && ...);
  }(runs_t<B, P>{});
}

// ---------------------------------------------------------------------------------------------
// Saved state, model-level resources

struct NoState {};

template <class R>
consteval auto saved_type() {
  if constexpr (requires { typename R::Saved; }) return std::type_identity<typename R::Saved>{};
  else return std::type_identity<NoState>{};
}
template <class R>
using SavedOf = typename decltype(saved_type<R>())::type;

// The state a run keeps per virtual layer: a fused run with its own Saved keeps that; one without
// keeps its components' states (its forward fills them for their backwards).
template <class B, class P, std::size_t I, std::size_t L>
consteval auto run_state_type() {
  using R = typename run_impl<B, P, I, L>::type;
  if constexpr (L == 1 || has_fused_backward<R>()) {
    return std::type_identity<SavedOf<R>>{};
  } else {
    return []<std::size_t... K>(std::index_sequence<K...>) {
      return std::type_identity<std::tuple<SavedOf<Impl<B, At<P, I + K>>>...>>{};
    }(std::make_index_sequence<L>{});
  }
}
template <class B, class P, std::size_t I>
using RunState = typename decltype(run_state_type<B, P, I, run_length<B, P, I>()>())::type;

template <class B, class P, class Seq = runs_t<B, P>>
struct program_state;
template <class B, class P, std::size_t... S>
struct program_state<B, P, std::index_sequence<S...>> {
  using type = std::tuple<RunState<B, P, S>...>;
};
// Everything one execution of a program keeps for its backward.
template <class B, class P>
using ProgramState = typename program_state<B, P>::type;

// The implementation types a program runs (one per run), for the resources a model creates once.
template <class B, class P, class Seq = runs_t<B, P>>
struct program_impls;
template <class B, class P, std::size_t... S>
struct program_impls<B, P, std::index_sequence<S...>> {
  using type = Program<typename run_impl<B, P, S, run_length<B, P, S>()>::type...>;
};

// ---------------------------------------------------------------------------------------------
// Registers at run time

// Forward values: a pointer per register, typed by the backend (Backend::Value<r>).
template <class B>
struct Flow {
  std::array<const void*, kRegCount> p{};
  template <Reg r>
  const typename B::template Value<r>* get() const {
    return static_cast<const typename B::template Value<r>*>(p[std::size_t(r)]);
  }
  template <Reg r>
  void set(const typename B::template Value<r>* v) {
    p[std::size_t(r)] = v;
  }
};

// Gradient buffers of the registers: two per register (d(new) and d(old) of a redefinition that
// transforms its gradient), `cur` the one holding the register's gradient now.
template <class B>
struct GradRegs {
  std::array<std::array<void*, 2>, kRegCount> buf{};
  std::array<int, kRegCount> cur{};
  template <Reg r>
  typename B::template Grad<r>* now() const {
    return static_cast<typename B::template Grad<r>*>(buf[std::size_t(r)][std::size_t(cur[std::size_t(r)])]);
  }
};

// What a backward sees: out<r>() = d(the value of r it wrote), in<r>() = d(the value of r it read),
// accumulate<r> = whether in<r>() already holds other readers' contributions (add to it).
template <class B, Regs Reads, Regs Writes, Regs Acc>
struct GradIo {
  std::array<void*, kRegCount> in_{}, out_{};
  template <Reg r>
  static constexpr bool accumulate = has(Acc, r);
  template <Reg r>
  typename B::template Grad<r>* out() const {
    static_assert(has(Writes, r), "GradIo::out<r>: the component does not write this register");
    return static_cast<typename B::template Grad<r>*>(out_[std::size_t(r)]);
  }
  template <Reg r>
  typename B::template Grad<r>* in() const {
    static_assert(has(Reads, r), "GradIo::in<r>: the component does not read this register");
    return static_cast<typename B::template Grad<r>*>(in_[std::size_t(r)]);
  }
};

// The gradient interface of components I..I+L-1 taken together: external reads (not defined
// earlier in the run), every write, and the pass-through redefinitions no other member transforms.
template <class P, std::size_t I, std::size_t L>
consteval std::array<Regs, 3> run_dataflow() {
  Regs reads = 0, writes = 0, passes = 0, transforms = 0;
  [&]<std::size_t... K>(std::index_sequence<K...>) {
    ((reads |= reads_of<At<P, I + K>> & ~writes, writes |= writes_of<At<P, I + K>>,
      passes |= passes_of<At<P, I + K>>,
      transforms |= reads_of<At<P, I + K>> & writes_of<At<P, I + K>> & ~passes_of<At<P, I + K>>),
     ...);
  }(std::make_index_sequence<L>{});
  return {reads, writes, passes & ~transforms};
}

template <class P, std::size_t I, std::size_t L, Regs Sink, Regs Anchors>
consteval Regs run_accumulates() {
  constexpr auto df = run_dataflow<P, I, L>();
  Regs acc = 0;
  for (int r = 0; r < kRegCount; ++r) {
    const Reg reg = Reg(r);
    if (has(df[0], reg) && !has(df[1], reg) && (has(Anchors, reg) || later_reader<P>(I + L - 1, reg, Sink)))
      acc |= Regs(1) << r;
  }
  return acc;
}

template <class B, class P, std::size_t I, std::size_t L, Regs Sink, Regs Anchors>
using RunIo = GradIo<B, run_dataflow<P, I, L>()[0], run_dataflow<P, I, L>()[1],
                     run_accumulates<P, I, L, Sink, Anchors>()>;

// Binds a run's gradient buffers before its backward, and records where its input gradients are
// afterwards.
template <class B, class P, std::size_t I, std::size_t L, Regs Sink, Regs Anchors>
RunIo<B, P, I, L, Sink, Anchors> bind_grads(GradRegs<B>& g) {
  constexpr auto df = run_dataflow<P, I, L>();
  RunIo<B, P, I, L, Sink, Anchors> io;
  for (int r = 0; r < kRegCount; ++r) {
    const Reg reg = Reg(r);
    void* now = g.buf[std::size_t(r)][std::size_t(g.cur[std::size_t(r)])];
    if (has(df[1], reg)) io.out_[std::size_t(r)] = now;
    if (has(df[0], reg)) {
      if (has(df[1], reg) && !has(df[2], reg)) {  // transformed: d(input) goes to the other buffer
        io.in_[std::size_t(r)] = g.buf[std::size_t(r)][std::size_t(1 - g.cur[std::size_t(r)])];
        g.cur[std::size_t(r)] = 1 - g.cur[std::size_t(r)];
      } else {
        io.in_[std::size_t(r)] = now;
      }
    }
  }
  return io;
}

// Registers a program transforms (they need two gradient buffers).
template <class P>
consteval Regs transformed_regs() {
  return []<std::size_t... I>(std::index_sequence<I...>) {
    return (Regs(0) | ... | (reads_of<At<P, I>> & writes_of<At<P, I>> & ~passes_of<At<P, I>>));
  }(std::make_index_sequence<P::size>{});
}

// Per-token width a program's components give register r (the gradient buffers' size).
template <class C, class A>
constexpr int width_of(Reg r) {
  if constexpr (requires { C::template width<A>(r); }) return has(writes_of<C>, r) ? C::template width<A>(r) : 0;
  else return 0;
}
template <class P, class A>
constexpr int register_width(Reg r) {
  return [r]<std::size_t... I>(std::index_sequence<I...>) {
    int w = 0;
    ((w = width_of<At<P, I>, A>(r) > w ? width_of<At<P, I>, A>(r) : w), ...);
    return w;
  }(std::make_index_sequence<P::size>{});
}

// ---------------------------------------------------------------------------------------------
// What component code calls: value<r>(flow) / set_value<r>(flow, p) for forward registers,
// dout<r>(io) / din<r>(io) for gradients, adds<r, decltype(io)> for the accumulate decision,
// param / grad / weight<Component, row>(ctx) for its tensors at the context's block or layer.
template <Reg r, class B>
const typename B::template Value<r>* value(const Flow<B>& f) {
  return f.template get<r>();
}
template <Reg r, class B>
void set_value(Flow<B>& f, const typename B::template Value<r>* p) {
  f.template set<r>(p);
}
template <Reg r, class Io>
auto* dout(const Io& io) {
  return io.template out<r>();
}
template <Reg r, class Io>
auto* din(const Io& io) {
  return io.template in<r>();
}
template <Reg r, class Io>
inline constexpr bool adds = std::remove_cvref_t<Io>::template accumulate<r>;
template <class C, int j = 0, class Ctx>
auto* param(Ctx& c) {
  return c.template param_ptr<C, j>();
}
template <class C, int j = 0, class Ctx>
auto* grad(Ctx& c) {
  return c.template grad_ptr<C, j>();
}
template <class C, int j = 0, class Ctx>
auto* weight(Ctx& c) {
  return c.template weight_ptr<C, j>();
}
template <class R, class Ctx>
auto& resources(Ctx& c) {
  return c.template resources<R>();
}
template <class Ctx>
using arch_of = typename std::remove_cvref_t<Ctx>::Arch;

// ---------------------------------------------------------------------------------------------
// Running a program

// Forward of every run in order. `ctx` is the model's context for this program execution.
template <class B, class P, std::size_t... S>
void run_forward(auto& ctx, ProgramState<B, P>& state, Flow<B>& f, std::index_sequence<S...>) {
  [&]<std::size_t... J>(std::index_sequence<J...>) {
    constexpr std::size_t starts[] = {S...};
    ((run_impl<B, P, starts[J], run_length<B, P, starts[J]>()>::type::forward(ctx, std::get<J>(state), f)), ...);
  }(std::make_index_sequence<sizeof...(S)>{});
}

template <class B, class P>
void forward_program(auto& ctx, ProgramState<B, P>& state, Flow<B>& f) {
  static_assert(program_implemented<B, P>());
  run_forward<B, P>(ctx, state, f, runs_t<B, P>{});
}

template <class B, class P, std::size_t I, std::size_t L, Regs Sink, Regs Anchors, class State>
void run_backward(auto& ctx, State& st, GradRegs<B>& g) {
  using R = typename run_impl<B, P, I, L>::type;
  if constexpr (L == 1 || has_fused_backward<R>()) {
    auto io = bind_grads<B, P, I, L, Sink, Anchors>(g);
    R::backward(ctx, st, io);
  } else {  // forward-only fusion: the components' backwards, last first
    [&]<std::size_t... K>(std::index_sequence<K...>) {
      constexpr std::size_t n = sizeof...(K);
      ([&] {
        auto io = bind_grads<B, P, I + n - 1 - K, 1, Sink, Anchors>(g);
        Impl<B, At<P, I + n - 1 - K>>::backward(ctx, std::get<n - 1 - K>(st), io);
      }(), ...);
    }(std::make_index_sequence<L>{});
  }
}

template <class B, class P, Regs Sink, Regs Anchors>
void backward_program(auto& ctx, ProgramState<B, P>& state, GradRegs<B>& g) {
  [&]<std::size_t... S>(std::index_sequence<S...>) {
    constexpr std::size_t starts[] = {S...};
    constexpr std::size_t n = sizeof...(S);
    [&]<std::size_t... J>(std::index_sequence<J...>) {
      ((run_backward<B, P, starts[n - 1 - J], run_length<B, P, starts[n - 1 - J]>(), Sink, Anchors>(
           ctx, std::get<n - 1 - J>(state), g)),
       ...);
    }(std::make_index_sequence<n>{});
  }(runs_t<B, P>{});
}

}  // namespace pgolf
