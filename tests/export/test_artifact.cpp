// The artifact format: every policy round-trips as its quantiser says, every codec works, and
// truncation, corruption and a wrong variant are clear errors.
#include <catch2/catch.hpp>

#include <cstring>
#include <string>

#include "pgolf/export/artifact.hpp"
#include "pgolf/model/gpt.hpp"
#include "../test_util.hpp"

using namespace pgolf;
using namespace pgolf::test;

namespace {
constexpr GptSpec kSpec{.vocab = 256, .dim = 64, .depth = {.layers = 2}, .attention = {.heads = 2, .kv_heads = 1, .rope_dims = 16}};
constexpr GptSpec kOther{.vocab = 256, .dim = 64, .depth = {.layers = 3}, .attention = {.heads = 2, .kv_heads = 1, .rope_dims = 16}};
using Model = Gpt<kSpec, float>;

std::vector<float> trained_like_params() {
  std::vector<float> p(Model::num_params);
  init_params<float>(Model::param_table, 7, p);
  // Control tensors at init are exact in fp16; perturb everything so fp32 vs fp16 storage shows.
  for (std::size_t i = 0; i < p.size(); ++i) p[i] += float(0.01 * normal01(99, 3, i));
  return p;
}

}  // namespace

TEST_CASE("compressors round-trip and reject bad levels", "[forward][export]") {
  std::vector<std::uint8_t> data(50000);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = std::uint8_t(uniform01(1, 2, i) < 0.7 ? 0 : i % 251);
  for (Codec c : kAllCodecs) {
    INFO(to_string(c));
    CHECK(parse_codec(to_string(c)) == c);
    const auto packed = compress_bytes(data, c, c == Codec::zstd ? 3 : -1);
    if (c != Codec::none) CHECK(packed.size() < data.size() / 2);
    CHECK(decompress_bytes(packed, c, data.size()) == data);
    // Incompressible input (LZMA2 and brotli store it raw) and the empty input round-trip too.
    std::vector<std::uint8_t> noise(70001);
    for (std::size_t i = 0; i < noise.size(); ++i) noise[i] = std::uint8_t(uniform01(5, 6, i) * 256);
    CHECK(decompress_bytes(compress_bytes(noise, c), c, noise.size()) == noise);
    CHECK(decompress_bytes(compress_bytes({}, c), c, 0).empty());
  }
  // The shuffle regroups bytes by position modulo 2 (odd lengths included) and is undone exactly.
  const std::vector<std::uint8_t> five{1, 2, 3, 4, 5};
  CHECK(detail::shuffle_bytes(five) == std::vector<std::uint8_t>{1, 3, 5, 2, 4});
  CHECK(detail::unshuffle_bytes(detail::shuffle_bytes(five)) == five);
  // On 16-bit values with a regular high byte (fp16-like), the shuffle helps brotli.
  std::vector<std::uint8_t> halves(60000);
  for (std::size_t i = 0; i < halves.size(); i += 2) {
    halves[i] = std::uint8_t(uniform01(7, 8, i) * 256);
    halves[i + 1] = std::uint8_t(0x3c + (uniform01(9, 8, i) < 0.5));
  }
  CHECK(compress_bytes(halves, Codec::brotli_shuffle).size() < compress_bytes(halves, Codec::brotli).size());
  CHECK_THROWS_WITH(compress_bytes(data, Codec::lzma, 10), Catch::Contains("lzma preset must be 0..9"));
  auto lz = compress_bytes(data, Codec::lzma);
  lz[lz.size() / 2] ^= 0x5a;
  CHECK_THROWS_WITH(decompress_bytes(lz, Codec::lzma, data.size()), Catch::Contains("lzma payload is corrupt"));
  CHECK_THROWS_WITH(decompress_bytes(data, Codec(17), 3), Catch::Contains("unknown codec id 17"));
  CHECK_THROWS_WITH(compress_bytes(data, Codec::zlib, 10), Catch::Contains("zlib level must be 0..9"));
  CHECK_THROWS_WITH(compress_bytes(data, Codec::zstd, 0), Catch::Contains("zstd level must be"));
  CHECK_THROWS_WITH(parse_codec("xz"), Catch::Contains("unknown compressor 'xz'"));
  auto packed = compress_bytes(data, Codec::zstd, 3);
  packed.resize(packed.size() / 2);
  CHECK_THROWS_WITH(decompress_bytes(packed, Codec::zstd, data.size()), Catch::Contains("zstd payload is corrupt"));
}

TEST_CASE("artifact round trip follows each tensor's export policy", "[forward][export]") {
  const auto params = trained_like_params();
  for (Codec c : kAllCodecs) {
    INFO(to_string(c));
    const auto bytes = encode_artifact(Model::param_table, std::span<const float>(params), c, c == Codec::zstd ? 19 : -1);
    std::vector<float> back(params.size(), -1e30f);
    const ArtifactInfo info = decode_artifact(std::span<const std::uint8_t>(bytes), Model::param_table, std::span<float>(back));
    CHECK(info.file_bytes == bytes.size());
    CHECK(info.tensors == Model::param_table.size());
    CHECK(info.codec == c);
    CHECK(peek_artifact(bytes).raw_bytes == info.raw_bytes);
    for (const auto& p : Model::param_table) {
      INFO(p.name.c_str() << " " << to_string(p.export_policy));
      const float* a = params.data() + p.offset;
      const float* b = back.data() + p.offset;
      switch (p.export_policy) {
        case ExportPolicy::int8_per_row: {
          const Int8Rows q = quantize_int8_rows(a, p.rows, p.cols);
          std::vector<float> expect(p.numel());
          dequantize_int8_rows(q, expect.data());
          CHECK(std::memcmp(expect.data(), b, p.numel() * sizeof(float)) == 0);
          break;
        }
        case ExportPolicy::int8_per_tensor:
          FAIL("the GPT table has no int8_per_tensor tensor");
          break;
        case ExportPolicy::float16:
          for (std::size_t i = 0; i < p.numel(); ++i) REQUIRE(b[i] == half_bits_to_float(float_to_half_bits(a[i])));
          break;
        case ExportPolicy::float32_control:
          CHECK(std::memcmp(a, b, p.numel() * sizeof(float)) == 0);
          break;
      }
    }
  }
}

TEST_CASE("non-matrix tensors over 65,536 elements are int8 per tensor", "[forward][export]") {
  constexpr std::array<ParamInfo, 2> table{ParamInfo{.name = "big_vector", .offset = 0, .rows = 70000, .cols = 1, .rank = 1,
                                                     .export_policy = reference_export_policy(70000, 1, false)},
                                           ParamInfo{.name = "gain", .offset = 70000, .rows = 4, .cols = 1, .rank = 1,
                                                     .export_policy = reference_export_policy(4, 1, true)}};
  static_assert(table[0].export_policy == ExportPolicy::int8_per_tensor);
  static_assert(table[1].export_policy == ExportPolicy::float32_control);
  std::vector<float> x(70004);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = float(normal01(5, 5, i));
  const auto bytes = encode_artifact(table, std::span<const float>(x), Codec::zlib);
  std::vector<float> back(x.size());
  decode_artifact(std::span<const std::uint8_t>(bytes), table, std::span<float>(back));
  const Int8Tensor q = quantize_int8_tensor(x.data(), 70000);
  std::vector<float> expect(70000);
  dequantize_int8_tensor(q, expect.data());
  CHECK(std::memcmp(expect.data(), back.data(), 70000 * sizeof(float)) == 0);
  CHECK(std::memcmp(x.data() + 70000, back.data() + 70000, 4 * sizeof(float)) == 0);
}

TEST_CASE("truncated, corrupted or foreign artifacts are clear errors", "[forward][export][bad_input]") {
  const auto params = trained_like_params();
  const auto good = encode_artifact(Model::param_table, std::span<const float>(params), Codec::zstd, 3);
  std::vector<float> out(params.size());
  auto load = [&](std::vector<std::uint8_t> bytes) {
    return error_of([&] { decode_artifact(std::span<const std::uint8_t>(bytes), Model::param_table, std::span<float>(out), "model.pgolf"); });
  };
  CHECK(load(good) == "no error");

  SECTION("truncated") {
    CHECK_THAT(load({good.begin(), good.begin() + 20}), Catch::Contains("model.pgolf is truncated") &&
                                                            Catch::Contains("shorter than the 52-byte header"));
    CHECK_THAT(load({good.begin(), good.begin() + 52}), Catch::Contains("model.pgolf is truncated"));
    CHECK_THAT(load({good.begin(), good.end() - 1}), Catch::Contains("model.pgolf is truncated"));
    auto longer = good;
    longer.push_back(0);
    CHECK_THAT(load(longer), Catch::Contains("followed by extra bytes"));
  }
  SECTION("a flipped byte anywhere") {
    for (std::size_t at : {std::size_t(20), std::size_t(44), std::size_t(60), good.size() / 2, good.size() - 1}) {
      auto bad = good;
      bad[at] ^= 0x10;
      INFO("byte " << at);
      CHECK_THAT(load(bad), Catch::Contains("corrupted (checksum mismatch)"));
    }
    auto bad = good;
    bad[0] = 'X';
    CHECK_THAT(load(bad), Catch::Contains("not a pgolf artifact"));
  }
  SECTION("a wrong payload size behind valid checksums") {
    // Found by fuzz/fuzz_artifact: the header's payload size was allocated before any check.
    for (std::uint64_t size : {std::uint64_t(1) << 49, std::uint64_t(artifact_payload_bytes(Model::param_table) + 1)}) {
      auto bad = good;
      std::memcpy(bad.data() + 24, &size, 8);
      const std::uint32_t crc = crc32_of(std::span<const std::uint8_t>(bad).first(48));
      std::memcpy(bad.data() + 48, &crc, 4);
      INFO("size " << size);
      CHECK_THAT(load(bad), Catch::Contains("the header says the payload is"));
    }
  }
  SECTION("another variant's artifact") {
    using Other = Gpt<kOther, float>;
    std::vector<float> p(Other::num_params);
    init_params<float>(Other::param_table, 1, p);
    const auto foreign = encode_artifact(Other::param_table, std::span<const float>(p), Codec::zlib);
    CHECK_THAT(load(foreign), Catch::Contains("different model variant"));
  }
}
