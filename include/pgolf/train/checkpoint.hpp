// Full-state training checkpoints: parameters, every optimizer buffer and counter, the step, the
// training clock and the data position, so a resumed run continues exactly where it stopped.
// Format, little-endian:
//   magic "PGOLFCKP", u32 version, u32 scalar bytes (4 float, 8 double), u64 table fingerprint,
//   i64 step, f64 training ms, u64 data shard index, u64 data position, u64 seed,
//   [version 2 only: the state block, below]
//   u32 tensor count, then per tensor u64 length + values, u32 counter count, then i64 counters,
//   and a CRC-32 of everything before it.
// tensors[0] is always the raw parameter buffer (never an average). The Trainer lists after it the
// Muon momentum (empty with AdamW matrices), a first/second moment pair per Adam group, then the
// optional state in this order: token recycler, EMA, SWA sum, replay buffer; its counters are one
// step count per Adam group, then the SWA count, then the QAT switch step.
// Version 2's state block says which of those optional parts the file holds, so a reader finds the
// EMA and SWA without the writer's flags (eval/export load the average the run exported):
//   u32 flags (bit 0 recycler, 1 EMA, 2 SWA, 3 QAT, 4 replay, 5 post-trained: the run's end phase of
//   late replay and self-distillation has run on these weights), u32 Adam groups (3, or 4 with AdamW
//   matrices), f64 ema_decay (0 without an EMA), u32 average (0 none, 1 ema, 2 swa, 3 swa_of_ema:
//   the run's TrainConfig::average_kind()),
//   [version 3 only: i64 end steps, f64 end loss, f64 end ms; flag bit 6 teacher]
// Version 3 is a checkpoint written inside the end phase (the step is the last one): the optimizer
// steps of that phase taken so far (late replay's micro-batches, then self-distillation's steps), the
// loss summed over the replay epoch in progress (its log line), the phase's time so far, and, once
// distillation has started, its frozen teacher as one more tensor after the replay buffer (the EMA
// moves on during distillation). Every other checkpoint is written as version 2, so files outside the
// end phase stay readable by builds that know only version 2.
// The decoder checks the block against the tensor and counter counts and sizes. A version-1 file
// (no block) still loads; it decodes with no state and re-encodes as version 1.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "pgolf/core/error.hpp"
#include "pgolf/core/file_io.hpp"
#include "pgolf/export/compress.hpp"

namespace pgolf {

inline constexpr char kCheckpointMagic[8] = {'P', 'G', 'O', 'L', 'F', 'C', 'K', 'P'};
inline constexpr std::uint32_t kCheckpointVersion = 3;

// A version-2 checkpoint's description of the optional training state it holds (see the format).
struct CheckpointState {
  std::uint32_t adam_groups = 3;  // Adam groups with a moment pair each (4: the matrices use AdamW)
  bool recycler = false, ema = false, swa = false, qat = false, replay = false;
  // Set in a run's final checkpoint when late replay or self-distillation ran; a checkpoint at the
  // last step without it (written before that phase) resumes into it.
  bool post_trained = false;
  double ema_decay = 0;          // the run's ema_decay; 0 without an EMA
  std::string average = "none";  // the run's resolved average: none, ema, swa or swa_of_ema
  // Inside the end phase (version 3): its optimizer steps taken, the replay epoch's loss sum so far,
  // the phase's time so far (ms), and whether the distillation teacher follows the replay buffer.
  long long end_steps = 0;
  double end_loss = 0, end_ms = 0;
  bool teacher = false;

  bool in_end_phase() const { return end_steps > 0; }
  std::size_t ema_tensor() const { return 2 + 2 * std::size_t(adam_groups) + recycler; }
  std::size_t swa_tensor() const { return ema_tensor() + ema; }
  std::size_t swa_counter() const { return adam_groups; }
  std::size_t teacher_tensor() const { return swa_tensor() + swa + replay; }
  std::size_t tensor_count() const { return teacher_tensor() + teacher; }
  std::size_t counter_count() const { return std::size_t(adam_groups) + swa + qat; }
  bool operator==(const CheckpointState&) const = default;
};

inline constexpr const char* kCheckpointAverages[] = {"none", "ema", "swa", "swa_of_ema"};

// The weights a run's end loads for its resolved average and SWA count (Trainer::apply_average):
// ema, swa, swa_of_ema, or raw. swa_of_ema falls back to the EMA and swa to the raw weights when SWA
// collected nothing (no swa_every step had the LR multiplier under swa_threshold).
inline std::string averaged_weights(const std::string& average, long long swa_count) {
  if (average == "ema" || (average == "swa_of_ema" && swa_count == 0)) return "ema";
  if (average == "none" || swa_count == 0) return "raw";
  return average;
}

template <class T>
struct Checkpoint {
  std::uint64_t fingerprint = 0;
  long long step = 0;
  double train_ms = 0;
  std::uint64_t data_file = 0, data_pos = 0;
  std::uint64_t seed = 0;
  std::vector<std::vector<T>> tensors;  // parameters first, then optimizer state
  std::vector<long long> counters;      // optimizer step counters
  // The optional state's description: written as version 2; absent, the file is version 1.
  std::optional<CheckpointState> state;
};

template <class T>
std::vector<std::uint8_t> encode_checkpoint(const Checkpoint<T>& c) {
  ByteWriter w;
  for (char ch : kCheckpointMagic) w.put(ch);
  w.put(std::uint32_t(!c.state ? 1 : c.state->in_end_phase() ? 3 : 2));
  w.put(std::uint32_t(sizeof(T)));
  w.put(c.fingerprint);
  w.put(std::int64_t(c.step));
  w.put(c.train_ms);
  w.put(c.data_file);
  w.put(c.data_pos);
  w.put(c.seed);
  if (c.state) {
    const CheckpointState& s = *c.state;
    PGOLF_CHECK(!s.teacher || s.end_steps > 0, "checkpoint state: a distillation teacher outside the end phase");
    w.put(std::uint32_t(s.recycler | s.ema << 1 | s.swa << 2 | s.qat << 3 | s.replay << 4 | s.post_trained << 5 |
                        s.teacher << 6));
    w.put(s.adam_groups);
    w.put(s.ema_decay);
    std::uint32_t code = 0;
    while (code < 4 && s.average != kCheckpointAverages[code]) ++code;
    PGOLF_CHECK(code < 4, "checkpoint state: average '", s.average, "' is not none, ema, swa or swa_of_ema");
    w.put(code);
    if (s.in_end_phase()) {
      w.put(std::int64_t(s.end_steps));
      w.put(s.end_loss);
      w.put(s.end_ms);
    }
  }
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
  PGOLF_CHECK(version >= 1 && version <= kCheckpointVersion, what, " has format version ", version,
              "; this build reads 1 to ", kCheckpointVersion);
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
  if (version >= 2) {
    CheckpointState& s = c.state.emplace();
    const auto flags = r.get<std::uint32_t>();
    const std::uint32_t known = version >= 3 ? 0x7Fu : 0x3Fu;
    PGOLF_CHECK((flags & ~known) == 0, what, " is inconsistent: field 'state flags' is ", flags,
                " (unknown bits; known: 1 recycler, 2 EMA, 4 SWA, 8 QAT, 16 replay, 32 post-trained",
                version >= 3 ? ", 64 teacher)" : "; 64 teacher only in version 3)");
    s.recycler = flags & 1, s.ema = flags & 2, s.swa = flags & 4, s.qat = flags & 8, s.replay = flags & 16;
    s.post_trained = flags & 32, s.teacher = flags & 64;
    s.adam_groups = r.get<std::uint32_t>();
    PGOLF_CHECK(s.adam_groups == 3 || s.adam_groups == 4, what, " is inconsistent: field 'adam groups' is ",
                s.adam_groups, "; expected 3, or 4 with AdamW matrices");
    s.ema_decay = r.get<double>();
    PGOLF_CHECK(s.ema ? std::isfinite(s.ema_decay) && s.ema_decay > 0 && s.ema_decay < 1 : s.ema_decay == 0, what,
                " is inconsistent: field 'ema_decay' is ", s.ema_decay, s.ema ? " with an EMA (expected in (0, 1))"
                                                                               : " without an EMA (expected 0)");
    const auto code = r.get<std::uint32_t>();
    PGOLF_CHECK(code < 4, what, " is inconsistent: field 'average' is code ", code,
                " (0 none, 1 ema, 2 swa, 3 swa_of_ema)");
    s.average = kCheckpointAverages[code];
    PGOLF_CHECK((code != 1 && code != 3) || s.ema, what, " is inconsistent: field 'average' is ", s.average,
                " but the state flags hold no EMA");
    PGOLF_CHECK(code < 2 || s.swa, what, " is inconsistent: field 'average' is ", s.average,
                " but the state flags hold no SWA");
    if (version >= 3) {
      s.end_steps = r.get<std::int64_t>();
      s.end_loss = r.get<double>();
      s.end_ms = r.get<double>();
      PGOLF_CHECK(s.end_steps > 0, what, " is inconsistent: field 'end steps' is ", s.end_steps,
                  " (a version-3 checkpoint is inside the end phase: at least 1)");
      PGOLF_CHECK(std::isfinite(s.end_loss), what, " is inconsistent: field 'end loss' is ", s.end_loss);
      PGOLF_CHECK(std::isfinite(s.end_ms) && s.end_ms >= 0, what, " is inconsistent: field 'end ms' is ", s.end_ms);
      PGOLF_CHECK(!s.post_trained, what, " is inconsistent: its end phase has run (state flag post-trained) and it is ",
                  s.end_steps, " steps into it (field 'end steps')");
    }
  }
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
  if (c.state) {  // the state block must describe the tensors and counters the file holds
    const CheckpointState& s = *c.state;
    PGOLF_CHECK(c.tensors.size() == s.tensor_count(), what, " is inconsistent: ", c.tensors.size(),
                " tensors, but field 'state flags' and 'adam groups' describe ", s.tensor_count());
    PGOLF_CHECK(c.counters.size() == s.counter_count(), what, " is inconsistent: ", c.counters.size(),
                " counters, but field 'state flags' and 'adam groups' describe ", s.counter_count());
    const std::size_t n = c.tensors[0].size();
    PGOLF_CHECK(!s.ema || c.tensors[s.ema_tensor()].size() == n, what, " is inconsistent: the EMA holds ",
                c.tensors[s.ema_tensor()].size(), " values, the parameters ", n);
    PGOLF_CHECK(!s.swa || c.tensors[s.swa_tensor()].size() == n, what, " is inconsistent: the SWA sum holds ",
                c.tensors[s.swa_tensor()].size(), " values, the parameters ", n);
    PGOLF_CHECK(!s.swa || c.counters[s.swa_counter()] >= 0, what, " is inconsistent: the SWA count is ",
                c.counters[s.swa_counter()]);
    PGOLF_CHECK(!s.teacher || c.tensors[s.teacher_tensor()].size() == n, what,
                " is inconsistent: the distillation teacher holds ", c.tensors[s.teacher_tensor()].size(),
                " values, the parameters ", n);
  }
  return c;
}

}  // namespace pgolf
