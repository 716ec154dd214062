// Full-state training checkpoints: parameters, every optimizer buffer and counter, the step, the
// training clock and the data position, so a resumed run continues exactly where it stopped.
// Format, version 1, little-endian:
//   magic "PGOLFCKP", u32 version, u32 scalar bytes (4 float, 8 double), u64 table fingerprint,
//   i64 step, f64 training ms, u64 data shard index, u64 data position, u64 seed,
//   u32 tensor count, then per tensor u64 length + values, u32 counter count, then i64 counters,
//   and a CRC-32 of everything before it.
// tensors[0] is always the parameter buffer, so an eval-only reader needs nothing else.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "pgolf/core/error.hpp"
#include "pgolf/core/file_io.hpp"
#include "pgolf/export/compress.hpp"

namespace pgolf {

inline constexpr char kCheckpointMagic[8] = {'P', 'G', 'O', 'L', 'F', 'C', 'K', 'P'};
inline constexpr std::uint32_t kCheckpointVersion = 1;

template <class T>
struct Checkpoint {
  std::uint64_t fingerprint = 0;
  long long step = 0;
  double train_ms = 0;
  std::uint64_t data_file = 0, data_pos = 0;
  std::uint64_t seed = 0;
  std::vector<std::vector<T>> tensors;  // parameters first, then optimizer state
  std::vector<long long> counters;      // optimizer step counters
};

template <class T>
std::vector<std::uint8_t> encode_checkpoint(const Checkpoint<T>& c) {
  ByteWriter w;
  for (char ch : kCheckpointMagic) w.put(ch);
  w.put(kCheckpointVersion);
  w.put(std::uint32_t(sizeof(T)));
  w.put(c.fingerprint);
  w.put(std::int64_t(c.step));
  w.put(c.train_ms);
  w.put(c.data_file);
  w.put(c.data_pos);
  w.put(c.seed);
  w.put(std::uint32_t(c.tensors.size()));
  for (const auto& t : c.tensors) {
    w.put(std::uint64_t(t.size()));
    w.put_span(std::span<const T>(t));
  }
  w.put(std::uint32_t(c.counters.size()));
  for (long long v : c.counters) w.put(std::int64_t(v));
  w.put(crc32_of(w.bytes()));
  return std::move(w.bytes());
}

inline bool is_checkpoint(std::span<const std::uint8_t> bytes) {
  return bytes.size() >= 8 && std::memcmp(bytes.data(), kCheckpointMagic, 8) == 0;
}

template <class T>
Checkpoint<T> decode_checkpoint(std::span<const std::uint8_t> bytes, std::uint64_t expected_fingerprint,
                                const std::string& what = "checkpoint") {
  PGOLF_CHECK(is_checkpoint(bytes), what, " is not a pgolf checkpoint (bad magic)");
  PGOLF_CHECK(bytes.size() >= 12, what, " is truncated");
  const std::size_t body = bytes.size() - 4;
  std::uint32_t crc = 0;
  std::memcpy(&crc, bytes.data() + body, 4);
  PGOLF_CHECK(crc == crc32_of(bytes.first(body)), what, " is truncated or corrupted (checksum mismatch)");
  ByteReader r(bytes.first(body), what);
  r.get<std::uint64_t>();  // magic
  const auto version = r.get<std::uint32_t>();
  PGOLF_CHECK(version == kCheckpointVersion, what, " has format version ", version, "; this build reads ",
              kCheckpointVersion);
  const auto scalar = r.get<std::uint32_t>();
  PGOLF_CHECK(scalar == sizeof(T), what, " holds ", scalar, "-byte scalars; this model uses ", sizeof(T));
  Checkpoint<T> c;
  c.fingerprint = r.get<std::uint64_t>();
  PGOLF_CHECK(c.fingerprint == expected_fingerprint, what,
              " was written by a different model variant (parameter-table fingerprint differs)");
  c.step = r.get<std::int64_t>();
  c.train_ms = r.get<double>();
  c.data_file = r.get<std::uint64_t>();
  c.data_pos = r.get<std::uint64_t>();
  c.seed = r.get<std::uint64_t>();
  // Counts and lengths are checked against the bytes left before anything is allocated, so a corrupt
  // count is an error, not a huge allocation (each tensor needs at least its 8-byte length).
  const auto tensors = r.get<std::uint32_t>();
  PGOLF_CHECK(tensors <= r.remaining() / 8, what, " is inconsistent: ", tensors, " tensors cannot fit in the ",
              r.remaining(), " bytes left");
  c.tensors.resize(tensors);
  for (auto& t : c.tensors) {
    const auto n = r.get<std::uint64_t>();
    PGOLF_CHECK(n <= r.remaining() / sizeof(T), what, " is inconsistent: a tensor of ", n, " values overruns the file");
    t.resize(n);
    if (n > 0) r.get_into(std::span<T>(t));  // an empty vector's data() may be null: no memcpy from it
  }
  const auto counters = r.get<std::uint32_t>();
  PGOLF_CHECK(counters <= r.remaining() / 8, what, " is inconsistent: ", counters, " counters cannot fit in the ",
              r.remaining(), " bytes left");
  c.counters.resize(counters);
  for (auto& v : c.counters) v = r.get<std::int64_t>();
  PGOLF_CHECK(r.remaining() == 0, what, " has ", r.remaining(), " unexpected trailing bytes");
  PGOLF_CHECK(!c.tensors.empty(), what, " holds no parameters");
  return c;
}

}  // namespace pgolf
