// The checkpoint format alone: a round trip (an empty tensor once made the reader memcpy to a null
// pointer, found by fuzz/fuzz_checkpoint), and corrupt counts behind a valid CRC are clear errors
// instead of huge allocations or std::length_error (fuzz/regressions/checkpoint).
#include <catch2/catch.hpp>

#include <cstring>
#include <string>

#include "pgolf/train/checkpoint.hpp"

using namespace pgolf;

namespace {
Checkpoint<float> sample() {
  Checkpoint<float> c;
  c.fingerprint = 42;
  c.step = 7;
  c.train_ms = 12.5;
  c.seed = 1337;
  c.tensors = {std::vector<float>(8, 0.5f), {}, std::vector<float>(3, -1.0f)};  // an empty optimizer buffer
  c.counters = {7, 2};
  return c;
}
// Overwrites bytes at `at` and recomputes the trailing CRC, as a crafted file would.
template <class V>
std::vector<std::uint8_t> patched(std::vector<std::uint8_t> b, std::size_t at, V v) {
  std::memcpy(b.data() + at, &v, sizeof v);
  const std::uint32_t crc = crc32_of(std::span<const std::uint8_t>(b).first(b.size() - 4));
  std::memcpy(b.data() + b.size() - 4, &crc, 4);
  return b;
}
std::string error_of(const std::vector<std::uint8_t>& b) {
  try {
    decode_checkpoint<float>(b, 42, "ckpt");
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}
}  // namespace

TEST_CASE("checkpoints round-trip, empty tensors included", "[forward][train]") {
  const auto bytes = encode_checkpoint(sample());
  const auto c = decode_checkpoint<float>(bytes, 42);
  CHECK(c.step == 7);
  REQUIRE(c.tensors.size() == 3);
  CHECK(c.tensors[0] == std::vector<float>(8, 0.5f));
  CHECK(c.tensors[1].empty());
  CHECK(c.counters == std::vector<long long>{7, 2});
  CHECK(encode_checkpoint(c) == bytes);
}

TEST_CASE("corrupt counts in a checkpoint are clear errors", "[forward][train]") {
  const auto good = encode_checkpoint(sample());
  // magic 8, version 4, scalar 4, fingerprint 8, step 8, ms 8, file 8, pos 8, seed 8: tensor count at 64.
  CHECK_THAT(error_of(patched(good, 64, std::uint32_t(0xFFFFFFFF))), Catch::Contains("tensors cannot fit"));
  CHECK_THAT(error_of(patched(good, 68, std::uint64_t(1) << 62)), Catch::Contains("overruns the file"));
  const std::size_t counters_at = good.size() - 4 - 2 * 8 - 4;
  CHECK_THAT(error_of(patched(good, counters_at, std::uint32_t(0xFFFFFFFF))), Catch::Contains("counters cannot fit"));
  CHECK(error_of(good) == "no error");
}
