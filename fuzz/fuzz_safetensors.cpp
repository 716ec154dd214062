// libFuzzer target: the safetensors reader (pgolf/export/safetensors.hpp: parse_safetensors, and
// decode_safetensors against the four-tensor table of fuzz_common.hpp, into float and double).
// Input: the file itself (the format has no checksum to fix up). A pgolf::Error is the expected
// outcome; anything else (an nlohmann exception escaping, a sanitizer report) is a finding.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "fuzz_common.hpp"
#include "pgolf/export/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> in(data, size);
  try {
    const pgolf::StFile f = pgolf::parse_safetensors(in, "fuzz safetensors");
    // What the parser promises: every tensor inside the buffer, tiling it.
    std::size_t at = 0;
    for (const auto& t : f.tensors) {
      if (t.begin != at || t.end < t.begin || t.end > f.data.size()) __builtin_trap();
      at = t.end;
    }
    if (at != f.data.size()) __builtin_trap();
  } catch (const pgolf::Error&) {
  }
  std::vector<float> fl(pgolf::fuzz::kTableSize);
  try {
    const auto info = pgolf::decode_safetensors(in, pgolf::fuzz::kTable, std::span<float>(fl), "fuzz safetensors");
    if (info.tensors != pgolf::fuzz::kTable.size()) __builtin_trap();
  } catch (const pgolf::Error&) {
  }
  std::vector<double> d(pgolf::fuzz::kTableSize);
  try {
    (void)pgolf::decode_safetensors(in, pgolf::fuzz::kTable, std::span<double>(d), "fuzz safetensors");
  } catch (const pgolf::Error&) {
  }
  return 0;
}
