// The parameter table of Prism<Spec>, built at compile time, and the row of every tensor of every
// block. Names follow the PyTorch port (tests/golden/make_prism_golden.py) one to one.
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

#include "pgolf/model/prism_spec.hpp"
#include "pgolf/nn/param_table.hpp"

namespace pgolf {

// In the causal behaviour the first block's tape arrives empty, so its erase gate would have nothing
// to erase (a dead tensor): that block has none.
constexpr bool prism_has_erase(bool causal, int block) { return !(causal && block == 0); }

constexpr int prism_expert_rows(ExpertKind k, bool causal, int block) {
  switch (k) {
    case ExpertKind::neural: return 3;
    case ExpertKind::memory: return (causal ? 9 : 7) - (prism_has_erase(causal, block) ? 0 : 2);
    case ExpertKind::symbolic: return 5;
  }
  return 0;
}

// Rows of one block's tensors in the table.
struct PrismBlockRows {
  std::size_t mrb_norm, mrb_in_w, mrb_in_b, mrb_gate_w, mrb_gate_b, mrb_out_w, mrb_out_b;
  std::size_t exp_norm, router_w, router_b;
  std::array<std::size_t, 3> expert{};  // first row of the expert at router index i
};

template <PrismSpec S>
constexpr std::size_t prism_param_count() {
  std::size_t n = 1 + 1 + (S.tie_embeddings ? 0 : 1);  // embedding, final norm, untied head
  for (int b = 0; b < S.layers; ++b) {
    const ExpertMix mix = S.mix_of(b);
    n += 10;
    for (int i = 0; i < mix.count; ++i) n += std::size_t(prism_expert_rows(mix.kinds[std::size_t(i)], S.causal(), b));
  }
  return n;
}

template <PrismSpec S>
struct PrismLayout {
  std::array<ParamInfo, prism_param_count<S>()> table{};
  std::array<PrismBlockRows, std::size_t(S.layers)> blocks{};
  std::size_t tok_emb = 0, final_norm = 0, head = 0;  // head == tok_emb when tied
};

template <PrismSpec S>
constexpr PrismLayout<S> prism_layout() {
  static_assert(validate_prism_spec<S>());
  PrismLayout<S> L{};
  ParamTableBuilder<std::tuple_size_v<decltype(L.table)>> tb{L.table};
  auto add = [&](auto&&... a) { return tb.add(a...); };
  const int D = S.d_model, K = S.num_rates, M = S.d_mem, H = S.hidden(), Sl = S.num_slots;
  const Init normal{InitKind::normal, S.init_std}, zeros{InitKind::zeros}, ones{InitKind::ones};
  const auto Mx = OptimGroup::muon_matrix;
  const auto Sc = OptimGroup::adam_scalar;

  L.tok_emb = add("embed.weight", S.vocab, D, 2, normal, OptimGroup::adam_embed, false, -1);
  for (int b = 0; b < S.layers; ++b) {
    auto name = [b](const char* suffix) { return ParamName("blocks.").append(b).append(".").append(suffix); };
    PrismBlockRows& r = L.blocks[std::size_t(b)];
    r.mrb_norm = add(name("norm_mrb.weight"), D, 1, 1, ones, Sc, true, b);
    r.mrb_in_w = add(name("mrb.in_proj.weight"), D, D, 2, normal, Mx, false, b);
    r.mrb_in_b = add(name("mrb.in_proj.bias"), D, 1, 1, zeros, Sc, false, b);
    r.mrb_gate_w = add(name("mrb.gate_proj.weight"), K, D, 2, normal, Mx, false, b);
    r.mrb_gate_b = add(name("mrb.gate_proj.bias"), K, 1, 1, zeros, Sc, false, b);
    r.mrb_out_w = add(name("mrb.out_proj.weight"), D, D, 2, normal, Mx, false, b);
    r.mrb_out_b = add(name("mrb.out_proj.bias"), D, 1, 1, zeros, Sc, false, b);
    r.exp_norm = add(name("norm_exp.weight"), D, 1, 1, ones, Sc, true, b);
    const ExpertMix mix = S.mix_of(b);
    r.router_w = add(name("router.gate.weight"), mix.count, D + M, 2, normal, Mx, false, b);
    r.router_b = add(name("router.gate.bias"), mix.count, 1, 1, zeros, Sc, false, b);
    for (int i = 0; i < mix.count; ++i) {
      auto ename = [&](const char* suffix) {
        return ParamName("blocks.").append(b).append(".router.experts.").append(i).append(".").append(suffix);
      };
      switch (mix.kinds[std::size_t(i)]) {
        case ExpertKind::neural:
          r.expert[std::size_t(i)] = add(ename("w_gate.weight"), H, D, 2, normal, Mx, false, b);
          add(ename("w_up.weight"), H, D, 2, normal, Mx, false, b);
          add(ename("w_down.weight"), D, H, 2, normal, Mx, false, b);
          break;
        case ExpertKind::memory:
          r.expert[std::size_t(i)] = add(ename("head.q_proj.weight"), M, D, 2, torch_linear_init(D), Mx, false, b);
          add(ename("head.v_proj_in.weight"), M, D, 2, torch_linear_init(D), Mx, false, b);
          add(ename("head.write_gate.weight"), 1, D, 2, torch_linear_init(D), Sc, false, b);
          add(ename("head.write_gate.bias"), 1, 1, 1, torch_linear_init(D), Sc, false, b);
          if (prism_has_erase(S.causal(), b)) {
            add(ename("head.erase_gate.weight"), M, D, 2, torch_linear_init(D), Mx, false, b);
            add(ename("head.erase_gate.bias"), M, 1, 1, torch_linear_init(D), Sc, false, b);
          }
          add(ename("head.read_out.weight"), D, M, 2, torch_linear_init(M), Mx, false, b);
          if (S.causal()) {
            add(ename("head.address.weight"), Sl, D, 2, torch_linear_init(D), Mx, false, b);
            add(ename("head.address.bias"), Sl, 1, 1, torch_linear_init(D), Sc, false, b);
          }
          break;
        case ExpertKind::symbolic:
          r.expert[std::size_t(i)] = add(ename("lib.select_proj.weight"), 6, D, 2, normal, Mx, false, b);
          add(ename("lib.select_proj.bias"), 6, 1, 1, zeros, Sc, false, b);
          add(ename("lib.arg_proj.weight"), S.arg_heads() * D, D, 2, normal, Mx, false, b);
          add(ename("lib.arg_proj.bias"), S.arg_heads() * D, 1, 1, zeros, Sc, false, b);
          add(ename("lib.out_proj.weight"), D, D, 2, normal, Mx, false, b);
          break;
      }
    }
  }
  L.final_norm = add("norm_f.weight", D, 1, 1, ones, Sc, true, -1);
  L.head = S.tie_embeddings ? L.tok_emb : add("head.weight", S.vocab, D, 2, normal, OptimGroup::adam_head, false, -1);
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
