// The safetensors format on a small hand-built table: round trips in double and float, the F16 and
// BF16 readers, and every bad input the reader must name (the model-level proofs against PyTorch
// are in tests/golden/test_safetensors_golden.cpp).
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "pgolf/core/rng.hpp"
#include "pgolf/export/safetensors.hpp"
#include "../test_util.hpp"

using namespace pgolf;
using namespace pgolf::test;
using nlohmann::json;

namespace {

// a.weight [4, 3], a.gain [4], b.mix [2, 5]
constexpr std::array<ParamInfo, 3> kTable = [] {
  std::array<ParamInfo, 3> t{};
  ParamTableBuilder<3> b{t};
  b.add("a.weight", 4, 3, 2, Init{}, OptimGroup::muon_matrix, false, -1);
  b.add("a.gain", 4, 1, 1, Init{}, OptimGroup::adam_scalar, true, -1);
  b.add("b.mix", 2, 5, 2, Init{}, OptimGroup::adam_scalar, true, -1);
  b.finish();
  return t;
}();
constexpr std::size_t kN = table_size(kTable);
const StateDictNaming kNaming{true, "test"};

template <class T>
std::vector<T> values() {
  std::vector<T> v(kN);
  for (std::size_t i = 0; i < kN; ++i) v[i] = T(normal01(3, 4, i) / 3.0);
  return v;
}

// A file split into its header JSON and data buffer, and put back together (for corrupting).
struct Parts {
  json header;
  std::vector<std::uint8_t> data;
};
Parts split(const std::vector<std::uint8_t>& bytes) {
  std::uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  return {json::parse(bytes.begin() + 8, bytes.begin() + 8 + std::ptrdiff_t(n)),
          std::vector<std::uint8_t>(bytes.begin() + 8 + std::ptrdiff_t(n), bytes.end())};
}
std::vector<std::uint8_t> join(const std::string& header, const std::vector<std::uint8_t>& data) {
  std::vector<std::uint8_t> out(8 + header.size());
  const std::uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  std::memcpy(out.data() + 8, header.data(), header.size());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}
std::vector<std::uint8_t> join(const Parts& p) { return join(p.header.dump(), p.data); }

std::vector<std::uint8_t> good_file() {
  const auto v = values<float>();
  return encode_safetensors(kTable, std::span<const float>(v), StDtype::F32, kNaming, "test-variant");
}

std::string decode_error(const std::vector<std::uint8_t>& bytes) {
  return error_of([&] {
    std::vector<double> out(kN);
    decode_safetensors(std::span<const std::uint8_t>(bytes), kTable, std::span<double>(out), "bad.safetensors");
  });
}

}  // namespace

TEST_CASE("safetensors round-trips a table bit for bit in double and float", "[forward][export]") {
  const auto d = values<double>();
  const auto bytes = encode_safetensors(kTable, std::span<const double>(d), StDtype::F64, kNaming, "v");
  std::vector<double> back(kN, -1);
  const SafetensorsInfo info = decode_safetensors(std::span<const std::uint8_t>(bytes), kTable, std::span<double>(back));
  CHECK(std::memcmp(back.data(), d.data(), kN * 8) == 0);
  CHECK(info.tensors == 3);
  CHECK(info.dtypes.at("F64") == 3);
  CHECK(info.metadata.at("pgolf.naming") == "reference");
  CHECK(info.metadata.at("pgolf.variant") == "v");
  CHECK(info.metadata.at("format") == "pt");

  const auto f = values<float>();
  const auto fbytes = encode_safetensors(kTable, std::span<const float>(f), StDtype::F32, kNaming);
  std::vector<float> fback(kN, -1);
  decode_safetensors(std::span<const std::uint8_t>(fbytes), kTable, std::span<float>(fback));
  CHECK(std::memcmp(fback.data(), f.data(), kN * 4) == 0);

  // double written as F32 reads back as the float rounding of each value
  const auto rounded = encode_safetensors(kTable, std::span<const double>(d), StDtype::F32, kNaming);
  decode_safetensors(std::span<const std::uint8_t>(rounded), kTable, std::span<double>(back));
  for (std::size_t i = 0; i < kN; ++i) REQUIRE(back[i] == double(float(d[i])));
}

TEST_CASE("safetensors: the header holds the state-dict shapes, contiguous offsets and an aligned buffer", "[forward][export]") {
  const auto bytes = good_file();
  const Parts p = split(bytes);
  std::uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  CHECK(n % 8 == 0);
  CHECK(p.header["a.weight"]["shape"] == json({4, 3}));
  CHECK(p.header["a.gain"]["shape"] == json({4}));
  CHECK(p.header["b.mix"]["shape"] == json({2, 5}));
  CHECK(p.header["a.weight"]["dtype"] == "F32");
  CHECK(p.header["a.weight"]["data_offsets"] == json({0, 48}));
  CHECK(p.header["a.gain"]["data_offsets"] == json({48, 64}));
  CHECK(p.header["b.mix"]["data_offsets"] == json({64, 104}));
  CHECK(p.data.size() == 104);
  CHECK(looks_like_safetensors(bytes));
}

TEST_CASE("safetensors reads F16 and BF16 (and a file in any tensor order)", "[forward][export]") {
  // a.weight BF16, a.gain F16, b.mix F64; stored in the buffer in the reverse order.
  std::vector<std::uint8_t> data;
  auto put16 = [&](std::uint16_t v) { data.push_back(std::uint8_t(v)), data.push_back(std::uint8_t(v >> 8)); };
  std::vector<double> mix(10);
  for (int i = 0; i < 10; ++i) mix[std::size_t(i)] = 0.25 * i - 1;
  for (double m : mix) {
    std::uint64_t u = std::bit_cast<std::uint64_t>(m);
    for (int k = 0; k < 8; ++k) data.push_back(std::uint8_t(u >> (8 * k)));
  }
  const std::uint16_t gain[4] = {0x3C00, 0xC000, 0x3555, 0x0001};  // 1, -2, 0.33325195, the smallest subnormal
  for (auto g : gain) put16(g);
  std::vector<float> w(12);
  for (int i = 0; i < 12; ++i) {
    w[std::size_t(i)] = float(i - 6) * 0.375f;  // exact in bfloat16
    put16(std::uint16_t(std::bit_cast<std::uint32_t>(w[std::size_t(i)]) >> 16));
  }
  const json h = {{"b.mix", {{"dtype", "F64"}, {"shape", {2, 5}}, {"data_offsets", {0, 80}}}},
                  {"a.gain", {{"dtype", "F16"}, {"shape", {4}}, {"data_offsets", {80, 88}}}},
                  {"a.weight", {{"dtype", "BF16"}, {"shape", {4, 3}}, {"data_offsets", {88, 112}}}}};
  std::vector<double> out(kN);
  const auto info = decode_safetensors(std::span<const std::uint8_t>(join(h.dump(), data)), kTable, std::span<double>(out));
  for (int i = 0; i < 12; ++i) CHECK(out[std::size_t(i)] == double(w[std::size_t(i)]));
  CHECK(out[12] == 1.0);
  CHECK(out[13] == -2.0);
  CHECK(out[14] == 0.333251953125);
  CHECK(out[15] == std::ldexp(1.0, -24));
  for (int i = 0; i < 10; ++i) CHECK(out[16 + std::size_t(i)] == mix[std::size_t(i)]);
  CHECK(info.dtypes.at("BF16") == 1);
  CHECK(info.dtypes.at("F16") == 1);
  CHECK(info.metadata.empty());  // a file without pgolf's metadata (a reference state dict) is taken
}

TEST_CASE("safetensors: each bad input is an error naming the tensor or the field", "[forward][export][bad_input]") {
  const auto good = good_file();
  CHECK(decode_error(good) == "no error");

  // The length field and the header.
  CHECK_THAT(decode_error({1, 2, 3}), Catch::Contains("bad.safetensors is truncated: 3 bytes, shorter than the 8-byte header length field"));
  auto longer = good;
  longer[0] = 0xff, longer[1] = 0xff;
  CHECK_THAT(decode_error(longer), Catch::Contains("header length field says") && Catch::Contains("longer than the"));
  auto cut = good;
  cut.resize(200);  // the header is longer than what is left of the file
  CHECK_THAT(decode_error(cut), Catch::Contains("header length field says") && Catch::Contains("(a truncated file"));
  {
    // A header above the format's 100 MB limit, in a file long enough to hold it: refused by the
    // limit before anything parses it (the bytes after the length are a valid JSON start).
    std::vector<std::uint8_t> huge(8 + kSafetensorsMaxHeader + 1, ' ');
    for (int i = 0; i < 8; ++i) huge[std::size_t(i)] = std::uint8_t((kSafetensorsMaxHeader + 1) >> (8 * i));
    huge[8] = '{';
    CHECK_THAT(decode_error(huge), Catch::Contains("header length field says 100000001 bytes, above the format's limit of 100000000"));
    // At the limit itself the length is taken and the header parsed (here: unterminated JSON).
    for (int i = 0; i < 8; ++i) huge[std::size_t(i)] = std::uint8_t(kSafetensorsMaxHeader >> (8 * i));
    CHECK_THAT(decode_error(huge), Catch::Contains("the header is not valid JSON"));
  }
  CHECK_THAT(decode_error(join("[1, 2, 3]", {})), Catch::Contains("is not a JSON object"));
  CHECK_THAT(decode_error(join("{\"a.gain\": ", {})), Catch::Contains("the header is not valid JSON"));
  CHECK_THAT(decode_error(join("{\"a.gain\": {}, \"a.gain\": {}}", {})), Catch::Contains("names \"a.gain\" twice"));

  auto corrupt = [&](const std::function<void(Parts&)>& edit) {
    Parts p = split(good);
    edit(p);
    return decode_error(join(p));
  };
  // Entries.
  CHECK_THAT(corrupt([](Parts& p) { p.header["a.gain"].erase("dtype"); }),
             Catch::Contains("tensor a.gain: field dtype is missing"));
  CHECK_THAT(corrupt([](Parts& p) { p.header["a.gain"]["dtype"] = "Q7"; }),
             Catch::Contains("tensor a.gain: dtype \"Q7\" is not a safetensors dtype"));
  CHECK_THAT(corrupt([](Parts& p) { p.header["a.gain"]["dtype"] = "I32"; }),
             Catch::Contains("tensor a.gain has dtype I32; pgolf reads F64, F32, F16 and BF16"));
  CHECK_THAT(corrupt([](Parts& p) { p.header["a.gain"]["shape"] = {-4}; }),
             Catch::Contains("tensor a.gain: field shape holds -4"));
  CHECK_THAT(corrupt([](Parts& p) { p.header["a.gain"].erase("data_offsets"); }),
             Catch::Contains("tensor a.gain: field data_offsets is missing"));
  CHECK_THAT(corrupt([](Parts& p) { p.header["a.gain"]["extra"] = 1; }),
             Catch::Contains("tensor a.gain: unknown field \"extra\""));
  CHECK_THAT(corrupt([](Parts& p) { p.header["__metadata__"]["pgolf.variant"] = 3; }),
             Catch::Contains("__metadata__ field \"pgolf.variant\" is not a string"));
  // Offsets.
  CHECK_THAT(corrupt([](Parts& p) { p.header["b.mix"]["data_offsets"] = {64, 112}, p.header["b.mix"]["shape"] = {2, 6}; }),
             Catch::Contains("tensor b.mix: field data_offsets [64, 112] lies outside the data buffer (104 bytes)"));
  CHECK_THAT(corrupt([](Parts& p) { p.header["a.gain"]["data_offsets"] = {48, 60}; }),
             Catch::Contains("tensor a.gain: field data_offsets spans 12 bytes, its shape [4] of F32 needs 16"));
  CHECK_THAT(corrupt([](Parts& p) { p.header["a.gain"]["data_offsets"] = {64, 48}; }),
             Catch::Contains("tensor a.gain: field data_offsets [64, 48] ends before it begins"));
  CHECK_THAT(corrupt([](Parts& p) {
               p.header["a.gain"]["data_offsets"] = {40, 56};  // overlaps a.weight [0, 48)
             }),
             Catch::Contains("tensor a.gain: field data_offsets [40, 56] overlaps tensor a.weight"));
  CHECK_THAT(corrupt([](Parts& p) {
               p.header["a.weight"]["data_offsets"] = {8, 56};  // 8 bytes unused before it
               p.header["a.gain"]["data_offsets"] = {56, 72};
               p.header["b.mix"]["data_offsets"] = {72, 112};
               p.data.resize(112);
             }),
             Catch::Contains("tensor a.weight: field data_offsets [8, 56] leaves a gap of 8 bytes after the header"));
  CHECK_THAT(corrupt([](Parts& p) { p.data.resize(p.data.size() + 4); }),
             Catch::Contains("the data buffer holds 4 bytes after the last tensor"));
  // Against the table.
  CHECK_THAT(corrupt([](Parts& p) { p.header.erase("a.gain"), p.header["b.mix"]["data_offsets"] = {48, 88}, p.data.resize(88); }),
             Catch::Contains("bad.safetensors: tensor a.gain is missing (shape [4])"));
  CHECK_THAT(corrupt([](Parts& p) { p.header["a.weight"]["shape"] = {3, 4}; }),
             Catch::Contains("tensor a.weight has shape [3, 4], this model expects [4, 3]"));
  CHECK_THAT(corrupt([](Parts& p) {
               p.header["rotary.inv_freq"] = {{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {104, 108}}};
               p.data.resize(108);
             }),
             Catch::Contains("1 tensor is not in this model: rotary.inv_freq"));
  CHECK_THAT(corrupt([](Parts& p) { p.header["__metadata__"]["pgolf.table_fingerprint"] = "0123456789abcdef"; }),
             Catch::Contains("was written by a different pgolf variant (test-variant: parameter-table fingerprint 0123456789abcdef"));
  // Nothing is written into the model unless every check passed.
  std::vector<double> out(kN, 7.0);
  Parts p = split(good);
  p.header["b.mix"]["dtype"] = "I32";
  CHECK_THROWS(decode_safetensors(std::span<const std::uint8_t>(join(p)), kTable, std::span<double>(out)));
  for (double v : out) REQUIRE(v == 7.0);
}
