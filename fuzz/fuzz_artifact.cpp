// libFuzzer target: the artifact decoder (pgolf/export/artifact.hpp, decode_artifact and
// peek_artifact) against a small four-tensor table (fuzz_common.hpp), one tensor per export policy.
// Input: one flag byte (bit 0: recompute both CRCs so mutations reach the fields behind them), then
// the artifact file. A pgolf::Error is the expected outcome; anything else is a finding.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "fuzz_common.hpp"
#include "pgolf/export/artifact.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::vector<std::uint8_t> bytes(data + 1, data + size);
  if (pgolf::fuzz::fix_checksums(data[0])) pgolf::fuzz::fix_artifact_crcs(bytes);
  const std::span<const std::uint8_t> in(bytes);
  try {
    (void)pgolf::peek_artifact(in, "fuzz artifact");
  } catch (const pgolf::Error&) {
  }
  std::vector<float> f(pgolf::fuzz::kTableSize);
  try {
    const auto info = pgolf::decode_artifact(in, pgolf::fuzz::kTable, std::span<float>(f), "fuzz artifact");
    if (info.file_bytes != bytes.size() || info.tensors != pgolf::fuzz::kTable.size()) __builtin_trap();
  } catch (const pgolf::Error&) {
  }
  std::vector<double> d(pgolf::fuzz::kTableSize);
  try {
    (void)pgolf::decode_artifact(in, pgolf::fuzz::kTable, std::span<double>(d), "fuzz artifact");
  } catch (const pgolf::Error&) {
  }
  return 0;
}
