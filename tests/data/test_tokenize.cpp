// pgolf-tokenize's library half: the JSONL field reader and documents -> shards. The bundled
// training shard is rebuilt byte for byte from the bundled JSONL.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "pgolf/core/file_io.hpp"
#include "pgolf/data/jsonl.hpp"
#include "pgolf/data/token_stream.hpp"
#include "pgolf/data/tokenize.hpp"

using namespace pgolf;
using namespace pgolf::data;
namespace fs = std::filesystem;

namespace {
const fs::path kData = PGOLF_DATA_DIR;
fs::path scratch(const std::string& name) {
  const fs::path p = fs::temp_directory_path() / ("pgolf_test_tokenize_" + name);
  fs::remove_all(p);
  return p;
}
}  // namespace

TEST_CASE("JSONL: the text field, with escapes decoded as json.loads does", "[forward][data]") {
  CHECK(json_string_field(R"({"text": "plain"})", "text") == "plain");
  CHECK(json_string_field(R"({"id": 3, "meta": {"a": [1, 2.5e3, true, null, "x\"}"]}, "text": "a\nb\t\"q\"\\/"})",
                          "text") == "a\nb\t\"q\"\\/");
  CHECK(json_string_field(R"({"text": "caf\u00e9 \u2014 \ud83d\ude00"})", "text") == "caf\xc3\xa9 \xe2\x80\x94 \xf0\x9f\x98\x80");
  CHECK(json_string_field(R"({"text": "raw UTF-8 é stays"})", "text") == "raw UTF-8 é stays");
  CHECK_FALSE(json_string_field(R"({"body": "x"})", "text").has_value());
  CHECK_FALSE(json_string_field(R"({"text": 5})", "text").has_value());
  CHECK_THROWS_WITH(json_string_field(R"({"text": "unterminated)", "text"), Catch::Contains("unterminated string"));
  CHECK_THROWS_WITH(json_string_field(R"(["text"])", "text"), Catch::Contains("expected '{'"));
  CHECK_THROWS_WITH(json_string_field(R"({"text": "a"} trailing)", "text"), Catch::Contains("after the object"));
  CHECK_THROWS_WITH(json_string_field(R"({"text": "\q"})", "text"), Catch::Contains("unknown escape"));
}

TEST_CASE("JSONL: nesting deeper than 512 levels is an error, not a stack overflow", "[forward][data]") {
  auto nested = [](int depth) {
    return R"({"meta": )" + std::string(std::size_t(depth), '[') + std::string(std::size_t(depth), ']') +
           R"(, "text": "kept"})";
  };
  CHECK(json_string_field(nested(512), "text") == "kept");
  CHECK_THROWS_WITH(json_string_field(nested(513), "text"), Catch::Contains("nested deeper than 512 levels"));
  // A million levels once overflowed the stack (fuzz/regressions/jsonl holds the fuzz-target form).
  CHECK_THROWS_WITH(json_string_field(nested(1000000), "text"), Catch::Contains("nested deeper than 512 levels"));
}

TEST_CASE("tokenizing the bundled JSONL rebuilds the bundled training shard byte for byte", "[forward][data]") {
  const Tokenizer tok(kData / "tokenizers/fineweb_1024_bpe.model");
  std::ifstream in(kData / "text/fineweb_sample200_docs.jsonl", std::ios::binary);
  const fs::path out = scratch("rebuild");
  const auto r = tokenize_to_shards(tok, in, out, TokenizeOptions{});
  CHECK(r.docs == 200);
  CHECK(r.val_tokens == 0);
  CHECK(r.train_tokens == 628457);
  REQUIRE(r.files.size() == 1);
  CHECK(r.files[0] == out / "fineweb_train_000000.bin");
  CHECK(read_file_bytes(r.files[0]) == read_file_bytes(kData / "fineweb_sp1024_mini/fineweb_train_000000.bin"));
}

TEST_CASE("validation split by documents, shards of a fixed size, text input", "[forward][data]") {
  const Tokenizer tok(kData / "tokenizers/fineweb_1024_bpe.model");
  std::ifstream in(kData / "text/fineweb_sample200_docs.jsonl", std::ios::binary);
  const fs::path out = scratch("split");
  const auto r = tokenize_to_shards(tok, in, out, TokenizeOptions{.val_docs = 20, .shard_tokens = 100000, .prefix = "mini"});
  CHECK(r.docs == 200);
  CHECK(r.val_docs == 20);
  CHECK(r.val_tokens + r.train_tokens == 628457);
  // Concatenating the split streams gives back the single stream, shard boundaries anywhere.
  std::vector<std::uint16_t> all;
  std::vector<fs::path> val = find_shards(out, "val"), train = find_shards(out, "train");
  CHECK(val.size() == std::size_t((r.val_tokens + 99999) / 100000));
  CHECK(train.size() == std::size_t((r.train_tokens + 99999) / 100000));
  for (const std::vector<fs::path>* lp : {&val, &train})
    for (const auto& list = *lp; const auto& f : list) {
      const Shard s(f);
      if (&f != &list.back()) CHECK(s.size() == 100000);
      for (std::size_t i = 0; i < s.size(); ++i) all.push_back(s[i]);
    }
  const Shard ref(kData / "fineweb_sp1024_mini/fineweb_train_000000.bin");
  REQUIRE(all.size() == ref.size());
  for (std::size_t i = 0; i < all.size(); ++i) REQUIRE(all[i] == ref[i]);
  CHECK(Shard(train[0])[0] == 1);  // the first training document starts with BOS

  // Text input: one document per line, BOS before each, empty lines skipped.
  std::istringstream text("Hello world.\n\nSecond document here.\n");
  const fs::path tout = scratch("text");
  const auto t = tokenize_to_shards(tok, text, tout, TokenizeOptions{.format = DocFormat::text});
  CHECK(t.docs == 2);
  const Shard s(tout / "fineweb_train_000000.bin");
  std::vector<int> expect{1};
  for (int id : tok.encode("Hello world.")) expect.push_back(id);
  expect.push_back(1);
  for (int id : tok.encode("Second document here.")) expect.push_back(id);
  REQUIRE(s.size() == expect.size());
  for (std::size_t i = 0; i < s.size(); ++i) CHECK(s[i] == expect[i]);
}

TEST_CASE("tokenizer input errors name the line", "[forward][data][bad_input]") {
  const Tokenizer tok(kData / "tokenizers/fineweb_1024_bpe.model");
  std::istringstream bad("{\"text\": \"ok\"}\n{\"title\": \"no text\"}\n");
  CHECK_THROWS_WITH(tokenize_to_shards(tok, bad, scratch("bad"), TokenizeOptions{}),
                    Catch::Contains("input line 2") && Catch::Contains("no string field \"text\""));
  std::istringstream broken("{\"text\": \"ok\"}\n{\"text\": \"cut\n");
  CHECK_THROWS_WITH(tokenize_to_shards(tok, broken, scratch("bad2"), TokenizeOptions{}),
                    Catch::Contains("input line 2") && Catch::Contains("invalid JSON"));
}
