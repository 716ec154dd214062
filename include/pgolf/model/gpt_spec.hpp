// pgolf::GptSpec: the compile-time description of a GPT variant. It is a structural class type,
// used as a non-type template parameter (Gpt<GptSpec{...}>), so every number here is a constant in
// the generated code. Defaults reproduce the parameter-golf baseline exactly (9x512, 8 heads,
// 4 KV heads, RoPE on all 64 dims, relu^2 MLP x2, tied embeddings, softcap 30; 17,059,912 params).
//
//   constexpr pgolf::GptSpec tiny{
//       .vocab = 1024, .dim = 128,
//       .depth = {.layers = 4},
//       .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 16},
//   };
//   pgolf::Gpt<tiny> model(batch, seq_len);
#pragma once

#include <cfloat>

namespace pgolf {

enum class Activation {
  relu2,        // max(u, 0)^2 (baseline)
  leaky_relu2,  // LeakyReLU(0.5)(u)^2
};

struct GptSpec {
  // Token vocabulary; must equal the tokenizer's vocabulary.
  int vocab = 1024;
  // Model (residual stream) width.
  int dim = 512;

  struct Depth {
    // Virtual layers executed per forward pass.
    int layers = 9;
    // Depth recurrence: layers / loops physical blocks are each applied `loops` times, in the
    // cyclic schedule virtual layer v -> block v % (layers / loops). 1 = no sharing (baseline).
    int loops = 1;
    // U-Net skips: the first floor(layers/2) virtual layers push their outputs, each later layer
    // pops one and adds it scaled by a learned per-channel weight (init 1).
    bool unet_skips = true;
  } depth{};

  struct Attention {
    int heads = 8;
    int kv_heads = 4;       // GQA: query head h reads KV head h / (heads / kv_heads)
    int rope_dims = 64;     // leading dims of each head rotated (half-split pairs); rest pass through
    double rope_base = 10000.0;
    double qk_gain_init = 1.5;  // per-head gain on normalised queries
  } attention{};

  struct Mlp {
    int mult = 2;  // hidden width = mult * dim
    Activation activation = Activation::relu2;
  } mlp{};

  struct Embedding {
    // Tied: the token embedding is also the output head. Untied adds lm_head [vocab, dim], zero init.
    bool tied = true;
    double init_std = 0.005;  // token embedding ~ N(0, init_std^2)
  } embedding{};

  struct Head {
    double softcap = 30.0;  // logits = softcap * tanh(z / softcap)
  } head{};

  struct Norm {
    // RMSNorm epsilon. The reference passes eps=None, i.e. the float32 machine epsilon.
    double eps = FLT_EPSILON;
  } norm{};

  // Derived sizes.
  constexpr int head_dim() const { return attention.heads > 0 ? dim / attention.heads : 0; }
  constexpr int kv_dim() const { return attention.kv_heads * head_dim(); }
  constexpr int hidden() const { return mlp.mult * dim; }
  constexpr int blocks() const { return depth.loops > 0 ? depth.layers / depth.loops : 0; }
  constexpr int encoder_layers() const { return depth.unet_skips ? depth.layers / 2 : 0; }
  constexpr int skip_count() const {
    return depth.unet_skips ? (depth.layers / 2 < depth.layers - depth.layers / 2
                                   ? depth.layers / 2
                                   : depth.layers - depth.layers / 2)
                            : 0;
  }
  // Physical block executed at virtual layer v.
  constexpr int block_of(int v) const { return v % blocks(); }
};

// Compile-time validation. Each check is its own static_assert so the message names the field.
template <GptSpec S>
consteval bool validate_spec() {
  static_assert(S.vocab > 0, "GptSpec.vocab must be positive");
  static_assert(S.vocab <= 65536, "GptSpec.vocab must be at most 65536 (token shards store uint16 ids)");
  static_assert(S.dim > 0, "GptSpec.dim must be positive");
  static_assert(S.depth.layers > 0, "GptSpec.depth.layers must be positive");
  static_assert(S.depth.loops > 0, "GptSpec.depth.loops must be positive");
  static_assert(S.depth.loops <= 0 || S.depth.layers % S.depth.loops == 0,
                "GptSpec.depth.layers must be divisible by GptSpec.depth.loops");
  static_assert(S.attention.heads > 0, "GptSpec.attention.heads must be positive");
  static_assert(S.attention.kv_heads > 0, "GptSpec.attention.kv_heads must be positive");
  static_assert(S.attention.heads <= 0 || S.dim % S.attention.heads == 0,
                "GptSpec.dim must be divisible by GptSpec.attention.heads");
  static_assert(S.attention.kv_heads <= 0 || S.attention.heads % S.attention.kv_heads == 0,
                "GptSpec.attention.heads must be divisible by GptSpec.attention.kv_heads");
  static_assert(S.attention.rope_dims >= 0, "GptSpec.attention.rope_dims must not be negative");
  static_assert(S.attention.rope_dims % 2 == 0, "GptSpec.attention.rope_dims must be even (half-split pairs)");
  static_assert(S.attention.rope_dims <= S.head_dim(),
                "GptSpec.attention.rope_dims must not exceed the head dim (dim / heads)");
  static_assert(S.attention.rope_base > 1.0, "GptSpec.attention.rope_base must be greater than 1");
  static_assert(S.mlp.mult > 0, "GptSpec.mlp.mult must be positive");
  static_assert(S.embedding.init_std > 0.0, "GptSpec.embedding.init_std must be positive");
  static_assert(S.head.softcap > 0.0, "GptSpec.head.softcap must be positive");
  static_assert(S.norm.eps > 0.0, "GptSpec.norm.eps must be positive");
  return true;
}

}  // namespace pgolf
