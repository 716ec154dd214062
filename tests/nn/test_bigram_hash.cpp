// BigramHash (nn/bigram_hash.hpp, GptSpec.embedding.bigram_*): the hash against the reference's
// int32 torch arithmetic on known pairs, the forward against the formula, its tensors and placement,
// the records' orthogonal init of its projection (and InitKind::orthogonal itself), and whole-model
// finite differences in double (its component check is in test_components.cpp).
#include <catch2/catch.hpp>

#include <cmath>

#include "../model/gpt_test_specs.hpp"
#include "../model/model_gradcheck.hpp"
#include "component_cases.hpp"

using namespace pgolf;
using namespace pgolf::test;

namespace {
constexpr GptSpec kOff{.vocab = 64, .dim = 32, .depth = {.layers = 2}, .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 4}};
constexpr GptSpec with_bigram(GptSpec s, int buckets, int bdim) {
  s.embedding.bigram_buckets = buckets;
  s.embedding.bigram_dim = bdim;
  return s;
}
constexpr GptSpec kBigram = with_bigram(kOff, 32, 16);
constexpr GptSpec kBigramPlain = with_bigram(kOff, 7, 32);  // bigram_dim == dim: no projection
constexpr GptSpec with_ortho(GptSpec s) {
  s.init.orthogonal = true;
  return s;
}
constexpr GptSpec kBigramOrtho = with_ortho(with_bigram(kOff, 32, 16));

// max |M M^T - k^2 I| over the rows of M [r, c] (rows = true) or the columns.
double gram_error(const double* m, int r, int c, bool rows, double k) {
  const int n = rows ? r : c, len = rows ? c : r;
  auto at = [&](int a, int e) { return rows ? m[std::size_t(a) * c + e] : m[std::size_t(e) * c + a]; };
  double worst = 0;
  for (int a = 0; a < n; ++a)
    for (int b = 0; b < n; ++b) {
      double dot = 0;
      for (int e = 0; e < len; ++e) dot += at(a, e) * at(b, e);
      worst = std::max(worst, std::abs(dot - (a == b ? k * k : 0.0)));
    }
  return worst;
}
}  // namespace

TEST_CASE("the bigram hash is the reference's int32 arithmetic", "[forward][bigram_hash]") {
  // Values from the reference's bigram_hash (torch int32 tensors) over [3, 5, 1, 1000, 60000, 65535, 7]
  // with 2048 buckets: [2047, 1047, 1821, 759, 1062, 1287, 1405].
  STATIC_REQUIRE(bigram_bucket(5, 3, 2048) == 1047);
  STATIC_REQUIRE(bigram_bucket(1, 5, 2048) == 1821);
  STATIC_REQUIRE(bigram_bucket(1000, 1, 2048) == 759);
  // 36313 * 60000 wraps past INT32_MAX: the XOR is negative and torch's % still lands in [0, 2047)
  // (computed in int64 the bucket would be 39).
  STATIC_REQUIRE(bigram_bucket(60000, 1000, 2048) == 1062);
  STATIC_REQUIRE(bigram_bucket(65535, 60000, 2048) == 1287);
  STATIC_REQUIRE(bigram_bucket(7, 65535, 2048) == 1405);
  // Each row's first position takes the last bucket; rows [3, 5, 1, 7] and [0, 1, 2, 3] with 16
  // buckets: [15, 1, 2, 12] and [15, 13, 7, 10].
  const std::int32_t ids[] = {3, 5, 1, 7, 0, 1, 2, 3};
  const int want[] = {15, 1, 2, 12, 15, 13, 7, 10};
  for (std::size_t n = 0; n < 8; ++n) CHECK(bigram_bucket_at(ids, n, int(n % 4), 16) == want[n]);
}

TEST_CASE("BigramHash adds beta * Eb[h] Pb^T to the stream", "[forward][bigram_hash]") {
  auto check = [](auto tag) {
    using C = typename decltype(tag)::type;
    using A = typename C::Arch;
    using LA = LoneArch<A, typename C::Run>;
    constexpr auto table = arch_layout<LA>().table;
    constexpr int D = A::dim, db = A::spec.embedding.bigram_dim, Vb = A::spec.embedding.bigram_buckets;
    LoneInput in = case_input<C>(2, 4, 5);
    in.ids = {3, 5, 1, 7, 0, 1, 2, 3};
    const LoneResult r = run_case<C>(in);
    const double* E = in.params.data() + find_param(table, "bigram.embed.weight")->offset;
    const ParamInfo* proj = find_param(table, "bigram.proj.weight");
    const double beta = in.params[find_param(table, "bigram.scale")->offset];
    REQUIRE((proj != nullptr) == (db != D));
    const auto& x = in.in[std::size_t(Reg::x)];
    for (std::size_t n = 0; n < 8; ++n) {
      const int h = bigram_bucket_at(in.ids.data(), n, int(n % 4), Vb);
      if (n % 4 == 0) CHECK(h == Vb - 1);
      for (int o = 0; o < D; ++o) {
        double p = 0;
        if (proj)
          for (int k = 0; k < db; ++k) p += in.params[proj->offset + std::size_t(o) * db + k] * E[std::size_t(h) * db + k];
        else
          p = E[std::size_t(h) * db + o];
        // Relative to the terms, not to their sum: where x and beta p nearly cancel, the sum's
        // rounding is that of the terms (a BLAS order change moves it by 1e-17 on a result of 4e-5).
        const double want = x[n * D + o] + beta * p, scale = std::abs(x[n * D + o]) + std::abs(beta * p);
        CHECK(r.out[std::size_t(Reg::x)][n * D + o] == Approx(want).epsilon(1e-13).margin(1e-13 * scale));
      }
    }
    // The stream's gradient passes through unchanged.
    CHECK(r.din[std::size_t(Reg::x)] == in.weight[std::size_t(Reg::x)]);
  };
  check(std::type_identity<Case<"bigram", EmbedArch, Program<BigramHash>>>{});
  check(std::type_identity<Case<"bigram", EmbedPlainArch, Program<BigramHash>>>{});
}

TEST_CASE("BigramHash is off by default and adds its tensors after the token embedding", "[forward][bigram_hash]") {
  STATIC_REQUIRE(!program_contains<BigramHash, GptArch<GptSpec{}>::Embed>::value);
  STATIC_REQUIRE(!program_contains<BigramHash, GptArch<kOff>::Embed>::value);
  using E = GptArch<kBigram>::Embed;
  STATIC_REQUIRE(E::size == 4);
  STATIC_REQUIRE(std::is_same_v<At<E, 1>, BigramHash>);  // TokenEmbedding, BigramHash, StreamNorm, Anchor
  STATIC_REQUIRE(std::is_same_v<At<E, 2>, StreamNorm>);
  static constexpr auto on = gpt_param_table<kBigram>();
  static constexpr auto plain = gpt_param_table<kBigramPlain>();
  static constexpr auto off = gpt_param_table<kOff>();
  STATIC_REQUIRE(table_size(on) == table_size(off) + 32 * 16 + 32 * 16 + 1);
  STATIC_REQUIRE(table_size(plain) == table_size(off) + 7 * 32 + 1);
  STATIC_REQUIRE(find_param(plain, "bigram.proj.weight") == nullptr);
  constexpr const ParamInfo* emb = find_param(on, "bigram.embed.weight");
  constexpr const ParamInfo* proj = find_param(on, "bigram.proj.weight");
  constexpr const ParamInfo* scale = find_param(on, "bigram.scale");
  STATIC_REQUIRE(emb != nullptr && proj != nullptr && scale != nullptr);
  STATIC_REQUIRE((emb->rows == 32 && emb->cols == 16 && emb->init.kind == InitKind::zeros));
  STATIC_REQUIRE((emb->group == OptimGroup::adam_embed && emb->scope == Scope::global));
  STATIC_REQUIRE((proj->rows == 32 && proj->cols == 16 && proj->group == OptimGroup::muon_matrix));
  STATIC_REQUIRE((proj->init.kind == InitKind::uniform_fan_in && proj->init.value == 16.0));
  STATIC_REQUIRE((scale->numel() == 1 && scale->group == OptimGroup::adam_scalar));
  STATIC_REQUIRE((scale->init.kind == InitKind::constant && scale->init.value == 0.05));
  STATIC_REQUIRE(scale->export_policy == ExportPolicy::float32_control);
  STATIC_REQUIRE(emb->export_policy == ExportPolicy::float16);
}

TEST_CASE("the records' orthogonal init scales bigram.proj by 1/sqrt(2 * physical blocks)", "[forward][bigram_hash]") {
  static constexpr auto table = gpt_param_table<kBigramOrtho>();
  constexpr const ParamInfo* proj = find_param(table, "bigram.proj.weight");
  STATIC_REQUIRE(proj->init.kind == InitKind::orthogonal);
  CHECK(proj->init.value == Approx(1 / std::sqrt(4.0)).epsilon(1e-15));
  CHECK(constexpr_sqrt(12.0) == Approx(std::sqrt(12.0)).epsilon(1e-15));
  Gpt<kBigramOrtho, double> m(1, 4);
  m.init(3);
  const double* P = m.params().data() + proj->offset;
  CHECK(gram_error(P, 32, 16, false, 0.5) < 1e-12);  // tall [32, 16]: orthonormal columns, times 0.5
  // The table still starts at zero, so the embedding side is the token embedding's at init.
  const ParamInfo* emb = find_param(table, "bigram.embed.weight");
  for (std::size_t i = 0; i < emb->numel(); ++i) REQUIRE(m.params()[emb->offset + i] == 0.0);
}

TEST_CASE("InitKind::orthogonal: orthonormal rows or columns, the gain, deterministic by seed", "[forward][init]") {
  auto make = [](int rows, int cols, double gain) {
    ParamInfo p;
    p.name = "w";
    p.rows = rows, p.cols = cols, p.rank = 2;
    p.init = {InitKind::orthogonal, gain};
    return p;
  };
  auto draw = [](const ParamInfo& p, std::uint64_t seed) {
    std::vector<double> w(p.numel());
    init_param<double>(p, 11, seed, w.data());
    return w;
  };
  const ParamInfo wide = make(5, 12, 0.7), tall = make(12, 5, 0.7), square = make(6, 6, 1.0);
  const auto a = draw(wide, 1), b = draw(tall, 1), s = draw(square, 1);
  CHECK(gram_error(a.data(), 5, 12, true, 0.7) < 1e-12);
  CHECK(gram_error(b.data(), 12, 5, false, 0.7) < 1e-12);
  CHECK(gram_error(s.data(), 6, 6, true, 1.0) < 1e-12);
  CHECK(gram_error(s.data(), 6, 6, false, 1.0) < 1e-12);
  // Not a scaled identity: the rows of a wide matrix are not the unit vectors.
  CHECK(std::abs(a[0]) < 0.7 - 1e-6);
  CHECK(draw(wide, 1) == a);
  CHECK(draw(wide, 2) != a);
  // The gain multiplies every element of the same draw.
  const auto unit = draw(make(5, 12, 1.0), 1);
  for (std::size_t i = 0; i < a.size(); ++i) CHECK(a[i] == Approx(0.7 * unit[i]).epsilon(1e-14));
}

TEST_CASE("whole-model gradients with BigramHash match finite differences", "[gradcheck][bigram_hash]") {
  auto gradcheck = [](auto model_tag) {
    using M = typename decltype(model_tag)::type;
    M model(2, 8);
    randomize(model, 4);
    const auto tokens = random_tokens(17, 64, 4);
    const std::vector<std::int32_t> x(tokens.begin(), tokens.end() - 1), y(tokens.begin() + 1, tokens.end());
    model.zero_grad();
    model.forward(x, y);
    model.backward();
    check_every_tensor(model, [&] { return model.forward(x, y); }, 8);
  };
  SECTION("with a projection") { gradcheck(std::type_identity<Gpt<kBigram, double>>{}); }
  SECTION("without a projection") { gradcheck(std::type_identity<Gpt<kBigramPlain, double>>{}); }
}
