// libFuzzer target: the token shard reader (pgolf/data/shard.hpp). The input is the whole file:
// 1024-byte header [magic, version, n, 0...] then n uint16 tokens. A pgolf::Error is the expected
// outcome for a malformed shard; anything else (another exception, a crash, a sanitizer report) is
// a finding. A shard that opens must have exactly its header's token count, all of it readable.
#include <cstddef>
#include <cstdint>

#include "fuzz_common.hpp"
#include "pgolf/data/shard.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static pgolf::fuzz::ScratchFile file("pgolf_fuzz_shard");
  const std::string& path = file.write(data, size);
  try {
    pgolf::data::Shard shard(path);
    if (pgolf::data::kShardHeaderBytes + 2 * shard.size() != size) __builtin_trap();
    unsigned sum = 0;
    for (std::size_t i = 0; i < shard.size(); ++i) sum += shard[i];
    pgolf::data::Shard moved(std::move(shard));
    if (moved.size() != (size - pgolf::data::kShardHeaderBytes) / 2) __builtin_trap();
    moved.check_vocab(1024);  // a vocabulary the sample shards use; larger ids are a clean error
    (void)sum;
  } catch (const pgolf::Error&) {
  }
  return 0;
}
