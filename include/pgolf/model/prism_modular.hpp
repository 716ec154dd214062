// PRISM's modular pretraining (PRISM.md 5.1): train a model whose blocks hold a single expert kind,
// then load those experts into every block of the full model, the last block included, and train
// the whole model. The reference renames keys by the kind's index in the full mix and so writes the
// last block's symbolic expert to index 2, a key that does not exist there (it has [neural,
// symbolic]); the expert is silently never loaded. Here tensors are matched by block and name
// within the expert, with the index taken from each block's own mix, and every copy is checked.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "pgolf/core/error.hpp"
#include "pgolf/model/prism.hpp"

namespace pgolf {

// The same architecture with one expert kind (the reference's modular_config: top-1, L >= 2 for memory).
constexpr PrismSpec prism_single_kind(PrismSpec s, ExpertKind k) {
  s.experts = ExpertMix{.count = 1, .kinds = {k, k, k}};
  s.router_topk = 1;
  if (k == ExpertKind::memory && s.layers < 2) s.layers = 2;
  return s;
}

namespace detail {
// "blocks.B.router.experts.I.rest" -> (B, I, rest); false for other names.
inline bool split_expert_name(std::string_view n, int& block, int& index, std::string_view& rest) {
  constexpr std::string_view pre = "blocks.", mid = ".router.experts.";
  if (n.substr(0, pre.size()) != pre) return false;
  const auto m = n.find(mid);
  if (m == std::string_view::npos) return false;
  block = std::stoi(std::string(n.substr(pre.size(), m - pre.size())));
  const auto after = n.substr(m + mid.size());
  const auto dot = after.find('.');
  index = std::stoi(std::string(after.substr(0, dot)));
  rest = after.substr(dot + 1);
  return true;
}
}  // namespace detail

// Copies the experts of Single (a single-kind model of the same sizes) into every block of `full`
// that has that kind. Returns the number of blocks filled.
template <PrismSpec Full, PrismSpec Single, class T>
int assemble_experts(Prism<Full, T>& full, std::span<const T> single_params) {
  static_assert(Single.experts.count == 1, "assemble_experts: the source spec must have exactly one expert kind");
  static_assert(Single.d_model == Full.d_model && Single.d_mem == Full.d_mem && Single.num_slots == Full.num_slots &&
                    Single.neural_hidden_mult == Full.neural_hidden_mult && Single.behaviour == Full.behaviour &&
                    Single.layers == Full.layers,
                "assemble_experts: the source spec must have the full spec's sizes and behaviour");
  constexpr ExpertKind kind = Single.experts.kinds[0];
  using Src = Prism<Single, T>;
  PGOLF_CHECK(single_params.size() == Src::num_params, "assemble_experts: got ", single_params.size(),
              " source parameters, the single-kind model has ", Src::num_params);
  int blocks = 0;
  for (int b = 0; b < Full.layers; ++b) {
    const ExpertMix mix = Full.mix_of(b);
    int index = -1;
    for (int i = 0; i < mix.count; ++i)
      if (mix.kinds[std::size_t(i)] == kind) index = i;
    if (index < 0) continue;
    int copied = 0;
    for (std::size_t r = 0; r < Prism<Full, T>::param_table.size(); ++r) {
      const ParamInfo& dst = Prism<Full, T>::param_table[r];
      int db = 0, di = 0;
      std::string_view rest;
      if (!detail::split_expert_name(dst.name.view(), db, di, rest) || db != b || di != index) continue;
      const ParamInfo* src = nullptr;
      for (const ParamInfo& s : Src::param_table) {
        int sb = 0, si = 0;
        std::string_view srest;
        if (detail::split_expert_name(s.name.view(), sb, si, srest) && sb == b && si == 0 && srest == rest) src = &s;
      }
      PGOLF_CHECK(src != nullptr, "assemble_experts: ", dst.name.c_str(), " has no counterpart in the single-kind model");
      PGOLF_CHECK(src->rows == dst.rows && src->cols == dst.cols, "assemble_experts: shape mismatch for ",
                  dst.name.c_str());
      std::copy_n(single_params.begin() + std::ptrdiff_t(src->offset), dst.numel(), full.param(r));
      ++copied;
    }
    PGOLF_CHECK(copied == prism_expert_rows<Full>(kind, b), "assemble_experts: block ", b, " received ", copied,
                " tensors");
    ++blocks;
  }
  return blocks;
}

}  // namespace pgolf
