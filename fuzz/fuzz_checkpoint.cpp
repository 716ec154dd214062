// libFuzzer target: the checkpoint decoder (pgolf/train/checkpoint.hpp, decode_checkpoint<float>
// and <double>). Input: one flag byte (bit 0: recompute the trailing CRC so mutations reach the
// fields behind it), then the checkpoint file; the expected fingerprint is the fuzz table's. A
// pgolf::Error is the expected outcome; anything else is a finding. A checkpoint that decodes must
// re-encode to the same bytes.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "fuzz_common.hpp"
#include "pgolf/train/checkpoint.hpp"

namespace {
template <class T>
void decode(std::span<const std::uint8_t> in) {
  try {
    const auto c = pgolf::decode_checkpoint<T>(in, pgolf::fuzz::kFingerprint, "fuzz checkpoint");
    const auto again = pgolf::encode_checkpoint(c);
    if (again.size() != in.size() || !std::equal(again.begin(), again.end(), in.begin())) __builtin_trap();
  } catch (const pgolf::Error&) {
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::vector<std::uint8_t> bytes(data + 1, data + size);
  if (pgolf::fuzz::fix_checksums(data[0])) pgolf::fuzz::fix_checkpoint_crc(bytes);
  decode<float>(bytes);
  decode<double>(bytes);
  return 0;
}
