// The models pgolf-prism-compare trains, for a task of vocabulary V: PRISM in both behaviours at the
// reference harness's toy size (D 64, L 3, K 4, M 64, S 16), the reference's Transformer (no
// positional encoding, and with RoPE) and SSM, and pgolf's GPT at about the causal PRISM's size.
#pragma once

#include <vector>

#include "pgolf/app/prism_compare.hpp"
#include "pgolf/model/gpt.hpp"
#include "pgolf/model/prism.hpp"
#include "pgolf/model/prism_baselines.hpp"

namespace prism_compare {

template <int V>
inline constexpr pgolf::PrismSpec kCausal = pgolf::prism_presets::toy(V);
template <int V>
inline constexpr pgolf::PrismSpec kReference = pgolf::prism_presets::toy(V, pgolf::PrismBehaviour::reference);
// 5 x 64-wide layers, 4 heads, RoPE on all 16 head dims, relu^2 MLP x2: ~166k + 64 V parameters.
template <int V>
inline constexpr pgolf::GptSpec kGpt{
    .vocab = V, .dim = 64, .depth = {.layers = 5}, .attention = {.heads = 4, .kv_heads = 4, .rope_dims = 16}};

template <int V, class Data = pgolf::data::ToyTaskData>
std::vector<pgolf::app::CompareRow> compare_all(const pgolf::app::CompareOptions& o) {
  using namespace pgolf;
  using app::compare_model;
  std::vector<app::CompareRow> rows;
  rows.push_back(compare_model<Prism<kCausal<V>>, Data>("prism_causal", o));
  rows.push_back(compare_model<Prism<kReference<V>>, Data>("prism_reference", o));
  rows.push_back(compare_model<PrismBaseline<kCausal<V>, BaselineMixer::transformer>, Data>("transformer", o));
  rows.push_back(compare_model<PrismBaseline<kCausal<V>, BaselineMixer::transformer_rope>, Data>("transformer_rope", o));
  rows.push_back(compare_model<PrismBaseline<kCausal<V>, BaselineMixer::ssm>, Data>("ssm", o));
  rows.push_back(compare_model<Gpt<kGpt<V>>, Data>("gpt", o));
  rows.push_back(app::compare_modular<kCausal<V>, Data>("prism_modular", o));
  return rows;
}

// One translation unit per vocabulary keeps each compile small.
std::vector<pgolf::app::CompareRow> compare_vocab12(const pgolf::app::CompareOptions& o);
std::vector<pgolf::app::CompareRow> compare_vocab18(const pgolf::app::CompareOptions& o);
std::vector<pgolf::app::CompareRow> compare_vocab20(const pgolf::app::CompareOptions& o);
std::vector<pgolf::app::CompareRow> compare_vocab257(const pgolf::app::CompareOptions& o);
// copy + induction + reasoning in one stream (vocabulary 20, sequences padded to 17).
std::vector<pgolf::app::CompareRow> compare_mixture(const pgolf::app::CompareOptions& o);

}  // namespace prism_compare
