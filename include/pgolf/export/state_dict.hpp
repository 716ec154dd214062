// Which models are the PyTorch reference's, for safetensors interop (export/safetensors.hpp).
//
// pgolf's GPT table already names and lays out every tensor as the reference's state dict does
// (tok_emb.weight, blocks.N.attn.c_q.weight [dim, dim], blocks.N.attn.q_gain [heads],
// blocks.N.resid_mix [2, dim], skip_weights [skips, dim], lm_head.weight when untied; Q, K and V
// are separate products as in the reference, and a block re-used by depth recurrence is stored once,
// as blocks.N, exactly as the reference port's ModuleList holds it), so the state dict is the table
// row for row. What decides whether the reference can load a file is whether its GPT computes the
// same function: a spec is the reference's when it equals its projection onto the fields the
// reference port (tests/golden/make_golden.py) has (vocab, dim, layers, loops, heads, kv_heads,
// rope_dims, rope_base, qk_gain_init, mult, activation, tied, init_std, softcap, eps, U-Net skips,
// the init). Any other field set (a technique the reference lacks, including one added after this
// was written) makes the projection differ, and the file says pgolf's own names instead.
#pragma once

#include <string>
#include <type_traits>

#include "pgolf/export/safetensors.hpp"
#include "pgolf/model/gpt_spec.hpp"

namespace pgolf {

// The spec with only the reference port's fields copied; everything else at its default.
constexpr GptSpec reference_projection(const GptSpec& s) {
  GptSpec r{};
  r.vocab = s.vocab;
  r.dim = s.dim;
  r.depth.layers = s.depth.layers;
  r.depth.loops = s.depth.loops;
  r.depth.unet_skips = s.depth.unet_skips;
  r.attention.heads = s.attention.heads;
  r.attention.kv_heads = s.attention.kv_heads;
  r.attention.rope_dims = s.attention.rope_dims;
  r.attention.rope_base = s.attention.rope_base;
  r.attention.qk_gain_init = s.attention.qk_gain_init;
  r.mlp.mult = s.mlp.mult;
  r.mlp.activation = s.mlp.activation;
  r.embedding.tied = s.embedding.tied;
  r.embedding.init_std = s.embedding.init_std;
  r.head.softcap = s.head.softcap;
  r.norm.eps = s.norm.eps;
  r.init.orthogonal = s.init.orthogonal;  // the init only: the loaded weights replace it
  return r;
}

namespace detail {
template <GptSpec S>
struct SpecTag {};
}  // namespace detail

// Template arguments of class type are the same exactly when every member is: a member-wise
// comparison that covers fields added to GptSpec later.
template <GptSpec S>
inline constexpr bool is_reference_gpt = std::is_same_v<detail::SpecTag<S>, detail::SpecTag<reference_projection(S)>>;

// The naming a model's safetensors use: the reference's state dict for a reference GPT, else
// pgolf's table names (family "pgolf_gpt" for a GPT with techniques the reference lacks, "pgolf"
// for any other architecture).
template <class Model>
StateDictNaming state_dict_naming() {
  if constexpr (requires { requires std::is_same_v<std::remove_cv_t<decltype(Model::Arch::spec)>, GptSpec>; }) {
    if constexpr (is_reference_gpt<Model::Arch::spec>) return {true, "reference_gpt"};
    else return {false, "pgolf_gpt"};
  } else {
    return {false, "pgolf"};
  }
}

}  // namespace pgolf
