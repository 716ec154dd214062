// Tokenizer byte tables and val_bpb.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "pgolf/data/shard.hpp"
#include "pgolf/train/val_bpb.hpp"

using namespace pgolf;
using namespace pgolf::data;

namespace {
const std::filesystem::path kModel = std::filesystem::path(PGOLF_DATA_DIR) / "tokenizers/fineweb_1024_bpe.model";
}

TEST_CASE("tokenizer loads and its vocabulary is checked against the spec", "[forward][tokenizer]") {
  Tokenizer tok(kModel);
  CHECK(tok.vocab() == 1024);
  tok.check_vocab(1024);
  REQUIRE_THROWS_WITH(tok.check_vocab(512), Catch::Contains("has vocab size 1024 but the model's spec has vocab 512"));
  REQUIRE_THROWS_WITH(Tokenizer("/nonexistent/tok.model"), Catch::Contains("not found"));
}

// fuzz_tokenizer's finding (fuzz/regressions/tokenizer/zero_length_piece): a unigram model with a
// piece "\0" made SentencePiece's trie builder throw its own exception out of Load, past every
// handler that expects a pgolf::Error. It must be the same clear error as any unloadable model.
TEST_CASE("a tokenizer model SentencePiece throws on is a clear error naming the file", "[forward][tokenizer]") {
  static constexpr unsigned char bytes[] = {
      0x0a, 0x0e, 0x0a, 0x05, 0x3c, 0x75, 0x6e, 0x6b, 0x3e, 0x15, 0x00, 0x00, 0x00, 0x00, 0x18, 0x02,
      0x0a, 0x0c, 0x0a, 0x03, 0x3c, 0x73, 0x3e, 0x15, 0x00, 0x00, 0x00, 0x00, 0x18, 0x03, 0x0a, 0x0a,
      0x0a, 0x03, 0xe2, 0x96, 0x81, 0x15, 0x00, 0x00, 0x80, 0xbf, 0x0a, 0x08, 0x0a, 0x01, 0x65, 0x15,
      0x00, 0x00, 0x00, 0xc0, 0x0a, 0x08, 0x0a, 0x01, 0x00, 0x15, 0x00, 0x00, 0x40, 0xc0, 0x1a, 0x0a,
      0x0a, 0x08, 0x69, 0x64, 0x65, 0x6e, 0x74, 0x69, 0x74, 0x79};
  const auto path = std::filesystem::temp_directory_path() / "pgolf_test_zero_length_piece.model";
  {
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(bytes), sizeof bytes);
  }
  REQUIRE_THROWS_AS(Tokenizer(path), pgolf::Error);
  REQUIRE_THROWS_WITH(Tokenizer(path), Catch::Contains(path.string() + " could not be loaded"));
  std::filesystem::remove(path);
}

TEST_CASE("byte tables on a hand-checked snippet", "[forward][tokenizer]") {
  Tokenizer tok(kModel);
  ByteTables t(tok, 1024);
  // Control ids (pad 0, bos 1, eos 2) and unk 3 are boundaries worth 0 bytes; byte pieces are 1.
  for (int id : {0, 1, 2, 3}) {
    CHECK(t.boundary[id] == 1);
    CHECK(t.base_bytes[id] == 0);
  }
  CHECK(t.base_bytes[4] == 1);  // <0x00>
  CHECK(t.boundary[4] == 0);
  CHECK(t.leading_space[939] == 1);  // the lone space piece
  CHECK(t.base_bytes[939] == 0);

  // "Hello world, 42 cafés." encodes as H|ell|o|▁wor|ld|,|▁|4|2|▁c|a|f|<0xC3>|<0xA9>|s|.
  const std::vector<int> ids = tok.encode("Hello world, 42 cafés.");
  const std::vector<int> expected_ids = {981, 465, 943, 458, 401, 962, 939, 998, 976, 274, 942, 956, 199, 173, 946, 960};
  REQUIRE(ids == expected_ids);
  // Bytes per target, hand-counted: H1 ell3 o1 ▁wor(3+1) ld2 ,1 ▁(0+1) 4:1 2:1 ▁c(1+1) a1 f1 C3:1 A9:1 s1 .1
  const std::vector<int> expected_bytes = {1, 3, 1, 4, 2, 1, 1, 1, 1, 2, 1, 1, 1, 1, 1, 1};
  int prev = 1;  // BOS
  int total = 0;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    CHECK(t.token_bytes(prev, ids[i]) == expected_bytes[i]);
    total += t.token_bytes(prev, ids[i]);
    prev = ids[i];
  }
  CHECK(total == int(std::string("Hello world, 42 cafés.").size()));  // 23 UTF-8 bytes
  // After a boundary token a leading space is not counted.
  CHECK(t.token_bytes(1, 458) == 3);
  CHECK(t.token_bytes(981, 458) == 4);
}

TEST_CASE("val_bpb of a uniform predictor is log2(V) * tokens / bytes", "[forward][tokenizer]") {
  Tokenizer tok(kModel);
  ByteTables t(tok, 1024);
  Shard val(std::filesystem::path(PGOLF_DATA_DIR) / "fineweb_sp1024_mini/fineweb_val_000000.bin");
  const std::size_t n = 10000;
  std::vector<std::int32_t> prev(n), target(n);
  for (std::size_t i = 0; i < n; ++i) prev[i] = val[i], target[i] = val[i + 1];
  const std::vector<double> nll(n, std::log(1024.0));
  BpbMeter m;
  m.add<double>(t, prev, target, nll);
  double bytes = 0;
  for (std::size_t i = 0; i < n; ++i) bytes += t.token_bytes(prev[i], target[i]);
  CHECK(m.tokens == n);
  CHECK(m.bytes == bytes);
  CHECK(m.val_loss() == Approx(std::log(1024.0)));
  CHECK(m.val_bpb() == Approx(10.0 * n / bytes).epsilon(1e-12));
  // FineWeb English is ~2.4 bytes per sp1024 token.
  CHECK(bytes / n > 2.0);
  CHECK(bytes / n < 3.0);
  BpbMeter empty;
  REQUIRE_THROWS_WITH(empty.val_bpb(), Catch::Contains("zero bytes"));
}
