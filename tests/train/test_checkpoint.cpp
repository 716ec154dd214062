// The checkpoint format alone: a round trip (an empty tensor once made the reader memcpy to a null
// pointer, found by fuzz/fuzz_checkpoint), and corrupt counts behind a valid CRC are clear errors
// instead of huge allocations or std::length_error (fuzz/regressions/checkpoint).
#include <catch2/catch.hpp>

#include <cmath>
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

namespace {
// A version-2 checkpoint shaped like a trainer's with EMA, SWA and QAT on: parameters, Muon momentum,
// three Adam moment pairs, the EMA and the SWA sum; three Adam step counts, the SWA count, the QAT step.
Checkpoint<float> sample_v2() {
  Checkpoint<float> c = sample();
  c.tensors = {std::vector<float>(8, 0.5f), std::vector<float>(8, 0.f)};
  for (int k = 0; k < 6; ++k) c.tensors.push_back(std::vector<float>(3, float(k)));
  c.tensors.push_back(std::vector<float>(8, 0.25f));  // EMA
  c.tensors.push_back(std::vector<float>(8, 1.5f));   // SWA sum
  c.counters = {7, 7, 7, 3, 5};
  c.state = CheckpointState{.ema = true, .swa = true, .qat = true, .ema_decay = 0.9965, .average = "swa_of_ema"};
  return c;
}
// The state block follows the seed (64 bytes in): flags, Adam groups, ema_decay, average.
constexpr std::size_t kFlagsAt = 64, kGroupsAt = 68, kDecayAt = 72, kAverageAt = 80;
}  // namespace

TEST_CASE("version-2 checkpoints carry their state block and round-trip; version 1 still decodes", "[forward][train]") {
  const auto c = sample_v2();
  const auto bytes = encode_checkpoint(c);
  std::uint32_t version = 0;
  std::memcpy(&version, bytes.data() + 8, 4);
  CHECK(version == 2);
  const auto d = decode_checkpoint<float>(bytes, 42);
  REQUIRE(d.state.has_value());
  CHECK(*d.state == *c.state);
  CHECK(d.tensors[d.state->ema_tensor()] == std::vector<float>(8, 0.25f));
  CHECK(d.tensors[d.state->swa_tensor()] == std::vector<float>(8, 1.5f));
  CHECK(d.counters[d.state->swa_counter()] == 3);
  CHECK(encode_checkpoint(d) == bytes);
  CHECK_FALSE(d.state->post_trained);
  // The post-trained flag (bit 5) round-trips and changes nothing else.
  auto pt = sample_v2();
  pt.state->post_trained = true;
  const auto pt_bytes = encode_checkpoint(pt);
  const auto pd = decode_checkpoint<float>(pt_bytes, 42);
  CHECK(pd.state->post_trained);
  CHECK(pd.tensors == d.tensors);
  CHECK(encode_checkpoint(pd) == pt_bytes);

  // Version 1: the sample without a state block, and a file built field by field.
  const auto v1 = encode_checkpoint(sample());
  std::memcpy(&version, v1.data() + 8, 4);
  CHECK(version == 1);
  CHECK_FALSE(decode_checkpoint<float>(v1, 42).state.has_value());
  ByteWriter w;
  for (char ch : kCheckpointMagic) w.put(ch);
  w.put(std::uint32_t(1));
  w.put(std::uint32_t(4));
  w.put(std::uint64_t(42));
  w.put(std::int64_t(3));
  w.put(2.5);
  for (int k = 0; k < 3; ++k) w.put(std::uint64_t(k));
  w.put(std::uint32_t(1));
  w.put(std::uint64_t(2));
  w.put_span(std::span<const float>(std::vector<float>{1.f, -2.f}));
  w.put(std::uint32_t(0));
  w.put(crc32_of(w.bytes()));
  const auto hand = decode_checkpoint<float>(w.bytes(), 42);
  CHECK(hand.step == 3);
  CHECK(hand.seed == 2);
  CHECK(hand.tensors == std::vector<std::vector<float>>{{1.f, -2.f}});
  CHECK_FALSE(hand.state.has_value());
  CHECK(encode_checkpoint(hand) == w.bytes());
}

TEST_CASE("corrupt or inconsistent version-2 state fields are clear errors naming the field", "[forward][train]") {
  const auto good = encode_checkpoint(sample_v2());
  REQUIRE(error_of(good) == "no error");
  CHECK_THAT(error_of(patched(good, kFlagsAt, std::uint32_t(0x4E))),
             Catch::Contains("field 'state flags' is 78 (unknown bits"));
  CHECK(error_of(patched(good, kFlagsAt, std::uint32_t(0x2E))) == "no error");  // + post-trained: known
  CHECK_THAT(error_of(patched(good, kGroupsAt, std::uint32_t(5))), Catch::Contains("field 'adam groups' is 5"));
  CHECK_THAT(error_of(patched(good, kDecayAt, 1.5)), Catch::Contains("field 'ema_decay' is 1.5"));
  CHECK_THAT(error_of(patched(good, kDecayAt, std::nan(""))), Catch::Contains("field 'ema_decay'"));
  CHECK_THAT(error_of(patched(good, kAverageAt, std::uint32_t(9))), Catch::Contains("field 'average' is code 9"));
  // swa_of_ema without SWA; a replay buffer the tensors do not hold; 4 Adam groups with 3 pairs.
  CHECK_THAT(error_of(patched(good, kFlagsAt, std::uint32_t(2 | 8))), Catch::Contains("state flags hold no SWA"));
  CHECK_THAT(error_of(patched(good, kFlagsAt, std::uint32_t(2 | 4 | 8 | 16))), Catch::Contains("describe 11"));
  CHECK_THAT(error_of(patched(good, kGroupsAt, std::uint32_t(4))), Catch::Contains("describe 12"));
  // Without an EMA, ema_decay must be 0 (and average must not name it).
  auto no_ema = sample_v2();
  no_ema.state->ema = false;
  no_ema.state->average = "swa";
  no_ema.tensors.erase(no_ema.tensors.begin() + 8);
  CHECK_THAT(error_of(encode_checkpoint(no_ema)), Catch::Contains("field 'ema_decay' is 0.9965 without an EMA"));
  no_ema.state->ema_decay = 0;
  CHECK(error_of(encode_checkpoint(no_ema)) == "no error");
  // Tensor sizes and the SWA count.
  auto bad = sample_v2();
  bad.tensors[8].resize(7);
  CHECK_THAT(error_of(encode_checkpoint(bad)), Catch::Contains("the EMA holds 7 values"));
  bad = sample_v2();
  bad.tensors[9].resize(9);
  CHECK_THAT(error_of(encode_checkpoint(bad)), Catch::Contains("the SWA sum holds 9 values"));
  bad = sample_v2();
  bad.counters[3] = -1;
  CHECK_THAT(error_of(encode_checkpoint(bad)), Catch::Contains("the SWA count is -1"));
  // Cut inside the state block (with a valid CRC): truncated, not a misread.
  std::vector<std::uint8_t> cut(good.begin(), good.begin() + kAverageAt);
  const std::uint32_t crc = crc32_of(std::span<const std::uint8_t>(cut));
  cut.resize(cut.size() + 4);
  std::memcpy(cut.data() + kAverageAt, &crc, 4);
  CHECK_THAT(error_of(cut), Catch::Contains("ckpt"));
  CHECK(error_of(cut) != "no error");
}

namespace {
// A version-3 checkpoint: sample_v2 inside the end phase, in distillation (its teacher last).
Checkpoint<float> sample_v3() {
  Checkpoint<float> c = sample_v2();
  c.tensors.push_back(std::vector<float>(8, -0.75f));  // the teacher
  c.state->end_steps = 5;
  c.state->end_loss = 3.25;
  c.state->end_ms = 40.5;
  c.state->teacher = true;
  return c;
}
// After the version-2 block (average ends at 84): end steps, end loss, end ms.
constexpr std::size_t kEndStepsAt = 84, kEndLossAt = 92, kEndMsAt = 100;
}  // namespace

TEST_CASE("version-3 checkpoints carry the end phase's position and teacher; others stay version 2",
          "[forward][train]") {
  const auto c = sample_v3();
  const auto bytes = encode_checkpoint(c);
  std::uint32_t version = 0;
  std::memcpy(&version, bytes.data() + 8, 4);
  CHECK(version == 3);
  const auto d = decode_checkpoint<float>(bytes, 42);
  REQUIRE(d.state.has_value());
  CHECK(*d.state == *c.state);
  CHECK(d.tensors[d.state->teacher_tensor()] == std::vector<float>(8, -0.75f));
  CHECK(d.tensors[d.state->ema_tensor()] == std::vector<float>(8, 0.25f));
  CHECK(encode_checkpoint(d) == bytes);
  // In replay (no teacher): still version 3. Outside the phase: version 2, byte for byte as before.
  auto replay = sample_v3();
  replay.tensors.pop_back();
  replay.state->teacher = false;
  const auto rb = encode_checkpoint(replay);
  std::memcpy(&version, rb.data() + 8, 4);
  CHECK(version == 3);
  CHECK(decode_checkpoint<float>(rb, 42).state->end_steps == 5);
  std::memcpy(&version, encode_checkpoint(sample_v2()).data() + 8, 4);
  CHECK(version == 2);
  // A teacher outside the end phase is not a state the encoder writes.
  auto stray = sample_v2();
  stray.tensors.push_back(std::vector<float>(8, 0.f));
  stray.state->teacher = true;
  CHECK_THROWS_WITH(encode_checkpoint(stray), Catch::Contains("teacher outside the end phase"));
}

TEST_CASE("corrupt or inconsistent version-3 fields are clear errors naming the field", "[forward][train]") {
  const auto good = encode_checkpoint(sample_v3());
  REQUIRE(error_of(good) == "no error");
  CHECK_THAT(error_of(patched(good, kEndStepsAt, std::int64_t(0))), Catch::Contains("field 'end steps' is 0"));
  CHECK_THAT(error_of(patched(good, kEndStepsAt, std::int64_t(-3))), Catch::Contains("field 'end steps' is -3"));
  CHECK_THAT(error_of(patched(good, kEndLossAt, std::nan(""))), Catch::Contains("field 'end loss' is nan"));
  CHECK_THAT(error_of(patched(good, kEndMsAt, -1.0)), Catch::Contains("field 'end ms' is -1"));
  CHECK_THAT(error_of(patched(good, kFlagsAt, std::uint32_t(2 | 4 | 8 | 32 | 64))),
             Catch::Contains("its end phase has run (state flag post-trained) and it is 5 steps into it"));
  CHECK_THAT(error_of(patched(good, kFlagsAt, std::uint32_t(2 | 4 | 8 | 128))), Catch::Contains("(unknown bits"));
  // Without its teacher bit the tensors outnumber the state; a teacher of the wrong size.
  CHECK_THAT(error_of(patched(good, kFlagsAt, std::uint32_t(2 | 4 | 8))), Catch::Contains("describe 10"));
  auto bad = sample_v3();
  bad.tensors.back().resize(5);
  CHECK_THAT(error_of(encode_checkpoint(bad)), Catch::Contains("the distillation teacher holds 5 values"));
  // The teacher bit in a version-2 file is unknown there.
  const auto v2 = encode_checkpoint(sample_v2());
  CHECK_THAT(error_of(patched(v2, kFlagsAt, std::uint32_t(2 | 4 | 8 | 64))),
             Catch::Contains("64 teacher only in version 3"));
}
