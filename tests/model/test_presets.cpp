// The published configurations pgolf ships as presets: their parameter counts equal the runs' logs.
#include <catch2/catch.hpp>

#include <cmath>

#include "pgolf/model/gpt_params.hpp"
#include "pgolf/presets/frugendorff.hpp"
#include "pgolf/presets/records_stack.hpp"

using namespace pgolf;

TEST_CASE("the Frugendorff preset has the run's 28,224,320 parameters", "[forward][presets]") {
  constexpr auto table = gpt_param_table<presets::frugendorff>();
  STATIC_REQUIRE(table_size(table) == 28'224'320);
  // Its decomposition (TECHNIQUES.md 7.1): 6 blocks of 4,508,170 and the model-level tensors.
  std::size_t blocks = 0;
  for (const auto& p : table)
    if (p.scope == Scope::block) blocks += p.numel();
  CHECK(blocks == 6 * 4'508'170);
  auto numel = [&](std::string_view n) {
    const ParamInfo* p = find_param(table, n);
    REQUIRE(p != nullptr);
    return p->numel();
  };
  CHECK(numel("tok_emb.weight") == 655'360);
  CHECK(numel("bigram.embed.weight") == 262'144);
  CHECK(numel("bigram.proj.weight") == 81'920);
  CHECK(numel("bigram.scale") == 1);
  CHECK(numel("smear.gate") == 640);
  CHECK(numel("skip_weights") == 1'920);
  CHECK(numel("loop_pos") == 1'280);
  CHECK(numel("ve_shared.embed.weight") == 131'072);
  CHECK(numel("ve_shared.proj.weight") == 40'960);
  CHECK(numel("ve_shared.scale") == 1);
  CHECK(numel("ve_layer_scales") == 2);
  // The records' optimizer groups (TECHNIQUES.md 3.3): the projections are Muon matrices, the tables
  // token Adam, the rest scalar Adam.
  CHECK(find_param(table, "bigram.proj.weight")->group == OptimGroup::muon_matrix);
  CHECK(find_param(table, "ve_shared.proj.weight")->group == OptimGroup::muon_matrix);
  CHECK(find_param(table, "bigram.embed.weight")->group == OptimGroup::adam_embed);
  CHECK(find_param(table, "ve_shared.embed.weight")->group == OptimGroup::adam_embed);
  CHECK(find_param(table, "loop_pos")->group == OptimGroup::adam_scalar);
  CHECK(find_param(table, "smear.gate")->group == OptimGroup::adam_scalar);
}

TEST_CASE("the records stack preset has the record's 35,945,673 parameters", "[forward][presets]") {
  constexpr auto table = gpt_param_table<presets::records_stack>();
  STATIC_REQUIRE(table_size(table) == 35'945'673);
  // Its decomposition (the record's state dict): 11 blocks of matrices and per-block tensors, the
  // skip weights and gates of the looped schedule's 8 skips, the lanes' lambdas, the smear gate and the
  // two logit caps.
  std::size_t matrices = 0, per_block = 0;
  for (const auto& p : table)
    if (p.scope == Scope::block) (p.group == OptimGroup::muon_matrix ? matrices : per_block) += p.numel();
  CHECK(matrices == 35'913'728 - 4'194'304);
  CHECK(per_block == 23'672);
  auto numel = [&](std::string_view n) {
    const ParamInfo* p = find_param(table, n);
    REQUIRE(p != nullptr);
    return p->numel();
  };
  CHECK(numel("tok_emb.weight") == 4'194'304);
  CHECK(numel("blocks.0.attn.attn_gate_w") == 96);
  CHECK(numel("skip_weights") == 4'096);
  CHECK(numel("skip_gates") == 4'096);
  CHECK(numel("parallel_post_lambdas") == 44);
  CHECK(numel("parallel_resid_lambdas") == 22);
  CHECK(numel("smear_gate.weight") == 12);
  CHECK(numel("smear_lambda") == 1);
  CHECK(numel("softcap_pos") == 1);
  CHECK(numel("softcap_neg") == 1);
  // 17 virtual layers once the loop is on; the lanes from virtual layer 8 unlooped, 14 looped.
  using A = GptArch<presets::records_stack>;
  STATIC_REQUIRE(A::depth.layers(1) == 17);
  STATIC_REQUIRE(A::parallel_start[0] == 8);
  STATIC_REQUIRE(A::parallel_start[1] == 14);
  STATIC_REQUIRE(A::depth.max_skips() == 8);
}

TEST_CASE("the records' orthogonal init: block matrices orthogonal, output projections zero, .proj scaled",
          "[forward][presets]") {
  constexpr auto frug = gpt_param_table<presets::frugendorff>();
  for (const char* n : {"blocks.0.attn.c_q.weight", "blocks.0.attn.c_k.weight", "blocks.5.attn.c_v.weight",
                        "blocks.3.mlp.fc.weight"}) {
    INFO(n);
    CHECK(find_param(frug, n)->init.kind == InitKind::orthogonal);
    CHECK(find_param(frug, n)->init.value == 1.0);
  }
  CHECK(find_param(frug, "blocks.0.attn.proj.weight")->init.kind == InitKind::zeros);
  CHECK(find_param(frug, "blocks.0.mlp.proj.weight")->init.kind == InitKind::zeros);
  // bigram.proj and ve_shared.proj: 1/sqrt(2 * 6 physical blocks).
  CHECK(find_param(frug, "bigram.proj.weight")->init.kind == InitKind::orthogonal);
  CHECK(find_param(frug, "bigram.proj.weight")->init.value == Approx(1 / std::sqrt(12.0)).epsilon(1e-15));
  CHECK(find_param(frug, "ve_shared.proj.weight")->init.value == Approx(1 / std::sqrt(12.0)).epsilon(1e-15));
  // Without it: PyTorch's Linear init.
  constexpr auto base = gpt_param_table<GptSpec{}>();
  CHECK(find_param(base, "blocks.0.attn.c_q.weight")->init.kind == InitKind::uniform_fan_in);
}
