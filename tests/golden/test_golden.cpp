// The CPU reference against golden outputs of the PyTorch port (tests/golden/make_golden.py): the
// same weights and tokens must give the same loss and the same gradient for every tensor.
#include <catch2/catch.hpp>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "golden_file.hpp"
#include "pgolf/model/gpt.hpp"

using namespace pgolf;

namespace {

using pgolf::test::Golden;
using pgolf::test::load_golden;

std::string fmt_double(double v) {
  // Shortest round-trip form, as Python's repr writes it.
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, v);
  std::string s(buf, res.ptr);
  if (s.find('.') == std::string::npos && s.find('e') == std::string::npos) s += ".0";
  return s;
}

template <GptSpec S>
std::string spec_line() {
  std::ostringstream os;
  os << "vocab=" << S.vocab << " dim=" << S.dim << " layers=" << S.depth.layers << " loops=" << S.depth.loops
     << " heads=" << S.attention.heads << " kv_heads=" << S.attention.kv_heads
     << " rope_dims=" << S.attention.rope_dims << " rope_base=" << fmt_double(S.attention.rope_base)
     << " qk_gain_init=" << fmt_double(S.attention.qk_gain_init) << " mult=" << S.mlp.mult
     << " activation=" << (S.mlp.activation == Activation::relu2 ? "relu2" : "leaky_relu2")
     << " tied=" << (S.embedding.tied ? 1 : 0) << " init_std=" << fmt_double(S.embedding.init_std)
     << " softcap=" << fmt_double(S.head.softcap) << " eps=" << fmt_double(S.norm.eps)
     << " unet=" << (S.depth.unet_skips ? 1 : 0);
  return os.str();
}

// The spec line make_shared_golden.py writes for its looped, matrix-shared cases.
template <GptSpec S>
std::string schedule_line() {
  std::ostringstream os;
  os << "schedule=";
  for (int v = 0; v < S.depth.layers; ++v) os << (v ? "," : "") << S.schedule()[v];
  os << " sharing=" << (S.depth.sharing == Sharing::matrices ? "matrices" : "block")
     << " ln_scale=" << (S.norm.ln_scale == LnScaleIndex::layer ? "layer" : S.norm.ln_scale == LnScaleIndex::block ? "block" : "off")
     << " tied=" << (S.embedding.tied ? 1 : 0);
  return os.str();
}

template <GptSpec S>
void check_golden(const std::string& name, const std::string& spec = spec_line<S>(), int phase = 0) {
  const Golden g = load_golden(name);
  REQUIRE(g.spec == spec);
  using M = Gpt<S, double>;
  M model(g.batch, g.seq);
  model.set_phase(phase);
  pgolf::test::load_golden_weights(g, model);
  model.zero_grad();
  const double loss = model.forward(g.x, g.y);
  CHECK(loss == Approx(g.loss).epsilon(1e-12));
  model.backward();
  // Per tensor relative L2 error. Both sides run in float64; what remains is summation order.
  for (const auto& e : pgolf::test::golden_gradient_errors(g, model)) {
    INFO(e.name << ": relative L2 error " << e.error / e.norm << ", grad norm " << e.norm);
    REQUIRE(e.norm > 0);  // every tensor carries gradient in these cases
    CHECK(e.error / e.norm < 1e-10);
  }
}

constexpr GptSpec kTinyReference{
    .vocab = 64, .dim = 32, .depth = {.layers = 3}, .attention = {.heads = 4, .kv_heads = 4, .rope_dims = 8}};
constexpr GptSpec kTinyGqaPartialRope{
    .vocab = 64,
    .dim = 32,
    .depth = {.layers = 4, .loops = 2},
    .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 4, .rope_base = 500.0, .qk_gain_init = 2.0},
    .mlp = {.mult = 3, .activation = Activation::leaky_relu2},
    .embedding = {.tied = false},
    .head = {.softcap = 10.0}};

// Blocks 0..5 with the span 3..5 run three times: [0,1,2,3,4,5,3,4,5,3,4,5]; each block shares only
// its matrices, every virtual layer has its own resid_mix, attn_scale, mlp_scale and q_gain.
constexpr GptSpec kSpanMatrices{
    .vocab = 32,
    .dim = 16,
    .depth = {.layers = 12, .schedule = repeat_span(6, 3, 5, 3), .sharing = Sharing::matrices},
    .attention = {.heads = 2, .kv_heads = 2, .rope_dims = 8}};
// The same with GQA, partial RoPE, LeakyReLU^2 x3, an untied head and the LN scale by virtual layer.
constexpr GptSpec kSpanMatricesLn{
    .vocab = 32,
    .dim = 16,
    .depth = {.layers = 12, .schedule = repeat_span(6, 3, 5, 3), .sharing = Sharing::matrices},
    .attention = {.heads = 2, .kv_heads = 1, .rope_dims = 4, .qk_gain_init = 2.0},
    .mlp = {.mult = 3, .activation = Activation::leaky_relu2},
    .embedding = {.tied = false},
    .head = {.softcap = 15.0},
    .norm = {.ln_scale = LnScaleIndex::layer}};

}  // namespace

TEST_CASE("matches PyTorch: a looped span, matrices shared, scalars per virtual layer", "[golden]") {
  check_golden<kSpanMatrices>("tiny_span_matrices", schedule_line<kSpanMatrices>());
}

TEST_CASE("matches PyTorch: a looped span with GQA, partial RoPE, leaky, untied, LN scale by layer", "[golden]") {
  check_golden<kSpanMatricesLn>("tiny_span_matrices_ln", schedule_line<kSpanMatricesLn>());
}

// The Frugendorff's techniques together (make_frugendorff_golden.py): BigramHash, SmearGate with the BOS
// fix, loop positions, U-Net skips per loop, LN scale by block, the value embedding on blocks 1, 2 and
// XSA on blocks 2, 3 (block 2 has both: XSA reads v after the value embedding), NTK partial RoPE.
constexpr GptSpec kTinyFrugendorff{
    .vocab = 32,
    .dim = 16,
    .depth = {.layers = 8, .loops = 2, .skips_per_loop = true, .loop_embedding = LoopEmbedding::random},
    .attention = {.heads = 2, .kv_heads = 1, .rope_dims = 4, .rope_train_seq_len = 4, .xsa = blocks_of(2, 3),
                  .ve_dim = 8, .ve_blocks = blocks_of(1, 2)},
    .mlp = {.mult = 4},
    .embedding = {.bigram_buckets = 16, .bigram_dim = 8, .smear = true},
    .norm = {.ln_scale = LnScaleIndex::block}};

// The strongest records' techniques together (make_records_golden.py), on the loop-on schedule
// [0,1,2,1,2,1,2,3,4] with the lanes from block 3: SmearGate through 12 channels with the BOS fix,
// gated U-Net skips, XSA everywhere, SparseAttnGate, LN scale by block, LeakyReLU^2, AsymLogit.
constexpr GptSpec kTinyRecords{
    .vocab = 32,
    .dim = 16,
    .depth = {.layers = 5, .looped = repeat_span(5, 1, 2, 3), .skip_gates = true},
    .attention = {.heads = 2, .kv_heads = 1, .rope_dims = 4, .qk_gain_init = 5.0, .xsa = all_blocks(),
                  .gate_channels = 12, .gate_scale = 0.5},
    .mlp = {.mult = 4, .activation = Activation::leaky_relu2},
    .embedding = {.smear = true, .smear_channels = 12},
    .head = {.asym_softcap = true},
    .norm = {.ln_scale = LnScaleIndex::block},
    .residual = {.parallel_from = 3}};

// The same with document masking (attention never crosses a BOS), on rows of 16 with documents of one
// token among them.
constexpr GptSpec kTinyRecordsDocs = [] {
  GptSpec s = kTinyRecords;
  s.attention.doc_mask = true;
  return s;
}();

TEST_CASE("matches PyTorch: the Frugendorff's block techniques together", "[golden]") {
  check_golden<kTinyFrugendorff>(
      "tiny_frugendorff",
      "frugendorff vocab=32 dim=16 heads=2 kv_heads=1 rope_dims=4 rope_base=10000.0 train_seq_len=4 qk_gain_init=1.5 "
      "mult=4 softcap=30.0 eps=1.1920928955078125e-07 blocks=4 loops=2 xsa_blocks=2,3 ve_blocks=1,2 ve_dim=8 "
      "bigram_buckets=16 bigram_dim=8 bos_id=1");
}

TEST_CASE("matches PyTorch: the records' block techniques with parallel lanes on a looped span", "[golden]") {
  check_golden<kTinyRecords>(
      "tiny_records_stack",
      "records_stack vocab=32 dim=16 heads=2 kv_heads=1 rope_dims=4 rope_base=10000.0 qk_gain_init=5.0 mult=4 "
      "softcap=30.0 eps=1.1920928955078125e-07 blocks=5 schedule=0,1,2,1,2,1,2,3,4 parallel_from=3 gate_channels=12 "
      "gate_scale=0.5 smear_channels=12 bos_id=1",
      1);
}

TEST_CASE("matches PyTorch: the records' stack with document-masked attention", "[golden][documents]") {
  check_golden<kTinyRecordsDocs>(
      "tiny_records_stack_docs",
      "records_stack vocab=32 dim=16 heads=2 kv_heads=1 rope_dims=4 rope_base=10000.0 qk_gain_init=5.0 mult=4 "
      "softcap=30.0 eps=1.1920928955078125e-07 blocks=5 schedule=0,1,2,1,2,1,2,3,4 parallel_from=3 gate_channels=12 "
      "gate_scale=0.5 smear_channels=12 bos_id=1 doc_mask=True",
      1);
}

TEST_CASE("matches PyTorch: tiny reference GPT", "[golden]") { check_golden<kTinyReference>("tiny_reference"); }

TEST_CASE("matches PyTorch: GQA, partial RoPE, leaky, untied, shared blocks", "[golden]") {
  check_golden<kTinyGqaPartialRope>("tiny_gqa_partial_rope");
}
