// libFuzzer target: the JSON-lines field reader (pgolf/data/jsonl.hpp, json_string_field). The
// input is one line; the field asked for is "text" (what the tokenizer tool reads) and, for a second
// pass, a field name taken from the input's first bytes, so keys with escapes are exercised too.
// A pgolf::Error is the expected outcome for malformed JSON; anything else is a finding.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "pgolf/data/jsonl.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view line(reinterpret_cast<const char*>(data), size);
  try {
    const auto text = pgolf::data::json_string_field(line, "text");
    // The decoded string is never longer than the line: a plain byte decodes to one byte, a 6-byte
    // \u escape to at most 3 UTF-8 bytes, a 12-byte surrogate pair to 4.
    if (text && text->size() > size) __builtin_trap();
  } catch (const pgolf::Error&) {
  }
  if (size > 0) {
    const std::string_view key = line.substr(1, data[0] % 8);
    try {
      (void)pgolf::data::json_string_field(line, key);
    } catch (const pgolf::Error&) {
    }
  }
  return 0;
}
