// The parameter table of Prism<Spec>, built at compile time from the rows each module declares (the
// block's own, BlockCore; the router, router_rows; each expert's rows()), and where every module of
// every block finds its tensors (ModuleRows, indexed by the module's own row names). Names follow the
// PyTorch port (tests/golden/make_prism_golden.py) one to one.
// Per block, in order: the MRB's norm and projections, the experts' norm, the router gate, then each
// expert of the block's mix in router order:
//   neural    w_gate [H,D], w_up [H,D], w_down [D,H]                      (N(0, init_std))
//   memory    q [M,D], v [M,D], write_gate [1,D]+[1], erase [M,D]+[M], read_out [D,M]
//             and, causal only, address [S,D]+[S]                        (PyTorch's default init);
//             causal block 0 has no erase gate (its incoming tape is empty)
//   symbolic  select [6,D]+[6], arg [A*D,D]+[A*D], out [D,D]           (A = 3 reference, 2 causal)
#pragma once

#include <array>
#include <cstddef>

#include "pgolf/model/prism/block.hpp"
#include "pgolf/model/prism_spec.hpp"
#include "pgolf/nn/component.hpp"
#include "pgolf/nn/param_table.hpp"

namespace pgolf {

// The model's own tensors: the embedding, the final norm, an untied head.
struct PrismModelRows {
  enum Row : int { kEmbed, kFinalNorm, kHead };
};

template <PrismSpec S, class F>
constexpr void visit_prism_modules(F&& f) {
  // f(the module's rows, block, expert index, module: 0 the block's own, 1 the router, 2 an expert)
  for (int b = 0; b < S.layers; ++b) {
    f(prism::BlockCore<S>::rows(b), b, -1, 0);
    const ExpertMix mix = S.mix_of(b);
    f(prism::router_rows<S>(mix.count), b, -1, 1);
    for (int i = 0; i < mix.count; ++i) {
      switch (mix.kinds[std::size_t(i)]) {
        case ExpertKind::neural: f(prism::NeuralExpert<S, float>::rows(b), b, i, 2); break;
        case ExpertKind::memory: f(prism::MemoryExpert<S, float>::rows(b), b, i, 2); break;
        case ExpertKind::symbolic: f(prism::SymbolicExpert<S, float>::rows(b), b, i, 2); break;
      }
    }
  }
}

template <PrismSpec S>
constexpr std::size_t prism_param_count() {
  std::size_t n = 2 + (S.tie_embeddings ? 0 : 1);  // embedding, final norm, untied head
  visit_prism_modules<S>([&](const RowList& rl, int, int, int) {
    for (int j = 0; j < rl.count; ++j) n += rl.row[std::size_t(j)].rows > 0 ? 1 : 0;
  });
  return n;
}

// Tensors an expert of kind k has in block b.
template <PrismSpec S>
constexpr int prism_expert_rows(ExpertKind k, int block) {
  int n = 0;
  visit_prism_modules<S>([&](const RowList& rl, int b, int expert, int module) {
    if (module != 2 || b != block || S.mix_of(b).kinds[std::size_t(expert)] != k) return;
    for (int j = 0; j < rl.count; ++j) n += rl.row[std::size_t(j)].rows > 0 ? 1 : 0;
  });
  return n;
}

// The table and, for each block, where each module's rows are (ModuleRows: offsets into the buffer).
template <PrismSpec S>
struct PrismLayout {
  std::array<ParamInfo, prism_param_count<S>()> table{};
  std::array<prism::BlockLayout, std::size_t(S.layers)> blocks{};
  ModuleRows model{};  // PrismModelRows
};

template <PrismSpec S>
constexpr PrismLayout<S> prism_layout() {
  static_assert(validate_prism_spec<S>());
  PrismLayout<S> L{};
  ParamTableBuilder<std::tuple_size_v<decltype(L.table)>> tb{L.table};
  const int D = S.d_model;
  const Init normal{InitKind::normal, S.init_std}, ones{InitKind::ones};
  auto off = [&](std::size_t row) { return L.table[row].offset; };
  L.model.at[PrismModelRows::kEmbed] = off(tb.add("embed.weight", S.vocab, D, 2, normal, OptimGroup::adam_embed, false, -1));
  visit_prism_modules<S>([&](const RowList& rl, int b, int expert, int slot) {
    prism::BlockLayout& bl = L.blocks[std::size_t(b)];
    ModuleRows& mr = slot == 0 ? bl.core : slot == 1 ? bl.router : bl.expert[std::size_t(expert)];
    for (int j = 0; j < rl.count; ++j) {
      const Row& r = rl.row[std::size_t(j)];
      if (r.rows == 0) continue;  // a row this block's module does not have
      ParamName name = ParamName("blocks.").append(b).append(".");
      if (slot == 1) name.append("router.");
      if (slot == 2) name.append("router.experts.").append(expert).append(".");
      name.append(r.name);
      mr.at[std::size_t(j)] = off(tb.add(name, r.rows, r.cols, r.rank, r.init, r.group, r.control, b));
    }
  });
  L.model.at[PrismModelRows::kFinalNorm] =
      off(tb.add("norm_f.weight", D, 1, 1, ones, OptimGroup::adam_scalar, true, -1));
  L.model.at[PrismModelRows::kHead] =
      S.tie_embeddings ? L.model.at[PrismModelRows::kEmbed]
                       : off(tb.add("head.weight", S.vocab, D, 2, normal, OptimGroup::adam_head, false, -1));
  tb.finish();
  return L;
}

// PRISM.md 2.10's closed forms, for the reference behaviour (the causal one adds S*D+S per memory
// expert for the write address, drops the D*D+D of the unused argument head and block 0's erase
// gate, D*M+M).
constexpr long long prism_block_params(long long D, long long K, long long M, long long H, long long E, bool memory,
                                       bool neural = true, bool symbolic = true) {
  long long n = 2 * (D * D + D) + D * K + K + 2 * D + (D + M) * E + E;
  if (neural) n += 3 * D * H;
  if (memory) n += 4 * D * M + D + 1 + M;
  if (symbolic) n += 4 * D * D + 9 * D + 6;
  return n;
}

}  // namespace pgolf
