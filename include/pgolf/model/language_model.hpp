// LanguageModel<Arch, Backend>: one model definition for every backend. The architecture (a GptArch<Spec>,
// a PRISM baseline, ...) is three programs of components and a depth plan:
//
//   Embed   ids -> x, x0                    (e.g. TokenEmbedding, StreamNorm, Anchor)
//   Block   one virtual layer (v, b, use)   (e.g. ResidMix, PreNorm, QkvProduct, ...)
//   Head    x -> loss                       (e.g. PreNorm, TiedHead, Softcap, CrossEntropy)
//   Skip    the U-Net connection between encoder and decoder layers, when the plan has skips
//
// and the model runs them: the embedding, then the block program once per virtual layer of the
// running schedule (block b = schedule[v]; U-Net skips between layers), then the head; the backward
// runs the same programs in reverse. The backend (Cpu<T>, Cuda) gives the register types, the memory
// and the run-time resources; each component's Impl<Backend, C> does the work, and a backend's fused
// runs replace consecutive components where it has them.
//
// Parameters: the table is built at compile time from the components' rows, in this order: the
// embedding's tensors; for each physical block the block-owned rows (in the architecture's RowOrder,
// the reference's state-dict order, then any other component in program order); for each virtual
// layer slot the layer-owned rows; the block program's global rows; the skip weights; the head's.
// A component finds its tensors through itself (param<C, row>(ctx)), at the context's block or layer.
// Activations: every component's saved tensors, per virtual layer, and the gradient registers live
// in one arena planned from the programs.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <span>
#include <string_view>
#include <tuple>
#include <vector>

#include "pgolf/backend/arena_plan.hpp"
#include "pgolf/core/error.hpp"
#include "pgolf/model/depth.hpp"
#include "pgolf/ops/cpu/distill.hpp"
#include "pgolf/nn/component.hpp"
#include "pgolf/nn/param_table.hpp"

namespace pgolf {

// ---------------------------------------------------------------------------------------------
// The parameter table of an architecture

template <class P, class F>
constexpr void for_types(F&& f) {
  [&]<std::size_t... I>(std::index_sequence<I...>) { (f(std::type_identity<At<P, I>>{}), ...); }(
      std::make_index_sequence<P::size>{});
}

// The block program of the parallel-lane layers (an architecture's ParallelBlock), or none.
template <class A>
consteval auto parallel_block_of() {
  if constexpr (requires { typename A::ParallelBlock; }) return std::type_identity<typename A::ParallelBlock>{};
  else return std::type_identity<Program<>>{};
}

template <class A>
struct ArchPrograms {
  using Embed = typename A::Embed;
  using Block = typename A::Block;
  using ParallelBlock = typename decltype(parallel_block_of<A>())::type;
  using Head = typename A::Head;
  using Skip = typename A::Skip;  // a component, or void
  using SkipProgram = std::conditional_t<std::is_void_v<Skip>, Program<>, Program<Skip>>;
  // Every component type of the model, each once.
  using Registry = unique_t<cat_t<Embed, Block, ParallelBlock, SkipProgram, Head>>;
  // Block components in table order: the architecture's RowOrder first, then the rest.
  template <class P>
  struct in_block;
  template <class... Cs>
  struct in_block<Program<Cs...>> {
    using type = cat_t<when<program_contains<Cs, Block>::value, Cs>...>;
  };
  // (The embedding program's components come last: a component that only joins the table, as in a
  // lone test run, may own per-block rows too.)
  using BlockRows = unique_t<cat_t<typename in_block<typename A::RowOrder>::type, Block, ParallelBlock, Embed>>;
  using LayerPrograms = unique_t<cat_t<Block, ParallelBlock>>;
  static constexpr int kScopes = [] {
    int n = A::depth.blocks() > A::depth.layer_slots() ? A::depth.blocks() : A::depth.layer_slots();
    return n > 0 ? n : 1;
  }();
};

// Visits every row in table order: f(component index in Registry, local row, Row, scope index).
template <class A, class F>
constexpr void visit_rows(F&& f) {
  using AP = ArchPrograms<A>;
  using Registry = typename AP::Registry;
  auto globals_of = [&]<class P>(std::type_identity<P>) {
    for_types<unique_t<P>>([&]<class C>(std::type_identity<C>) {
      constexpr RowList rl = rows_of<C, A>();
      for (int j = 0; j < rl.count; ++j)
        if (rl.row[std::size_t(j)].scope == Scope::global) f(index_in<C, Registry>(), j, rl.row[std::size_t(j)], 0);
    });
  };
  auto scoped = [&](Scope scope, int index) {
    for_types<typename AP::BlockRows>([&]<class C>(std::type_identity<C>) {
      constexpr RowList rl = rows_of<C, A>();
      for (int j = 0; j < rl.count; ++j)
        if (rl.row[std::size_t(j)].scope == scope) f(index_in<C, Registry>(), j, rl.row[std::size_t(j)], index);
    });
  };
  globals_of(std::type_identity<typename AP::Embed>{});
  for (int b = 0; b < A::depth.blocks(); ++b) scoped(Scope::block, b);
  for (int s = 0; s < A::depth.layer_slots(); ++s) scoped(Scope::layer, s);
  globals_of(std::type_identity<typename AP::LayerPrograms>{});
  globals_of(std::type_identity<typename AP::SkipProgram>{});
  globals_of(std::type_identity<typename AP::Head>{});
}

template <class A>
constexpr std::size_t arch_row_count() {
  std::size_t n = 0;
  visit_rows<A>([&](int, int, const Row&, int) { ++n; });
  return n;
}

template <class A>
struct ArchLayout {
  static constexpr int kComponents = ArchPrograms<A>::Registry::size;
  static constexpr int kScopes = ArchPrograms<A>::kScopes;
  std::array<ParamInfo, arch_row_count<A>()> table{};
  // row[component][local row][block or layer] -> table row, -1 where the component has none
  std::array<std::array<std::array<int, kScopes>, RowList::kCapacity>, std::size_t(kComponents)> row{};
};

template <class A>
constexpr ArchLayout<A> arch_layout() {
  ArchLayout<A> L{};
  for (auto& c : L.row)
    for (auto& j : c) j.fill(-1);
  ParamTableBuilder<arch_row_count<A>()> tb{L.table};
  visit_rows<A>([&](int ci, int j, const Row& r, int index) {
    ParamName name;
    if (r.scope == Scope::block) name = ParamName("blocks.").append(index).append(".");
    if (r.scope == Scope::layer) name = ParamName("layers.").append(index).append(".");
    name.append(r.name);
    for (const auto& p : L.table)  // a name twice would make checkpoints ambiguous
      if (p.rows > 0 && p.name.view() == name.view()) throw "parameter table: two tensors share a name";
    L.row[std::size_t(ci)][std::size_t(j)][std::size_t(index)] =
        int(tb.add_scoped(name, r.rows, r.cols, r.rank, r.init, r.group, r.control, r.scope, index));
  });
  tb.finish();
  return L;
}

// ---------------------------------------------------------------------------------------------
// What running programs needs besides the programs: each implementation's resources (built once),
// the arena plan of a program's saved state, and the context components see.

// The resources of the implementations in Impls (a Program of implementation types), each built from
// the shape, and the backend's runtime when it needs the runtime's handles.
template <class A, class B, class Impls>
class ResourceSet {
  template <class R>
  struct Slot {
    static auto make(const Shape& sh, typename B::Runtime& rt) {
      if constexpr (requires { typename R::template Resources<A>; }) {
        using X = typename R::template Resources<A>;
        if constexpr (std::is_constructible_v<X, const Shape&, typename B::Runtime&>) return X(sh, rt);
        else return X(sh);
      } else {
        return NoState{};
      }
    }
    decltype(make(std::declval<const Shape&>(), std::declval<typename B::Runtime&>())) value;
    Slot(const Shape& sh, typename B::Runtime& rt) : value(make(sh, rt)) {}
  };
  template <class P>
  struct Tuple;
  template <class... R>
  struct Tuple<Program<R...>> {
    using type = std::tuple<Slot<R>...>;
    static type make(const Shape& sh, typename B::Runtime& rt) { return type(Slot<R>(sh, rt)...); }
  };

 public:
  ResourceSet(const Shape& sh, typename B::Runtime& rt) : slots_(Tuple<Impls>::make(sh, rt)) {}
  template <class R>
  auto& get() {
    constexpr int i = index_in<R, Impls>();
    static_assert(i >= 0, "resources<R>: not an implementation this model runs");
    return std::get<std::size_t(i)>(slots_).value;
  }

 private:
  typename Tuple<Impls>::type slots_;
};

// Plans the saved tensors of one execution of program P.
template <class A, class B, class P, std::size_t I, class State>
void plan_run(ArenaPlan& plan, State& st, const Shape& sh) {
  constexpr std::size_t L = run_length<B, P, I>();
  using R = typename run_impl<B, P, I, L>::type;
  if constexpr (L == 1 || has_fused_backward<R>()) {
    if constexpr (requires { R::template plan<A>(plan, st, sh); }) R::template plan<A>(plan, st, sh);
  } else {
    [&]<std::size_t... K>(std::index_sequence<K...>) {
      ([&] {
        using CI = Impl<B, At<P, I + K>>;
        if constexpr (requires { CI::template plan<A>(plan, std::get<K>(st), sh); })
          CI::template plan<A>(plan, std::get<K>(st), sh);
      }(), ...);
    }(std::make_index_sequence<L>{});
  }
}
template <class A, class B, class P>
void plan_program(ArenaPlan& plan, ProgramState<B, P>& st, const Shape& sh) {
  [&]<std::size_t... S>(std::index_sequence<S...>) {
    constexpr std::size_t starts[] = {S...};
    [&]<std::size_t... J>(std::index_sequence<J...>) {
      (plan_run<A, B, P, starts[J]>(plan, std::get<J>(st), sh), ...);
    }(std::make_index_sequence<sizeof...(S)>{});
  }(runs_t<B, P>{});
}

// The gradient registers of programs Ps: per register the largest width any of them writes, two
// buffers where one of them transforms the register's gradient.
template <class A, class... Ps>
consteval std::array<int, kRegCount> grad_register_widths() {
  std::array<int, kRegCount> w{};
  for (int r = 0; r < kRegCount; ++r) w[std::size_t(r)] = std::max({0, register_width<Ps, A>(Reg(r))...});
  return w;
}
template <class A, class B, class... Ps>
void plan_grad_registers(ArenaPlan& plan, GradRegs<B>& g, std::size_t tokens) {
  constexpr std::array<int, kRegCount> widths = grad_register_widths<A, Ps...>();
  constexpr Regs pairs = (Regs(0) | ... | transformed_regs<Ps>());
  [&]<int... R>(std::integer_sequence<int, R...>) {
    ([&] {
      constexpr Reg r = Reg(R);
      constexpr int w = widths[std::size_t(R)];
      if constexpr (w > 0) {
        using G = typename B::template Grad<r>;
        plan.take_raw(g.buf[std::size_t(R)][0], tokens * std::size_t(w) * sizeof(G));
        plan.take_raw(g.buf[std::size_t(R)][1], has(pairs, r) ? tokens * std::size_t(w) * sizeof(G) : 0);
      }
    }(), ...);
  }(std::make_integer_sequence<int, kRegCount>{});
}

// The implementations (one per run) of every program of an architecture, each once.
template <class B, class P>
using impls_of = typename program_impls<B, P>::type;

// What a component sees: the architecture, the batch, the virtual layer (v, its block b, its
// per-layer slot), the loss and its scale, its tensors (param<C, row>(ctx) at b or slot), the
// backend's runtime and its implementation's resources.
template <class A, class B, class Impls>
struct ModelContext {
  using Arch = A;
  static constexpr auto layout = arch_layout<A>();
  static constexpr auto storage_table = B::storage_table(layout.table);

  const Shape& shape;
  typename B::Runtime& runtime;
  ResourceSet<A, B, Impls>& res;
  int v = -1, b = 0, slot = 0;
  double loss = 0;        // set by the loss component's forward
  double grad_scale = 1;  // the backward computes d(grad_scale * loss)

  void at_layer(int phase, int layer) {
    v = layer;
    b = A::depth.phase[phase][layer];
    slot = A::depth.slot(phase, layer);
  }
  std::size_t tokens() const { return shape.tokens(); }
  int batch() const { return shape.batch; }
  int seq() const { return shape.seq; }
  const std::int32_t* ids() const { return runtime.ids(); }
  const std::int32_t* targets() const { return runtime.targets(); }
  typename B::Runtime& rt() const { return runtime; }

  template <class C, int j>
  std::size_t offset() const {
    constexpr int ci = index_in<C, typename ArchPrograms<A>::Registry>();
    static_assert(ci >= 0, "param<C>: the component is not part of this model");
    constexpr RowList rl = rows_of<C, A>();
    static_assert(j >= 0 && j < rl.count, "param<C, j>: the component has no such row");
    constexpr Scope scope = rl.row[std::size_t(j)].scope;
    const int index = scope == Scope::block ? b : scope == Scope::layer ? slot : 0;
    const int row = layout.row[std::size_t(ci)][std::size_t(j)][std::size_t(index)];
    PGOLF_CHECK(row >= 0, "parameter row ", j, " of a component at scope index ", index, " is not in the table");
    return storage_table[std::size_t(row)].offset;
  }
  template <class C, int j>
  typename B::Scalar* param_ptr() const { return runtime.params() + offset<C, j>(); }
  template <class C, int j>
  typename B::Scalar* grad_ptr() const { return runtime.grads() + offset<C, j>(); }
  template <class C, int j>
  const typename B::Weight* weight_ptr() const { return runtime.weights() + offset<C, j>(); }
  template <class R>
  auto& resources() const { return res.template get<R>(); }
};

// ---------------------------------------------------------------------------------------------
// The model

template <class A, class B>
class LanguageModel {
  using AP = ArchPrograms<A>;
  using Embed = typename AP::Embed;
  using Block = typename AP::Block;
  using ParBlock = typename AP::ParallelBlock;
  using Head = typename AP::Head;
  using Skip = typename AP::Skip;
  using Registry = typename AP::Registry;
  // Parallel two-lane layers (nn/parallel_lanes.hpp): from A::parallel_start[phase] on, the layers run
  // ParBlock over the lanes x and x1.
  static constexpr bool kParallel = ParBlock::size > 0;
  static constexpr bool kSkips = !std::is_void_v<Skip> && A::depth.max_skips() > 0;
  using SkipImpl = std::conditional_t<kSkips, Impl<B, std::conditional_t<kSkips, Skip, void>>, void>;
  // The head's last run computes the loss and keeps the per-position losses.
  static constexpr std::size_t kLossRun = []<std::size_t... S>(std::index_sequence<S...>) {
    return sizeof...(S) - 1;
  }(runs_t<B, Head>{});
  static constexpr std::size_t kLossStart = []<std::size_t... S>(std::index_sequence<S...>) {
    constexpr std::size_t starts[] = {S...};
    return starts[sizeof...(S) - 1];
  }(runs_t<B, Head>{});
  using LossRun = typename run_impl<B, Head, kLossStart, Head::size - kLossStart>::type;
  static constexpr Regs kBlockAnchors = regs<Reg::x0>;
  static constexpr bool kAnchor = register_width<Embed, A>(Reg::x0) > 0;

  // The implementations whose resources the model creates once.
  using Impls = unique_t<cat_t<impls_of<B, Embed>, impls_of<B, Block>, impls_of<B, ParBlock>, impls_of<B, Head>,
                               std::conditional_t<kSkips, Program<SkipImpl>, Program<>>>>;
  using Ctx = ModelContext<A, B, Impls>;

 public:
  using Arch = A;
  using Backend = B;
  using Scalar = typename B::Scalar;
  static constexpr auto layout = arch_layout<A>();
  static constexpr auto param_table = layout.table;
  static constexpr std::size_t num_params = table_size(param_table);
  // The parameter buffer's layout on the backend (the table's on the CPU; aligned tensors on CUDA).
  static constexpr auto storage_table = B::storage_table(param_table);
  static constexpr int kVocab = A::vocab, kDim = A::dim;
  static constexpr int kPhases = A::depth.phases;

  LanguageModel(int batch, int seq_len)
      : shape_{check_positive(batch, "batch"), check_positive(seq_len, "sequence length")},
        rt_(B::storage_size(storage_table)),
        resources_(shape_, rt_),
        layers_(std::size_t(A::depth.max_layers())),
        par_layers_(kParallel ? std::size_t(A::depth.max_layers()) : 0),
        layer_out_(std::size_t(A::depth.max_layers())) {
    if constexpr (kSkips) skip_state_.resize(std::size_t(A::depth.max_layers()));  // per decoder layer
    plan();
  }

  // The reference initialisation, drawn by (seed, tensor name, element): the same on every backend.
  void init(std::uint64_t seed) {
    std::vector<Scalar> host(num_params);
    init_params<Scalar>(param_table, seed, std::span<Scalar>(host));
    set_params(host);
  }

  // Host copies in the table layout (checkpoints, export, tests).
  void set_params(std::span<const Scalar> host) { rt_.set_params(param_table, storage_table, host); }
  std::vector<Scalar> params_host() const { return rt_.params_host(param_table, storage_table); }
  std::vector<Scalar> grads_host() const { return rt_.grads_host(param_table, storage_table); }

  // What the Trainer steps: host spans on the CPU, device buffers on CUDA (storage layout).
  auto params() { return rt_.param_span(); }
  auto params() const { return rt_.param_span(); }
  auto grads() { return rt_.grad_span(); }
  auto grads() const { return rt_.grad_span(); }
  void zero_grad() { rt_.zero_grad(); }
  typename B::Runtime& runtime() { return rt_; }

  int batch() const { return shape_.batch; }
  int seq_len() const { return shape_.seq; }
  std::size_t tokens() const { return shape_.tokens(); }

  // Depth phase: 0 runs the schedule, 1 the loop-on schedule (models with two).
  int phase() const { return phase_; }
  void set_phase(int p) {
    PGOLF_CHECK(p >= 0 && p < kPhases, "depth phase ", p, " does not exist: this model has ", kPhases,
                kPhases == 1 ? " schedule" : " schedules");
    phase_ = p;
  }
  int virtual_layers() const { return A::depth.layers(phase_); }

  // Tensor lookup by name (tests, tools): the table row, or an error naming the tensor.
  static const ParamInfo& row(std::string_view name) {
    const ParamInfo* p = find_param(param_table, name);
    PGOLF_CHECK(p != nullptr, "no parameter named ", std::string(name), " in this model");
    return *p;
  }
  Scalar* param(std::string_view name) requires(!B::device) { return rt_.params() + row(name).offset; }
  const Scalar* param(std::string_view name) const requires(!B::device) { return rt_.params() + row(name).offset; }
  Scalar* grad(std::string_view name) requires(!B::device) { return rt_.grads() + row(name).offset; }

  // Per-position losses (nats) of the last forward, in (batch, position) order.
  auto row_losses() const { return LossRun::row_losses(std::get<kLossRun>(head_), tokens()); }
  // The final logits [tokens, vocab] of the last forward (CPU; valid until backward).
  auto logits() const requires(!B::device) { return LossRun::logits(std::get<kLossRun>(head_), tokens(), kVocab); }
  std::size_t arena_bytes() const { return rt_.arena_bytes(); }

  // Self-distillation (CPU): until clear_teacher(), forward/backward compute the distillation loss
  // against these logits [tokens, vocab] (a teacher's logits() of the same batch; the span must stay
  // valid). row_losses() stay the cross-entropy. batch_rows defaults to this model's batch.
  void set_teacher(std::span<const Scalar> teacher_logits, ops::cpu::DistillOptions o) requires(!B::device) {
    PGOLF_CHECK(teacher_logits.size() == tokens() * std::size_t(kVocab), "set_teacher: got ", teacher_logits.size(),
                " logits, expected tokens*vocab = ", tokens() * std::size_t(kVocab));
    o.batch_rows = batch();
    rt_.set_teacher(teacher_logits.data(), o);
  }
  // Self-distillation on either backend: until clear_teacher(), forward/backward compute the
  // distillation loss against the logits of `teacher`'s last forward, which must be of the same
  // batch (same shape; ids and targets are the caller's to keep equal) and must not run again
  // before this model's backward. The CUDA backend distils through the symmetric softcap's head
  // only (Fused<Cuda, Softcap, CrossEntropy>); elsewhere on CUDA the model has no distill_from.
  static constexpr bool distills = requires(const typename LossRun::Saved& s) { LossRun::teacher_logits(s); };
  void distill_from(const LanguageModel& teacher, ops::cpu::DistillOptions o) requires distills {
    PGOLF_CHECK(teacher.batch() == batch() && teacher.seq_len() == seq_len(), "distill_from: the teacher's batch is ",
                teacher.batch(), " x ", teacher.seq_len(), ", this model's ", batch(), " x ", seq_len());
    const auto* z = LossRun::teacher_logits(std::get<kLossRun>(teacher.head_));
    PGOLF_CHECK(z != nullptr, "distill_from: the teacher has not run a forward");
    o.batch_rows = batch();
    rt_.set_teacher(z, o);
  }
  void clear_teacher() { rt_.clear_teacher(); }

  // ids, targets: [batch, seq_len] row-major; a target < 0 is not scored. Returns the mean
  // cross-entropy (nats) over scored positions.
  double forward(std::span<const std::int32_t> ids, std::span<const std::int32_t> targets) {
    PGOLF_CHECK(ids.size() == tokens(), "forward: got ", ids.size(), " input ids, expected batch*seq_len = ", tokens());
    PGOLF_CHECK(targets.size() == tokens(), "forward: got ", targets.size(), " targets, expected ", tokens());
    rt_.begin_forward(ids, targets, kVocab);
    Ctx c{shape_, rt_, resources_};
    Flow<B> f;
    forward_program<B, Embed>(c, embed_, f);
    forward_phase_ = phase_;
    const Schedule& s = A::depth.phase[phase_];
    for (int v = 0; v < s.count; ++v) {
      c.at_layer(phase_, v);
      if constexpr (kParallel)
        if (v == parallel_start(phase_)) set_value<Reg::x1>(f, value<Reg::x>(f));  // the lanes split
      if constexpr (kSkips)
        if (const int i = A::depth.skip_into(phase_, v); i >= 0)
          SkipImpl::forward(c, skip_state_[std::size_t(v)], f, layer_out_[std::size_t(A::depth.skip_source(phase_, v))], i);
      if (parallel_at(phase_, v)) {
        if constexpr (kParallel) forward_program<B, ParBlock>(c, par_layers_[std::size_t(v)], f);
      } else {
        forward_program<B, Block>(c, layers_[std::size_t(v)], f);
      }
      layer_out_[std::size_t(v)] = value<Reg::x>(f);
    }
    forward_program<B, Head>(c, head_, f);
    forwarded_ = true;
    return c.loss;
  }

  // Adds d(grad_scale * loss)/d(params) into grads() for the last forward.
  void backward(double grad_scale = 1.0) {
    PGOLF_CHECK(forwarded_, "backward called before forward");
    Ctx c{shape_, rt_, resources_};
    c.grad_scale = grad_scale;
    GradRegs<B> g = grad_regs_;
    const std::size_t ND = tokens() * std::size_t(kDim);
    if constexpr (kAnchor) B::zero(g.template now<Reg::x0>(), ND);  // collects over every layer
    if constexpr (kSkips) B::zero(dskip_, std::size_t(A::depth.max_skips()) * ND);
    backward_program<B, Head, 0, 0>(c, head_, g);
    const int p = forward_phase_;
    for (int v = A::depth.layers(p) - 1; v >= 0; --v) {
      c.at_layer(p, v);
      if constexpr (kSkips)
        if (const int i = A::depth.skip_from(p, v); i >= 0) {  // this output also fed decoder skip i
          B::add_into(dskip_ + std::size_t(i) * ND, ND, g.template now<Reg::x>());
          B::zero(dskip_ + std::size_t(i) * ND, ND);  // an earlier loop's skip i collects afresh
        }
      if (parallel_at(p, v)) {
        if constexpr (kParallel)
          backward_program<B, ParBlock, regs<Reg::x, Reg::x1>, kBlockAnchors>(c, par_layers_[std::size_t(v)], g);
      } else {
        backward_program<B, Block, regs<Reg::x>, kBlockAnchors>(c, layers_[std::size_t(v)], g);
      }
      if constexpr (kSkips)
        if (const int i = A::depth.skip_into(p, v); i >= 0)  // the stream's gradient: scaled in place when gated
          SkipImpl::backward(c, skip_state_[std::size_t(v)], g.template now<Reg::x>(), dskip_ + std::size_t(i) * ND, i);
      if constexpr (kParallel)
        if (v == parallel_start(p)) B::add_into(g.template now<Reg::x1>(), ND, g.template now<Reg::x>());  // the split
    }
    backward_program<B, Embed, regs<Reg::x>, 0>(c, embed_, g);
  }

 private:
  static constexpr int parallel_start(int p) {
    if constexpr (kParallel) return A::parallel_start[std::size_t(p)];
    else return -1;
  }
  static constexpr bool parallel_at(int p, int v) { return kParallel && v >= parallel_start(p); }

  static int check_positive(int v, const char* what) {
    PGOLF_CHECK(v > 0, "model: ", what, " must be positive, got ", v);
    return v;
  }
  void plan() {
    static_assert(program_implemented<B, Embed>() && program_implemented<B, Block>() &&
                  program_implemented<B, ParBlock>() && program_implemented<B, Head>());
    ArenaPlan plan;
    plan_program<A, B, Embed>(plan, embed_, shape_);
    for (int v = 0; v < A::depth.max_layers(); ++v) {
      bool serial = false, parallel = false;
      for (int p = 0; p < kPhases; ++p)
        if (v < A::depth.layers(p)) (parallel_at(p, v) ? parallel : serial) = true;
      if (serial) plan_program<A, B, Block>(plan, layers_[std::size_t(v)], shape_);
      if constexpr (kParallel)
        if (parallel) plan_program<A, B, ParBlock>(plan, par_layers_[std::size_t(v)], shape_);
    }
    plan_program<A, B, Head>(plan, head_, shape_);
    if constexpr (kSkips) {
      for (int v = 0; v < A::depth.max_layers(); ++v)
        if (A::depth.skip_into(0, v) >= 0 || (kPhases > 1 && A::depth.skip_into(kPhases - 1, v) >= 0))
          SkipImpl::template plan<A>(plan, skip_state_[std::size_t(v)], shape_);
      plan.take(dskip_, std::size_t(A::depth.max_skips()) * tokens() * std::size_t(kDim));
    }
    plan_grad_registers<A, B, Embed, Block, ParBlock, Head>(plan, grad_regs_, tokens());
    rt_.allocate(plan, shape_);
  }

  Shape shape_;
  typename B::Runtime rt_;
  ResourceSet<A, B, Impls> resources_;
  ProgramState<B, Embed> embed_{};
  std::vector<ProgramState<B, Block>> layers_;
  std::vector<ProgramState<B, ParBlock>> par_layers_;
  ProgramState<B, Head> head_{};
  std::conditional_t<kSkips, std::vector<SavedOf<std::conditional_t<kSkips, SkipImpl, NoState>>>, NoState> skip_state_{};
  std::vector<const typename B::template Value<Reg::x>*> layer_out_;
  typename B::template Grad<Reg::x>* dskip_ = nullptr;
  GradRegs<B> grad_regs_{};
  int phase_ = 0, forward_phase_ = 0;
  bool forwarded_ = false;
};

}  // namespace pgolf
