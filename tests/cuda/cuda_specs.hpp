#pragma once

#include "pgolf/model/depth.hpp"
#include "pgolf/model/gpt_spec.hpp"

namespace cuda_test {
using pgolf::Activation;
using pgolf::GptSpec;

// GQA 4/2 with head dim 32, partial RoPE (16 of 32 dims), U-Net skips, tied head.
inline constexpr GptSpec kSmall{.vocab = 1024,
                                .dim = 128,
                                .depth = {.layers = 4},
                                .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 16}};
// Two physical blocks looped into four virtual layers, LeakyReLU^2 x3, untied head, MQA (4/1),
// head dim 64 with full RoPE, another softcap.
inline constexpr GptSpec kSmallShared{.vocab = 512,
                                      .dim = 256,
                                      .depth = {.layers = 4, .loops = 2},
                                      .attention = {.heads = 4, .kv_heads = 1, .rope_dims = 64},
                                      .mlp = {.mult = 3, .activation = Activation::leaky_relu2},
                                      .embedding = {.tied = false},
                                      .head = {.softcap = 15.0}};
// The records' looping: blocks 1..2 run twice more when the loop is on, only matrices shared
// (per-virtual-layer scalars), the LN scale by virtual layer.
inline constexpr GptSpec kSmallLooped{
    .vocab = 512,
    .dim = 128,
    .depth = {.layers = 4, .looped = pgolf::repeat_span(4, 1, 2, 2), .sharing = pgolf::Sharing::matrices},
    .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 16},
    .norm = {.ln_scale = pgolf::LnScaleIndex::layer}};
// XSA on the last of two looped blocks (run twice) and the sparse attention gate on 12 channels.
inline constexpr GptSpec kSmallXsaGate{
    .vocab = 512,
    .dim = 128,
    .depth = {.layers = 4, .loops = 2},
    .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 16, .xsa = pgolf::last_blocks(1), .gate_channels = 12}};
}  // namespace cuda_test
