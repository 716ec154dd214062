// The Frugendorff (parameter-golf PR #498, TECHNIQUES.md 7): 6 physical blocks looped twice at d 640,
// MLP 4x, with the records' block techniques, as a GptSpec, and a small sibling for CPU runs.
//
//   e = RMSNorm(E[u] + BigramHash(u));  x = x0 = SmearGate(e)
//   2 loops: x += loop_pos[l]; 3 encoder + 3 decoder blocks with U-Net skips inside the loop
//   block b: LN scale 1/sqrt(b + 1); value embedding on blocks 2, 3; XSA on blocks 4, 5
//   partial RoPE 16/64 with the NTK base of a 1024-token training length; tied head, softcap 30
//
// 28,224,320 parameters (the run's log; tests/model/test_presets.cpp checks it). The original ran its
// SmearGate without the BOS fix; pgolf's default fixes it (set embedding.smear_bos_fix = false to
// reproduce the leak).
#pragma once

#include "pgolf/model/gpt_spec.hpp"

namespace pgolf::presets {

inline constexpr GptSpec frugendorff{
    .vocab = 1024,
    .dim = 640,
    .depth = {.layers = 12,
              .loops = 2,
              .unet_skips = true,
              .skips_per_loop = true,
              .loop_embedding = LoopEmbedding::random,
              .loop_embedding_std = 0.01},
    .attention = {.heads = 10,
                  .kv_heads = 5,
                  .rope_dims = 16,
                  .rope_base = 10000.0,
                  .qk_gain_init = 1.5,
                  .rope_train_seq_len = 1024,
                  .xsa = blocks_of(4, 5),
                  .ve_dim = 128,
                  .ve_blocks = blocks_of(2, 3)},
    .mlp = {.mult = 4, .activation = Activation::relu2},
    .embedding = {.tied = true, .init_std = 0.005, .bigram_buckets = 2048, .bigram_dim = 128, .smear = true},
    .head = {.softcap = 30.0},
    .norm = {.ln_scale = LnScaleIndex::block},
    .init = {.orthogonal = true},
};

// The same design at CPU scale: 3 blocks looped twice at d 128 (head dim 32, RoPE on 8 of 32 dims with
// the NTK base of a 128-token training length at seq 256), value embedding on the middle block, XSA on
// the last, a 512-bucket BigramHash.
inline constexpr GptSpec frugendorff_tiny{
    .vocab = 1024,
    .dim = 128,
    .depth = {.layers = 6, .loops = 2, .unet_skips = true, .skips_per_loop = true, .loop_embedding = LoopEmbedding::random},
    .attention = {.heads = 4,
                  .kv_heads = 2,
                  .rope_dims = 8,
                  .rope_train_seq_len = 128,
                  .xsa = last_blocks(1),
                  .ve_dim = 32,
                  .ve_blocks = blocks_of(1)},
    .mlp = {.mult = 4, .activation = Activation::relu2},
    .embedding = {.bigram_buckets = 512, .bigram_dim = 32, .smear = true},
    .norm = {.ln_scale = LnScaleIndex::block},
    .init = {.orthogonal = true},
};

// The Frugendorff's own ablation direction at CPU scale (examples/CMakeLists.txt, frug-depth): the same
// width without sharing, at the shared model's effective depth (6 unique blocks) and at its unique
// block count (3), each with one U-Net split and no loop positions.
inline constexpr GptSpec::Depth frugendorff_tiny_unique6{.layers = 6};
inline constexpr GptSpec::Depth frugendorff_tiny_unique3{.layers = 3};

}  // namespace pgolf::presets
