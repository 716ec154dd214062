// The records' row quantisers (row-max intN, GPTQ-lite, full-Hessian GPTQ) and the version-2
// artifact that records how each matrix was stored.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <functional>
#include <string>

#include "pgolf/core/rng.hpp"
#include "pgolf/export/artifact.hpp"
#include "pgolf/export/gptq.hpp"
#include "pgolf/export/quantize_rows.hpp"
#include "pgolf/model/gpt.hpp"
#include "../test_util.hpp"

using namespace pgolf;
using namespace pgolf::test;

namespace {
std::vector<float> random_matrix(int rows, int cols, std::uint64_t seed, double sd = 0.05) {
  std::vector<float> w(std::size_t(rows) * cols);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = float(sd * normal01(seed, 1, i));
  return w;
}

// H = X^T X / m of inputs with correlated columns and uneven scales (a product input's shape).
std::vector<double> random_spd(int n, int m, std::uint64_t seed) {
  std::vector<double> X(std::size_t(m) * n);
  for (int i = 0; i < m; ++i) {
    const double common = normal01(seed, 2, std::size_t(i));
    for (int j = 0; j < n; ++j)
      X[std::size_t(i) * n + j] = (1.0 + 3.0 * (j % 5 == 0)) * normal01(seed, 3, std::size_t(i) * n + j) + 0.7 * common;
  }
  std::vector<double> H(std::size_t(n) * n, 0.0);
  for (int i = 0; i < m; ++i)
    for (int a = 0; a < n; ++a)
      for (int b = 0; b < n; ++b) H[std::size_t(a) * n + b] += X[std::size_t(i) * n + a] * X[std::size_t(i) * n + b] / m;
  return H;
}

// Rewrites both CRCs after a payload edit of an uncompressed artifact.
void fix_crcs(std::vector<std::uint8_t>& a) {
  const std::uint32_t pc = crc32_of(std::span<const std::uint8_t>(a).subspan(kArtifactHeaderBytes));
  std::memcpy(a.data() + 40, &pc, 4);
  const std::uint32_t hc = crc32_of(std::span<const std::uint8_t>(a).first(48));
  std::memcpy(a.data() + 48, &hc, 4);
}

constexpr GptSpec kSpec{.vocab = 256, .dim = 64, .depth = {.layers = 2}, .attention = {.heads = 2, .kv_heads = 1, .rope_dims = 16}};
using Model = Gpt<kSpec, float>;
}  // namespace

TEST_CASE("row-max intN: hand-checked row, the records' asymmetric range, error within half a step", "[forward][export]") {
  const float row[4] = {0.5f, -1.0f, 0.25f, 2.0f};
  const RowCodes q = quantize_rows_rowmax(row, 1, 4, 6);
  const float s = half_bits_to_float(float_to_half_bits(2.0f / 31.0f));
  CHECK(half_bits_to_float(q.scales[0]) == s);
  CHECK(q.q[0] == std::int8_t(std::nearbyint(0.5f / s)));  // 7.75 -> 8
  CHECK(q.q[0] == 8);
  CHECK(q.q[1] == -16);  // -15.5 -> -16 (half to even)
  CHECK(q.q[2] == 4);    // 3.875
  CHECK(q.q[3] == 31);
  CHECK(q.quantiser == Quantiser::rowmax);
  for (int bits = 5; bits <= 8; ++bits) {
    const auto W = random_matrix(16, 200, 10 + bits);
    const RowCodes c = quantize_rows_rowmax(W.data(), 16, 200, bits);
    const int qmax = quant_qmax(bits);
    std::vector<float> back(W.size());
    dequantize_rows(c, back.data());
    for (int r = 0; r < 16; ++r) {
      const float sr = half_bits_to_float(c.scales[std::size_t(r)]);
      for (int j = 0; j < 200; ++j) {
        const std::size_t i = std::size_t(r) * 200 + j;
        REQUIRE(c.q[i] >= -(qmax + 1));
        REQUIRE(c.q[i] <= qmax);
        REQUIRE(std::abs(back[i] - W[i]) <= 0.5f * sr * 1.01f + 1e-7f);
      }
    }
  }
  // Fewer bits, more error.
  const auto W = random_matrix(32, 256, 3);
  double prev = 0;
  for (int bits = 8; bits >= 5; --bits) {
    const double e = row_codes_sq_error(W.data(), quantize_rows_rowmax(W.data(), 32, 256, bits));
    CHECK(e > prev);
    prev = e;
  }
  CHECK_THROWS_WITH(quantize_rows_rowmax(row, 1, 4, 9), Catch::Contains("bits must be 2..8"));
}

TEST_CASE("GPTQ-lite keeps the clip percentile with the smallest matrix error", "[forward][export]") {
  // Large values so the records' 1/Qmax scale floor does not bind.
  auto W = random_matrix(24, 512, 5, 1.0);
  for (int r = 0; r < 24; r += 3) W[std::size_t(r) * 512 + 7] = 40.0f;  // outliers: clipping them pays
  double p = 0;
  const RowCodes best = quantize_rows_gptq_lite(W.data(), 24, 512, 6, &p);
  const double e_best = row_codes_sq_error(W.data(), best);
  for (double pc : kGptqLitePercentiles) {
    const RowCodes c = quantize_rows_percentile(W.data(), 24, 512, 6, pc, 1.0 / 31);
    CHECK(e_best <= row_codes_sq_error(W.data(), c));
    for (std::int8_t v : c.q) REQUIRE(std::abs(int(v)) <= 31);
  }
  CHECK(p < 1.0);
  CHECK(best.quantiser == Quantiser::gptq_lite);
  // One p for the whole matrix: every row's scale is that percentile's.
  CHECK(best.scales == quantize_rows_percentile(W.data(), 24, 512, 6, p, 1.0 / 31).scales);
}

TEST_CASE("Cholesky inverse of an SPD matrix", "[forward][export]") {
  // 37: one block; 300: blocks of 128 and a ragged last one (the BLAS trailing updates).
  for (const int n : {37, 300}) {
    INFO("n = " << n);
    const auto H = random_spd(n, 2 * n + 100, 4);
    auto L = H;
    detail::cholesky_lower(L, n, "test");
    for (int i = 0; i < n; ++i)  // L L^T = H, L lower triangular
      for (int j = 0; j < n; ++j) {
        if (j > i) REQUIRE(L[std::size_t(i) * n + j] == 0.0);
        double s = 0;
        for (int k = 0; k < n; ++k) s += L[std::size_t(i) * n + k] * L[std::size_t(j) * n + k];
        REQUIRE(s == Approx(H[std::size_t(i) * n + j]).margin(1e-9));
      }
    const auto inv = detail::inverse_from_cholesky(L, n);
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) {
        REQUIRE(inv[std::size_t(i) * n + j] == inv[std::size_t(j) * n + i]);
        double s = 0;
        for (int k = 0; k < n; ++k) s += H[std::size_t(i) * n + k] * inv[std::size_t(k) * n + j];
        REQUIRE(s == Approx(i == j ? 1.0 : 0.0).margin(1e-9));
      }
  }
  std::vector<double> bad(4, 0.0);
  bad[0] = 1, bad[3] = -1;
  CHECK_THROWS_WITH(detail::cholesky_lower(bad, 2, "H of x"), Catch::Contains("H of x: the matrix is not positive definite"));
  // A negative pivot in a later block is found there too.
  const int n = 200;
  auto H = random_spd(n, 2 * n + 100, 5);
  H[std::size_t(150) * n + 150] = -1.0;
  CHECK_THROWS_WITH(detail::cholesky_lower(H, n, "H of y"), Catch::Contains("H of y: the matrix is not positive definite (pivot 150"));
}

TEST_CASE("GPTQ: lower Hessian-weighted error than row-max and GPTQ-lite on the same weights", "[forward][export]") {
  const int rows = 48, cols = 160;
  const auto W = random_matrix(rows, cols, 8, 1.0);
  const auto H = random_spd(cols, 400, 9);
  const double e_rowmax = hessian_weighted_error(W.data(), quantize_rows_rowmax(W.data(), rows, cols, 6), H);
  const double e_lite = hessian_weighted_error(W.data(), quantize_rows_gptq_lite(W.data(), rows, cols, 6), H);
  for (bool sdclip : {true, false}) {
    INFO("sdclip " << sdclip);
    GptqSettings g;
    g.bits = 6, g.sdclip = sdclip, g.k = 12.85, g.block = 32;
    const RowCodes q = quantize_rows_gptq(W.data(), rows, cols, H, g);
    CHECK(q.quantiser == Quantiser::gptq);
    for (std::int8_t v : q.q) REQUIRE(std::abs(int(v)) <= 31);
    const double e = hessian_weighted_error(W.data(), q, H);
    if (sdclip) {  // with H = I there is no error to feed back: plain rounding with the same scales
      std::vector<double> I(std::size_t(cols) * cols, 0.0);
      for (int j = 0; j < cols; ++j) I[std::size_t(j) * cols + j] = 1;
      const RowCodes rtn = quantize_rows_gptq(W.data(), rows, cols, I, g);
      CHECK(rtn.scales == q.scales);
      CHECK(e < 0.8 * hessian_weighted_error(W.data(), rtn, H));
    } else {  // the same percentile scales as GPTQ-lite (SDClip's k trades error for entropy)
      CHECK(e < e_rowmax);
      CHECK(e < e_lite);
    }
    // The block size only batches the error propagation: the codes are the same.
    g.block = 128;
    CHECK(quantize_rows_gptq(W.data(), rows, cols, H, g).q == q.q);
  }
  // A dead column (no input reaches it) stores zeros; a Hessian of the wrong size is an error.
  auto Hd = H;
  for (int j = 0; j < cols; ++j) Hd[std::size_t(j) * cols + 3] = Hd[std::size_t(3) * cols + j] = 0;
  const RowCodes qd = quantize_rows_gptq(W.data(), rows, cols, Hd, GptqSettings{});
  for (int r = 0; r < rows; ++r) CHECK(qd.q[std::size_t(r) * cols + 3] == 0);
  CHECK_THROWS_WITH(quantize_rows_gptq(W.data(), rows, cols, std::vector<double>(10), GptqSettings{}, "GPTQ of w"),
                    Catch::Contains("GPTQ of w: Hessian holds 10 values"));
}

TEST_CASE("artifact version 2 records each matrix's quantiser; defaults stay version 1", "[forward][export]") {
  std::vector<float> p(Model::num_params);
  init_params<float>(Model::param_table, 7, p);
  for (std::size_t i = 0; i < p.size(); ++i) p[i] += float(0.01 * normal01(99, 3, i));
  const auto& table = Model::param_table;

  // Default options: the reference's bytes exactly.
  CHECK(encode_artifact(table, std::span<const float>(p), Codec::zlib, -1, ExportOptions{}) ==
        encode_artifact(table, std::span<const float>(p), Codec::zlib));

  ExportOptions o;
  o.quant_min_numel = 0;  // every 2-D non-control matrix of this small model
  o.attn = {Quantiser::rowmax, 6};
  o.mlp = {Quantiser::rowmax, 5};
  o.embed = {Quantiser::int8_clip, 8};
  o.other = {Quantiser::gptq_lite, 6};
  const auto codes = quantize_for_export(table, std::span<const float>(p), o);
  for (Codec c : kAllCodecs) {
    INFO(to_string(c));
    const auto bytes = encode_artifact(table, std::span<const float>(p), c, -1, o);
    std::vector<float> back(p.size());
    const ArtifactInfo info = decode_artifact(std::span<const std::uint8_t>(bytes), table, std::span<float>(back));
    CHECK(info.version == 2);
    CHECK(info.raw_bytes >= artifact_payload_bytes_v2(table, false));
    CHECK(info.raw_bytes <= artifact_payload_bytes_v2(table, true));
    int quantised = 0;
    for (std::size_t t = 0; t < table.size(); ++t) {
      const ParamInfo& pi = table[t];
      std::vector<float> want(pi.numel());
      if (codes[t]) {
        ++quantised;
        const Quantiser expect = o.choice(tensor_class(pi)).quantiser;
        CHECK(codes[t]->quantiser == expect);
        dequantize_rows(*codes[t], want.data());
      } else if (pi.export_policy == ExportPolicy::float32_control) {
        want.assign(p.begin() + long(pi.offset), p.begin() + long(pi.offset + pi.numel()));
      } else {
        for (std::size_t i = 0; i < pi.numel(); ++i) want[i] = half_bits_to_float(float_to_half_bits(p[pi.offset + i]));
      }
      REQUIRE(std::equal(want.begin(), want.end(), back.begin() + long(pi.offset)));
    }
    CHECK(quantised >= 1 + 4 * 2 + 2 * 2);  // embedding, q/k/v/proj and fc/proj of both blocks
  }

  // Unknown quantiser id, bad bits, out-of-range codes and an unknown compressor are clear errors.
  REQUIRE(codes[0]);  // the table's first row is the embedding, stored as rows
  const auto plain = encode_artifact_codes(table, std::span<const float>(p), codes, Codec::none);
  const std::size_t desc = kArtifactHeaderBytes + 1;  // after tensor 0's policy byte
  std::vector<float> back(p.size());
  auto decode = [&](const std::vector<std::uint8_t>& a) {
    return error_of([&] { decode_artifact(std::span<const std::uint8_t>(a), table, std::span<float>(back)); });
  };
  auto a = plain;
  a[desc] = 9;
  fix_crcs(a);
  CHECK_THAT(decode(a), Catch::Contains("tensor tok_emb.weight has quantiser id 9, which this build does not know"));
  a = plain;
  a[desc + 1] = 12;
  fix_crcs(a);
  CHECK_THAT(decode(a), Catch::Contains("tensor tok_emb.weight has 12 quantisation bits"));
  a = plain;
  a[desc + 2] = 200;
  fix_crcs(a);
  CHECK_THAT(decode(a), Catch::Contains("tok_emb.weight has a low-rank correction of rank 200, above the 16"));
  a = plain;
  a[desc + 1] = 2;  // int2: the int8 codes fall outside [-2, 1]
  fix_crcs(a);
  CHECK_THAT(decode(a), Catch::Contains("outside the 2-bit range"));
  a = plain;
  a[12] = 7;
  fix_crcs(a);
  CHECK_THAT(decode(a), Catch::Contains("compressor id 7 in the header is not known to this build"));
  a = plain;
  a[8] = 3;
  fix_crcs(a);
  CHECK_THAT(decode(a), Catch::Contains("format version 3; this build reads versions 1 and 2"));
  a = plain;
  const std::uint64_t huge = std::uint64_t(1) << 40;
  std::memcpy(a.data() + 24, &huge, 8);
  fix_crcs(a);
  CHECK_THAT(decode(a), Catch::Contains("version-2 payload is"));
  CHECK(decode(plain) == "no error");

  // GPTQ without a calibration Hessian names the tensor.
  ExportOptions g = o;
  g.attn = {Quantiser::gptq, 6};
  CHECK_THAT(error_of([&] { quantize_for_export(table, std::span<const float>(p), g); }),
             Catch::Contains("GPTQ export: tensor blocks.0.attn.c_q.weight has no calibration Hessian"));
}

TEST_CASE("LQER lowers the error of the tensors it corrects, and round-trips through the artifact", "[forward][export]") {
  std::vector<float> p(Model::num_params);
  init_params<float>(Model::param_table, 7, p);
  for (std::size_t i = 0; i < p.size(); ++i) p[i] += float(0.01 * normal01(99, 3, i));
  const auto& table = Model::param_table;
  ExportOptions o;
  o.quant_min_numel = 0;
  o.attn = o.mlp = o.other = o.embed = {Quantiser::rowmax, 4};
  const auto plain = quantize_for_export(table, std::span<const float>(p), o);
  o.lqer_rank = 4;
  o.lqer_tensors = 2;
  const auto corrected = quantize_for_export(table, std::span<const float>(p), o);
  auto full_error = [&](std::size_t t, const RowCodes& c) {
    const ParamInfo& pi = table[t];
    std::vector<double> w(pi.numel());
    dequantize_rows(c, w.data());
    apply_lqer(c.lqer, pi.rows, pi.cols, w.data());
    double e = 0;
    for (std::size_t i = 0; i < w.size(); ++i) e += (double(p[pi.offset + i]) - w[i]) * (double(p[pi.offset + i]) - w[i]);
    return e;
  };
  // The two tensors with the largest error get rank 4; their error falls; nothing else changes.
  double smallest_corrected = 1e300, largest_other = 0;
  int n_corrected = 0;
  for (std::size_t t = 0; t < table.size(); ++t) {
    if (!plain[t]) continue;
    INFO(table[t].name.c_str());
    const double before = full_error(t, *plain[t]);
    CHECK(corrected[t]->q == plain[t]->q);
    if (corrected[t]->lqer.rank > 0) {
      ++n_corrected;
      CHECK(corrected[t]->lqer.rank == 4);
      CHECK(full_error(t, *corrected[t]) < 0.97 * before);
      smallest_corrected = std::min(smallest_corrected, before);
    } else {
      largest_other = std::max(largest_other, before);
    }
  }
  CHECK(n_corrected == 2);
  CHECK(smallest_corrected >= largest_other);
  // The artifact stores and applies the correction.
  const auto bytes = encode_artifact(table, std::span<const float>(p), Codec::zstd, 3, o);
  std::vector<float> back(p.size());
  decode_artifact(std::span<const std::uint8_t>(bytes), table, std::span<float>(back));
  for (std::size_t t = 0; t < table.size(); ++t) {
    if (!corrected[t] || corrected[t]->lqer.rank == 0) continue;
    const ParamInfo& pi = table[t];
    std::vector<float> want(pi.numel());
    dequantize_rows(*corrected[t], want.data());
    apply_lqer(corrected[t]->lqer, pi.rows, pi.cols, want.data());
    CHECK(std::equal(want.begin(), want.end(), back.begin() + long(pi.offset)));
  }
  CHECK_THROWS_WITH(fit_lqer(std::vector<double>(4), 2, 2, 17), Catch::Contains("LQER rank must be 1..16"));
}

TEST_CASE("selective +-1 pruning reaches a byte target", "[forward][export]") {
  std::vector<float> p(Model::num_params);
  init_params<float>(Model::param_table, 7, p);
  for (std::size_t i = 0; i < p.size(); ++i) p[i] += float(0.01 * normal01(99, 3, i));
  const auto& table = Model::param_table;
  ExportOptions o;
  o.quant_min_numel = 0;
  o.attn = o.mlp = o.other = {Quantiser::rowmax, 4};
  const auto codes = quantize_for_export(table, std::span<const float>(p), o);
  const std::size_t full = encode_artifact_codes(table, std::span<const float>(p), codes, Codec::zlib).size();
  // Already small enough: nothing pruned.
  PruneResult none = prune_to_target(table, std::span<const float>(p), codes, Codec::zlib, -1, full);
  CHECK(none.pruned == 0);
  CHECK(none.bytes.size() == full);
  REQUIRE(none.candidates > 1000);
  // Every +-1 zeroed: the floor of what pruning reaches.
  auto all = codes;
  for (auto& c : all)
    if (c && c->quantiser != Quantiser::int8_clip)
      for (auto& q : c->q)
        if (q == 1 || q == -1) q = 0;
  const std::size_t floor = encode_artifact_codes(table, std::span<const float>(p), all, Codec::zlib).size();
  REQUIRE(floor < full);
  const std::size_t target = (full + floor) / 2;
  o.target_bytes = target;
  std::size_t pruned = 0;
  const auto bytes = encode_artifact(table, std::span<const float>(p), Codec::zlib, -1, o, nullptr, &pruned);
  CHECK(bytes.size() <= target);
  CHECK(pruned > 0);
  CHECK(pruned < none.candidates);
  std::vector<float> back(p.size());
  const ArtifactInfo info = decode_artifact(std::span<const std::uint8_t>(bytes), table, std::span<float>(back));
  CHECK(info.file_bytes == bytes.size());
  // The search is deterministic: the same count and bytes again.
  const PruneResult again = prune_to_target(table, std::span<const float>(p), codes, Codec::zlib, -1, target);
  CHECK(again.pruned == pruned);
  CHECK(again.bytes == bytes);
  CHECK_THROWS_WITH(prune_to_target(table, std::span<const float>(p), codes, Codec::zlib, -1, floor - 1),
                    Catch::Contains("+-1 pruning cannot reach"));
}
