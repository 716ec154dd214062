#include <catch2/catch.hpp>

#include "pgolf/model/gpt_params.hpp"
#include "pgolf/model/gpt_spec.hpp"

using namespace pgolf;

TEST_CASE("default GptSpec is the parameter-golf baseline", "[forward][spec]") {
  constexpr GptSpec s{};
  STATIC_REQUIRE(validate_spec<s>());
  STATIC_REQUIRE(s.vocab == 1024);
  STATIC_REQUIRE(s.dim == 512);
  STATIC_REQUIRE(s.depth.layers == 9);
  STATIC_REQUIRE(s.blocks() == 9);
  STATIC_REQUIRE(s.attention.heads == 8);
  STATIC_REQUIRE(s.attention.kv_heads == 4);
  STATIC_REQUIRE(s.head_dim() == 64);
  STATIC_REQUIRE(s.attention.rope_dims == 64);
  STATIC_REQUIRE(s.attention.rope_base == 10000.0);
  STATIC_REQUIRE(s.attention.qk_gain_init == 1.5);
  STATIC_REQUIRE(s.hidden() == 1024);
  STATIC_REQUIRE(s.mlp.activation == Activation::relu2);
  STATIC_REQUIRE(s.embedding.tied);
  STATIC_REQUIRE(s.embedding.init_std == 0.005);
  STATIC_REQUIRE(s.head.softcap == 30.0);
  STATIC_REQUIRE(s.norm.eps == double(FLT_EPSILON));
  STATIC_REQUIRE(s.encoder_layers() == 4);
  STATIC_REQUIRE(s.skip_count() == 4);
}

TEST_CASE("baseline parameter table: 17,059,912 parameters, groups and export as the reference", "[forward][spec]") {
  constexpr auto table = gpt_param_table<GptSpec{}>();
  STATIC_REQUIRE(table_size(table) == 17'059'912);
  STATIC_REQUIRE(table.size() == 1 + 9 * 10 + 1);
  // Contiguous, non-overlapping offsets in table order.
  std::size_t at = 0;
  for (const auto& p : table) {
    REQUIRE(p.offset == at);
    at += p.numel();
  }
  const auto* emb = find_param(table, "tok_emb.weight");
  REQUIRE(emb != nullptr);
  CHECK(emb->group == OptimGroup::adam_embed);
  CHECK(emb->export_policy == ExportPolicy::int8_per_row);
  CHECK(emb->init.kind == InitKind::normal);
  CHECK(emb->init.value == 0.005);
  const auto* cq = find_param(table, "blocks.8.attn.c_q.weight");
  REQUIRE(cq != nullptr);
  CHECK(cq->group == OptimGroup::muon_matrix);
  CHECK(cq->block == 8);
  CHECK(cq->init.kind == InitKind::uniform_fan_in);
  CHECK(cq->init.value == 512.0);
  const auto* ck = find_param(table, "blocks.0.attn.c_k.weight");
  CHECK(ck->rows == 256);
  CHECK(ck->cols == 512);
  CHECK(find_param(table, "blocks.3.attn.proj.weight")->init.kind == InitKind::zeros);
  CHECK(find_param(table, "blocks.3.mlp.proj.weight")->init.kind == InitKind::zeros);
  CHECK(find_param(table, "blocks.3.mlp.fc.weight")->rows == 1024);
  const auto* gain = find_param(table, "blocks.2.attn.q_gain");
  CHECK(gain->group == OptimGroup::adam_scalar);
  CHECK(gain->export_policy == ExportPolicy::float32_control);
  CHECK(gain->init.value == 1.5);
  const auto* mix = find_param(table, "blocks.2.resid_mix");
  CHECK(mix->rows == 2);
  CHECK(mix->group == OptimGroup::adam_scalar);
  CHECK(mix->init.kind == InitKind::mix_identity);
  const auto* skip = find_param(table, "skip_weights");
  CHECK(skip->rows == 4);
  CHECK(skip->export_policy == ExportPolicy::float32_control);
  CHECK(find_param(table, "lm_head.weight") == nullptr);
  std::size_t muon = 0;
  for (const auto& p : table) muon += p.group == OptimGroup::muon_matrix ? p.numel() : 0;
  CHECK(muon == 9u * 1'835'008u);
}

TEST_CASE("a shared-block spec stores each physical block once", "[forward][spec]") {
  constexpr GptSpec s{.depth = {.layers = 12, .loops = 3}};
  STATIC_REQUIRE(s.blocks() == 4);
  STATIC_REQUIRE(s.block_of(0) == 0);
  STATIC_REQUIRE(s.block_of(5) == 1);
  STATIC_REQUIRE(s.block_of(11) == 3);
  constexpr auto table = gpt_param_table<s>();
  STATIC_REQUIRE(table.size() == 1 + 4 * 10 + 1);
  CHECK(find_param(table, "blocks.4.attn.c_q.weight") == nullptr);
  CHECK(find_param(table, "skip_weights")->rows == 6);  // skips pair virtual layers
}

TEST_CASE("an untied spec adds a zero-initialised head in its own group", "[forward][spec]") {
  constexpr auto table = gpt_param_table<GptSpec{.embedding = {.tied = false}}>();
  const auto* head = find_param(table, "lm_head.weight");
  REQUIRE(head != nullptr);
  CHECK(head->group == OptimGroup::adam_head);
  CHECK(head->init.kind == InitKind::zeros);
  CHECK(table.back().name.view() == "lm_head.weight");
}
