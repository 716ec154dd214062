// Tiny specs shared by the model tests.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "pgolf/model/gpt.hpp"
#include "../test_util.hpp"

namespace pgolf::test {

// The tiny spec: vocab 64, dim 32, 3 layers, 4 heads, 2 KV heads (used with seq 16).
inline constexpr GptSpec kTiny{
    .vocab = 64, .dim = 32, .depth = {.layers = 3}, .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 8}};
// Partial RoPE, LeakyReLU^2, untied head, no U-Net skips.
inline constexpr GptSpec kTinyVariant{.vocab = 48,
                                      .dim = 24,
                                      .depth = {.layers = 2, .unet_skips = false},
                                      .attention = {.heads = 3, .kv_heads = 1, .rope_dims = 4, .rope_base = 50.0},
                                      .mlp = {.mult = 3, .activation = Activation::leaky_relu2},
                                      .embedding = {.tied = false},
                                      .head = {.softcap = 5.0}};
// Depth recurrence: 2 physical blocks looped twice into 4 virtual layers with U-Net skips.
inline constexpr GptSpec kTinyShared{.vocab = 64,
                                     .dim = 32,
                                     .depth = {.layers = 4, .loops = 2},
                                     .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 4}};

// Explicit schedules: blocks 1..2 each run three times in place ([0,1,1,1,2,2,2,3]); the span 1..2
// run three times ([0,1,2,1,2,1,2,3]), whole blocks shared or only their matrices (per-virtual-layer
// resid_mix, attn_scale, mlp_scale, q_gain); and a model with a loop-on schedule to switch to.
inline constexpr GptSpec kTinyInPlace{.vocab = 64,
                                      .dim = 32,
                                      .depth = {.layers = 8, .schedule = repeat_in_place(4, 1, 2, 3)},
                                      .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 4}};
inline constexpr GptSpec kTinySpan{.vocab = 64,
                                   .dim = 32,
                                   .depth = {.layers = 8, .schedule = repeat_span(4, 1, 2, 3)},
                                   .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 4}};
inline constexpr GptSpec kTinySpanMatrices{
    .vocab = 64,
    .dim = 32,
    .depth = {.layers = 8, .schedule = repeat_span(4, 1, 2, 3), .sharing = Sharing::matrices},
    .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 4}};
inline constexpr GptSpec kTinyLooped{
    .vocab = 64,
    .dim = 32,
    .depth = {.layers = 4, .looped = repeat_span(4, 1, 2, 2), .sharing = Sharing::matrices},
    .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 4},
    .mlp = {.activation = Activation::leaky_relu2},
    .norm = {.ln_scale = LnScaleIndex::layer}};

inline std::vector<std::int32_t> random_tokens(std::size_t n, int vocab, std::uint32_t stream) {
  std::vector<std::int32_t> t(n);
  for (std::size_t i = 0; i < n; ++i) t[i] = std::int32_t(uniform01(99, stream, i) * vocab);
  return t;
}

// Reference init plus a perturbation of every tensor, so zero-initialised projections and unit
// scales do not hide gradient paths.
template <class Model>
void randomize(Model& m, std::uint32_t stream) {
  m.init(7);
  auto p = m.params();
  for (const auto& info : Model::param_table) {
    const double s = info.name.view() == "tok_emb.weight" || info.name.view() == "lm_head.weight"
                         ? 1.0
                         : (info.rank == 2 && info.rows != 2 ? 1.0 / std::sqrt(double(info.cols)) : 0.3);
    for (std::size_t i = 0; i < info.numel(); ++i)
      p[info.offset + i] += typename Model::Scalar(s * normal01(stream, name_stream(info.name.view()), i));
  }
}

}  // namespace pgolf::test
