// pgolf::GptSpec: the compile-time description of a GPT variant, and the programs of components it
// selects. It is a structural class type, used as a non-type template parameter (Gpt<GptSpec{...}>),
// so every number here is a constant in the generated code. Defaults reproduce the parameter-golf
// baseline exactly (9x512, 8 heads, 4 KV heads, RoPE on all 64 dims, relu^2 MLP x2, tied
// embeddings, softcap 30; 17,059,912 params).
//
//   constexpr pgolf::GptSpec tiny{
//       .vocab = 1024, .dim = 128,
//       .depth = {.layers = 4},
//       .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 16},
//   };
//   pgolf::Gpt<tiny> model(batch, seq_len);
//
// A technique is a component (include/pgolf/nn/), a field here with its static_asserts, and its
// place in GptArch's programs below (docs/ARCHITECTURE.md, "Adding a technique").
#pragma once

#include <array>
#include <cfloat>

#include "pgolf/model/depth.hpp"
#include "pgolf/nn/activation.hpp"
#include "pgolf/nn/asym_softcap.hpp"
#include "pgolf/nn/bigram_hash.hpp"
#include "pgolf/nn/causal_attention.hpp"
#include "pgolf/nn/head.hpp"
#include "pgolf/nn/ln_scale.hpp"
#include "pgolf/nn/loop_embedding.hpp"
#include "pgolf/nn/parallel_lanes.hpp"
#include "pgolf/nn/product.hpp"
#include "pgolf/nn/qk_norm_rope.hpp"
#include "pgolf/nn/qkv_product.hpp"
#include "pgolf/nn/resid_mix.hpp"
#include "pgolf/nn/rms_norm.hpp"
#include "pgolf/nn/scaled_residual.hpp"
#include "pgolf/nn/smear_gate.hpp"
#include "pgolf/nn/sparse_attn_gate.hpp"
#include "pgolf/nn/token_embedding.hpp"
#include "pgolf/nn/unet_skip.hpp"
#include "pgolf/nn/value_embedding.hpp"
#include "pgolf/nn/xsa.hpp"
#include "pgolf/ops/activation_kind.hpp"

namespace pgolf {

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
    // U-Net skips: the first floor(V/2) of the V virtual layers push their outputs, each later layer
    // pops one and adds it scaled by a learned per-channel weight (init 1).
    bool unet_skips = true;
    // An explicit schedule instead of the cyclic one (depth.hpp: repeat_in_place, repeat_span,
    // schedule_of); `layers` must then equal its length and `loops` stay 1.
    Schedule schedule{};
    // A second schedule the model switches to during training (--loop-enable-at, a fraction of the
    // run): the records' "loop on" phase. Same physical blocks; each block at least as many uses.
    Schedule looped{};
    // What a re-used block shares: everything, or only its matrices (per-virtual-layer resid_mix,
    // attn_scale, mlp_scale, q_gain).
    Sharing sharing = Sharing::block;
    // U-Net skips inside each loop of a cyclic schedule (the Frugendorff): every loop of layers / loops
    // virtual layers has its own encoder/decoder split and skip stack, the skip weights shared by all
    // loops. Off: one split over the whole virtual sequence.
    bool skips_per_loop = false;
    // The records' gated skips (nn/unet_skip.hpp): x := g x + (1 - g) w s, g = sigmoid(skip_gates),
    // skip_gates [skips, dim] init 0. Off: x := x + w s.
    bool skip_gates = false;
    // Loop-position embeddings (nn/loop_embedding.hpp): p [loops, dim] added to the stream at the first
    // virtual layer of each loop. random: N(0, loop_embedding_std^2), the Frugendorff's submitted code;
    // orthogonal: loop_embedding_std times orthonormal rows (the reduced QR its PR describes).
    LoopEmbedding loop_embedding = LoopEmbedding::off;
    double loop_embedding_std = 0.01;
  } depth{};

  struct Attention {
    int heads = 8;
    int kv_heads = 4;       // GQA: query head h reads KV head h / (heads / kv_heads)
    int rope_dims = 64;     // leading dims of each head rotated (half-split pairs); rest pass through
    double rope_base = 10000.0;
    double qk_gain_init = 1.5;  // per-head gain on normalised queries
    // NTK-aware RoPE scaling: when a forward's sequence is longer than this, the base becomes
    // rope_base * (seq / rope_train_seq_len)^(rope_dims / (rope_dims - 2)). 0: never scaled.
    int rope_train_seq_len = 0;
    // XSA (nn/xsa.hpp): on these physical blocks the attention output loses its component along the
    // token's own value vector, z_h = y_h - (y_h . v^) v^.
    BlockSet xsa{};
    // SparseAttnGate (nn/sparse_attn_gate.hpp): y_h := sigmoid(gate_scale * W_h . x[:gate_channels]) y_h,
    // W [heads, gate_channels] zero init. 0 channels: off.
    int gate_channels = 0;
    double gate_scale = 0.5;
    // Shared value embedding (nn/value_embedding.hpp): ve = sigma * (Eve[ids] Pve^T), Eve [vocab,
    // ve_dim] ~ N(0, ve_init_std^2), Pve [kv_dim, ve_dim]; on the listed blocks v := v + lambda_b ve.
    // 0: off.
    int ve_dim = 0;
    BlockSet ve_blocks{};
    double ve_init_std = 0.01;
    double ve_scale_init = 0.1;
    // Document masking (nn/causal_attention.hpp): a token embedding.bos_id begins a document and no
    // query attends across a document boundary of a packed row (the records' varlen attention).
    bool doc_mask = false;
  } attention{};

  struct Mlp {
    int mult = 2;  // hidden width = mult * dim
    Activation activation = Activation::relu2;
  } mlp{};

  struct Embedding {
    // Tied: the token embedding is also the output head. Untied adds lm_head [vocab, dim], zero init.
    bool tied = true;
    double init_std = 0.005;  // token embedding ~ N(0, init_std^2)
    // BigramHash (nn/bigram_hash.hpp): x := E[ids] + beta * (Eb[h] Pb^T), h the XOR hash of the token and
    // its predecessor into bigram_buckets - 1 buckets (bucket bigram_buckets - 1 at t = 0); Eb
    // [buckets, bigram_dim] zero init, Pb [dim, bigram_dim], beta init bigram_scale_init. 0: off.
    int bigram_buckets = 0;
    int bigram_dim = 128;
    double bigram_scale_init = 0.05;
    // SmearGate (nn/smear_gate.hpp). smear_channels = 0: the Frugendorff's form after the embedding
    // norm, x_t := (1 - g) x_t + g x_{t-1}, g = sigmoid(gate), gate [dim] init 0. smear_channels = c > 0:
    // the later records' form on the raw embedding before its norm, e_t := e_t + g_t e_{t-1}, g_t =
    // lambda sigmoid(w . e_t[:c]), w [1, c] and lambda init 0. smear_bos_fix: g = 0 where the token is
    // bos_id (the unfixed gate leaks the previous document into a BOS).
    bool smear = false;
    int smear_channels = 0;
    bool smear_bos_fix = true;
    int bos_id = 1;
  } embedding{};

  struct Head {
    double softcap = 30.0;  // logits = softcap * tanh(z / softcap)
    // AsymLogit (nn/asym_softcap.hpp): z >= 0: sp tanh(z / sp), else sn tanh(z / sn), both caps learned
    // (init softcap).
    bool asym_softcap = false;
  } head{};

  struct Norm {
    // RMSNorm epsilon. The reference passes eps=None, i.e. the float32 machine epsilon.
    double eps = FLT_EPSILON;
    // The records' layerwise LN scale (nn/ln_scale.hpp): 1/sqrt(i + 1) on the normed input of
    // attention and MLP, i = physical block or virtual layer; off in the baseline.
    LnScaleIndex ln_scale = LnScaleIndex::off;
  } norm{};

  struct Init {
    // The records' orthogonal init: every product weight with both dims >= 64 that is not zero-init
    // is a random orthogonal matrix (gain 1); the embedding-side projections (bigram.proj,
    // ve_shared.proj) are then scaled by 1 / sqrt(2 * physical blocks). Off: PyTorch's Linear init.
    bool orthogonal = false;
  } init{};

  struct Residual {
    // The strongest records' parallel two-lane residual (nn/parallel_lanes.hpp) from the first virtual
    // layer that runs this physical block on (theirs: 8 of 11); -1: off.
    int parallel_from = -1;
  } residual{};


  // Derived sizes.
  constexpr int head_dim() const { return attention.heads > 0 ? dim / attention.heads : 0; }
  constexpr int kv_dim() const { return attention.kv_heads * head_dim(); }
  constexpr int hidden() const { return mlp.mult * dim; }
  // The schedule of virtual layers over physical blocks (phase 0).
  constexpr Schedule schedule() const {
    if (!depth.schedule.empty()) return depth.schedule;
    return depth.loops > 0 && depth.layers > 0 && depth.layers <= kMaxVirtualLayers
               ? cyclic(depth.layers, depth.layers / depth.loops > 0 ? depth.layers / depth.loops : 1)
               : Schedule{};
  }
  constexpr int blocks() const { return schedule().blocks(); }
  constexpr DepthPlan depth_plan() const {
    DepthPlan p;
    p.phase[0] = schedule();
    p.phases = depth.looped.empty() ? 1 : 2;
    if (!depth.looped.empty()) p.phase[1] = depth.looped;
    p.unet = depth.unet_skips;
    p.loop_len = depth.skips_per_loop && depth.loops > 0 ? depth.layers / depth.loops : 0;
    return p;
  }
  constexpr int encoder_layers() const { return depth_plan().encoder_layers(0); }
  constexpr int skip_count() const { return depth_plan().max_skips(); }
  // Physical block executed at virtual layer v (phase 0).
  constexpr int block_of(int v) const { return schedule()[v]; }
};

// Compile-time validation. Each check is its own static_assert so the message names the field.
template <GptSpec S>
consteval bool validate_spec() {
  static_assert(S.vocab > 0, "GptSpec.vocab must be positive");
  static_assert(S.vocab <= 65536, "GptSpec.vocab must be at most 65536 (token shards store uint16 ids)");
  static_assert(S.dim > 0, "GptSpec.dim must be positive");
  static_assert(S.depth.layers > 0, "GptSpec.depth.layers must be positive");
  static_assert(S.depth.layers <= kMaxVirtualLayers, "GptSpec.depth.layers must be at most 32 (kMaxVirtualLayers)");
  static_assert(S.depth.loops > 0, "GptSpec.depth.loops must be positive");
  static_assert(S.depth.loops <= 0 || S.depth.layers % S.depth.loops == 0,
                "GptSpec.depth.layers must be divisible by GptSpec.depth.loops");
  static_assert(S.depth.schedule.empty() || S.depth.layers == S.depth.schedule.count,
                "GptSpec.depth.layers must equal the length of GptSpec.depth.schedule");
  static_assert(S.depth.schedule.empty() || S.depth.loops == 1,
                "GptSpec.depth.loops must be 1 when GptSpec.depth.schedule is given");
  static_assert(S.depth.schedule.valid_entries() && S.depth.schedule.covers_every_block(),
                "GptSpec.depth.schedule must run every physical block 0..max at least once");
  static_assert(S.depth.looped.valid_entries() && S.depth.looped.covers_every_block(),
                "GptSpec.depth.looped must run every physical block 0..max at least once");
  static_assert(S.depth.looped.empty() || S.depth_plan().phases_nest(),
                "GptSpec.depth.looped must use the schedule's physical blocks, each at least as often");
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
  // Depth techniques.
  static_assert(!S.depth.skips_per_loop || S.depth.loops > 1,
                "GptSpec.depth.skips_per_loop needs GptSpec.depth.loops > 1 (a cyclic schedule of several loops)");
  static_assert(!S.depth.skips_per_loop || S.depth.unet_skips, "GptSpec.depth.skips_per_loop needs GptSpec.depth.unet_skips");
  static_assert(!S.depth.skips_per_loop || S.depth.looped.empty(),
                "GptSpec.depth.skips_per_loop cannot be combined with GptSpec.depth.looped");
  static_assert(!S.depth.skip_gates || S.depth.unet_skips, "GptSpec.depth.skip_gates needs GptSpec.depth.unet_skips");
  static_assert(S.depth.loop_embedding == LoopEmbedding::off || S.depth.loops > 1,
                "GptSpec.depth.loop_embedding needs GptSpec.depth.loops > 1 (one loop has nothing to tell apart)");
  static_assert(S.depth.loop_embedding == LoopEmbedding::off || S.depth.looped.empty(),
                "GptSpec.depth.loop_embedding cannot be combined with GptSpec.depth.looped");
  static_assert(S.depth.loop_embedding == LoopEmbedding::off || S.depth.loop_embedding_std > 0.0,
                "GptSpec.depth.loop_embedding_std must be positive");
  // Attention techniques.
  static_assert(S.attention.rope_train_seq_len >= 0, "GptSpec.attention.rope_train_seq_len must not be negative");
  static_assert(S.attention.rope_train_seq_len == 0 || S.attention.rope_dims > 2,
                "GptSpec.attention.rope_train_seq_len (NTK scaling) needs GptSpec.attention.rope_dims > 2");
  static_assert(S.attention.xsa.within(S.blocks()), "GptSpec.attention.xsa names a block the model does not have");
  static_assert(S.attention.gate_channels >= 0 && S.attention.gate_channels <= S.dim,
                "GptSpec.attention.gate_channels must be in [0, dim]");
  static_assert(S.attention.gate_scale > 0.0, "GptSpec.attention.gate_scale must be positive");
  static_assert(S.attention.ve_dim >= 0, "GptSpec.attention.ve_dim must not be negative");
  static_assert(S.attention.ve_dim == 0 || !S.attention.ve_blocks.empty(),
                "GptSpec.attention.ve_blocks must name at least one block when GptSpec.attention.ve_dim > 0");
  static_assert(S.attention.ve_dim > 0 || S.attention.ve_blocks.empty(),
                "GptSpec.attention.ve_blocks needs GptSpec.attention.ve_dim > 0");
  static_assert(S.attention.ve_blocks.within(S.blocks()),
                "GptSpec.attention.ve_blocks names a block the model does not have");
  static_assert(S.attention.ve_init_std > 0.0, "GptSpec.attention.ve_init_std must be positive");
  // Embedding techniques.
  static_assert(S.embedding.bigram_buckets == 0 || S.embedding.bigram_buckets >= 2,
                "GptSpec.embedding.bigram_buckets must be 0 (off) or at least 2");
  static_assert(S.embedding.bigram_buckets >= 0, "GptSpec.embedding.bigram_buckets must not be negative");
  static_assert(S.embedding.bigram_buckets == 0 || S.embedding.bigram_dim > 0,
                "GptSpec.embedding.bigram_dim must be positive");
  static_assert(S.embedding.bos_id >= 0 && S.embedding.bos_id < S.vocab,
                "GptSpec.embedding.bos_id must be a token of the vocabulary");
  static_assert(S.embedding.smear_channels >= 0 && S.embedding.smear_channels <= S.dim,
                "GptSpec.embedding.smear_channels must be in [0, dim]");
  static_assert(S.residual.parallel_from >= -1 && S.residual.parallel_from < S.blocks(),
                "GptSpec.residual.parallel_from must be -1 (off) or a physical block");
  static_assert(S.residual.parallel_from < 0 || S.depth.loop_embedding == LoopEmbedding::off,
                "GptSpec.residual.parallel_from cannot be combined with GptSpec.depth.loop_embedding");
  return true;
}

// The GPT's tensors that are not a component's own choice: names and inits of its products.
struct GptTokEmb {
  static constexpr const char* name = "tok_emb.weight";
  template <class A>
  static constexpr Init init = {InitKind::normal, A::embed_init_std};
};
using GptAttnOut = Linear<"attn.proj.weight", Reg::h, Reg::h, Width::dim, Width::dim, InitRule::zeros>;
using GptMlpUp = Linear<"mlp.fc.weight", Reg::n, Reg::h, Width::dim, Width::hidden, InitRule::fan_in>;
using GptMlpDown = Linear<"mlp.proj.weight", Reg::h, Reg::h, Width::hidden, Width::dim, InitRule::zeros>;
using GptLmHead = Linear<"lm_head.weight", Reg::n, Reg::h, Width::dim, Width::vocab, InitRule::zeros,
                         OptimGroup::adam_head, Scope::global>;

// The architecture a spec selects: sizes for the components, and the programs.
//   x0 = x = RMSNorm(E[ids] [+ BigramHash]) (SmearGate: its linear form before the norm, its lerp form after)
//   per virtual layer (block b = schedule[v]; decoder layers first add their U-Net skip):
//     x = m0 x + m1 x0
//     x = x + attn_scale * Proj(Attn(RoPE(QKNorm(QKV(RMSNorm(x) [* ln]))) [v += lambda ve], q_gain))
//         (the attention output [minus its own-value component: XSA] [times a per-head gate: SparseAttnGate])
//     x = x + mlp_scale * Down(act(Up(RMSNorm(x) [* ln])))
//   loss = CE(softcap * tanh(RMSNorm(x) E^T / softcap))   [AsymLogit: a cap per sign]
template <GptSpec S>
struct GptArch {
  static_assert(validate_spec<S>());
  static constexpr GptSpec spec = S;
  static constexpr int vocab = S.vocab, dim = S.dim, heads = S.attention.heads, kv_heads = S.attention.kv_heads;
  static constexpr int head_dim = S.head_dim(), kv_dim = S.kv_dim(), hidden = S.hidden();
  static constexpr int rope_dims = S.attention.rope_dims;
  static constexpr double eps = S.norm.eps, rope_base = S.attention.rope_base;
  static constexpr double qk_gain_init = S.attention.qk_gain_init, softcap = S.head.softcap;
  static constexpr double embed_init_std = S.embedding.init_std;
  static constexpr Scope scalar_scope = S.depth.sharing == Sharing::matrices ? Scope::layer : Scope::block;
  static constexpr LnScaleIndex ln_scale = S.norm.ln_scale;
  static constexpr int rope_train_seq_len = S.attention.rope_train_seq_len;
  static constexpr bool orthogonal_init = S.init.orthogonal;
  static constexpr int blocks = S.blocks();
  static constexpr DepthPlan depth = S.depth_plan();

  using Embedding = TokenEmbedding<GptTokEmb>;
  using Ln = when<S.norm.ln_scale != LnScaleIndex::off, LnScale>;
  // x = E[ids] [+ bigram] [smeared before the norm | after it]; x0 = x.
  using Embed = cat_t<Program<Embedding>, when<(S.embedding.bigram_buckets > 0), BigramHash>,
                      when<(S.embedding.smear && S.embedding.smear_channels > 0), SmearGateLinear>, Program<StreamNorm>,
                      when<(S.embedding.smear && S.embedding.smear_channels == 0), SmearGate>, Program<Anchor>>;
  using Loop = when<S.depth.loop_embedding != LoopEmbedding::off, LoopPositions>;
  using Ve = when<(S.attention.ve_dim > 0), ValueEmbedding>;
  // The attention branch from its normalised input n to h: shared by the serial and the parallel block.
  using Attn = CausalAttention<LearnedGain, S.attention.doc_mask ? S.embedding.bos_id : -1>;
  using AttnBranch = cat_t<Ln, Program<QkvProduct, QkNormRope>, Ve, Program<Attn>,
                           when<!S.attention.xsa.empty(), Xsa>, when<(S.attention.gate_channels > 0), SparseAttnGate>,
                           Program<Product<GptAttnOut>>>;
  // The MLP branch from n to h.
  using MlpBranch = cat_t<Ln, Program<Product<GptMlpUp>, ActivationOf<S.mlp.activation>, Product<GptMlpDown>>>;
  using Block = cat_t<Loop, Program<ResidMix, PreNorm>, AttnBranch, Program<ScaledResidual<AttnScale>>,
                      Program<PreNorm>, MlpBranch, Program<ScaledResidual<MlpScale>>>;
  // Parallel lanes: the layers from parallel_start[phase] on run ParallelBlock over the lanes x, x1,
  // and the head reads their mean.
  static constexpr bool parallel = S.residual.parallel_from >= 0;
  static constexpr std::array<int, 2> parallel_start = [] {
    std::array<int, 2> at{-1, -1};
    for (int p = 0; p < depth.phases; ++p)
      for (int v = depth.phase[p].count - 1; v >= 0; --v)
        if (parallel && depth.phase[p][v] == S.residual.parallel_from) at[std::size_t(p)] = v;
    return at;
  }();
  using ParallelBlock =
      std::conditional_t<parallel,
                         cat_t<Program<LaneMixNorm>, AttnBranch, Program<BranchStash, LaneNorm>, MlpBranch,
                               Program<LaneMerge>>,
                         Program<>>;
  using Cap = std::conditional_t<S.head.asym_softcap, AsymSoftcap, Softcap>;
  using Head = cat_t<when<parallel, LaneMean>,
                     Program<PreNorm, std::conditional_t<S.embedding.tied, TiedHead<Embedding>, Product<GptLmHead>>,
                             Cap, CrossEntropy>>;
  using Skip = UNetSkip;
  // The reference's state-dict order within a block.
  using RowOrder = Program<QkvProduct, Product<GptAttnOut>, Attn, SparseAttnGate, Product<GptMlpUp>,
                           Product<GptMlpDown>,
                           ScaledResidual<AttnScale>, ScaledResidual<MlpScale>, ResidMix>;
};

}  // namespace pgolf
