// The parameter table of Gpt<Spec>, built at compile time. Names follow the reference trainer's
// state dict (tok_emb.weight, blocks.N.attn.c_q.weight, ...) so checkpoints and golden files map
// one to one. A physical block owns one copy of its tensors however many virtual layers use it.
#pragma once

#include <array>
#include <cmath>
#include <cstddef>

#include "pgolf/model/gpt_spec.hpp"
#include "pgolf/nn/param_table.hpp"

namespace pgolf {

// Tensors of one physical block, in table order.
enum class BlockParam : int {
  c_q, c_k, c_v, attn_proj, q_gain, fc, mlp_proj, attn_scale, mlp_scale, resid_mix,
};
inline constexpr int kBlockParamCount = 10;

template <GptSpec S>
constexpr std::size_t gpt_param_count() {
  return 1 + std::size_t(S.blocks()) * kBlockParamCount + (S.skip_count() > 0 ? 1 : 0) +
         (S.embedding.tied ? 0 : 1);
}

template <GptSpec S>
struct GptParamIndex {
  static constexpr std::size_t tok_emb = 0;
  static constexpr std::size_t block(int b, BlockParam p) {
    return 1 + std::size_t(b) * kBlockParamCount + std::size_t(p);
  }
  static constexpr std::size_t skip_weights = 1 + std::size_t(S.blocks()) * kBlockParamCount;  // if skips
  static constexpr std::size_t lm_head = skip_weights + (S.skip_count() > 0 ? 1 : 0);           // if untied
};

template <GptSpec S>
constexpr auto gpt_param_table() {
  static_assert(validate_spec<S>());
  std::array<ParamInfo, gpt_param_count<S>()> table{};
  ParamTableBuilder<std::tuple_size_v<decltype(table)>> tb{table};
  auto add = [&](auto&&... a) { return tb.add(a...); };
  const int d = S.dim, kv = S.kv_dim(), hid = S.hidden();

  add("tok_emb.weight", S.vocab, d, 2, Init{InitKind::normal, S.embedding.init_std}, OptimGroup::adam_embed, false, -1);
  for (int b = 0; b < S.blocks(); ++b) {
    auto name = [b](const char* suffix) { return ParamName("blocks.").append(b).append(".").append(suffix); };
    const auto M = OptimGroup::muon_matrix;
    const auto A = OptimGroup::adam_scalar;
    add(name("attn.c_q.weight"), d, d, 2, torch_linear_init(d), M, false, b);
    add(name("attn.c_k.weight"), kv, d, 2, torch_linear_init(d), M, false, b);
    add(name("attn.c_v.weight"), kv, d, 2, torch_linear_init(d), M, false, b);
    add(name("attn.proj.weight"), d, d, 2, Init{InitKind::zeros}, M, false, b);
    add(name("attn.q_gain"), S.attention.heads, 1, 1, Init{InitKind::constant, S.attention.qk_gain_init}, A, true, b);
    add(name("mlp.fc.weight"), hid, d, 2, torch_linear_init(d), M, false, b);
    add(name("mlp.proj.weight"), d, hid, 2, Init{InitKind::zeros}, M, false, b);
    add(name("attn_scale"), d, 1, 1, Init{InitKind::ones}, A, true, b);
    add(name("mlp_scale"), d, 1, 1, Init{InitKind::ones}, A, true, b);
    add(name("resid_mix"), 2, d, 2, Init{InitKind::mix_identity}, A, true, b);
  }
  if (S.skip_count() > 0)
    add("skip_weights", S.skip_count(), d, 2, Init{InitKind::ones}, OptimGroup::adam_scalar, true, -1);
  if (!S.embedding.tied)
    add("lm_head.weight", S.vocab, d, 2, Init{InitKind::zeros}, OptimGroup::adam_head, false, -1);
  tb.finish();
  return table;
}

}  // namespace pgolf
