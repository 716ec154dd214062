// Shards, token streams and loaders, including every malformed-shard error.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <numeric>

#include "pgolf/data/shard.hpp"
#include "pgolf/data/token_stream.hpp"

using namespace pgolf;
using namespace pgolf::data;
namespace fs = std::filesystem;

namespace {
fs::path scratch_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("pgolf_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}
std::vector<std::uint16_t> iota_tokens(std::size_t n, std::uint16_t start) {
  std::vector<std::uint16_t> t(n);
  std::iota(t.begin(), t.end(), start);
  return t;
}
}  // namespace

TEST_CASE("shard round trip and the bundled shards", "[forward][data]") {
  const auto dir = scratch_dir("roundtrip");
  const auto tokens = iota_tokens(1000, 3);
  write_shard(dir / "x_train_000000.bin", tokens);
  REQUIRE(fs::file_size(dir / "x_train_000000.bin") == 1024 + 2 * 1000);
  Shard s(dir / "x_train_000000.bin");
  REQUIRE(s.size() == 1000);
  for (std::size_t i = 0; i < 1000; ++i) REQUIRE(s[i] == tokens[i]);

  Shard val(fs::path(PGOLF_DATA_DIR) / "fineweb_sp1024_mini/fineweb_val_000000.bin");
  CHECK(val.size() == 1'040'298);  // (2,081,620 - 1024) / 2
  CHECK(val[0] == 1);  // BOS
  val.check_vocab(1024);
  Shard train(fs::path(PGOLF_DATA_DIR) / "fineweb_sp1024_mini/fineweb_train_000000.bin");
  CHECK(train.size() == 628'457);
  fs::remove_all(dir);
}

TEST_CASE("malformed shards are clear errors naming the file", "[forward][data]") {
  const auto dir = scratch_dir("bad");
  const auto good = dir / "good_val_000000.bin";
  write_shard(good, iota_tokens(64, 0));
  auto corrupt = [&](const std::string& name, auto&& edit) {
    const auto p = dir / name;
    fs::copy_file(good, p, fs::copy_options::overwrite_existing);
    std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
    edit(f);
    return p;
  };
  const auto bad_magic = corrupt("magic.bin", [](std::fstream& f) { f.seekp(0), f.put(0x11); });
  REQUIRE_THROWS_WITH(Shard(bad_magic), Catch::Contains("magic.bin") && Catch::Contains("bad magic"));
  const auto bad_version = corrupt("version.bin", [](std::fstream& f) { f.seekp(4), f.put(2); });
  REQUIRE_THROWS_WITH(Shard(bad_version), Catch::Contains("unsupported version 2"));
  const auto truncated = dir / "truncated.bin";
  fs::copy_file(good, truncated);
  fs::resize_file(truncated, 1024 + 2 * 64 - 3);
  REQUIRE_THROWS_WITH(Shard(truncated), Catch::Contains("truncated.bin") && Catch::Contains("size mismatch"));
  fs::resize_file(truncated, 100);
  REQUIRE_THROWS_WITH(Shard(truncated), Catch::Contains("truncated header"));
  REQUIRE_THROWS_WITH(Shard(dir / "missing.bin"), Catch::Contains("missing.bin") && Catch::Contains("cannot open"));
  REQUIRE_THROWS_WITH(Shard(good).check_vocab(50), Catch::Contains("token id 50 at position 50"));
  fs::remove_all(dir);
}

TEST_CASE("find_shards: sorted, by split, clear errors", "[forward][data]") {
  const auto dir = scratch_dir("find");
  write_shard(dir / "fineweb_train_000001.bin", iota_tokens(8, 0));
  write_shard(dir / "fineweb_train_000000.bin", iota_tokens(8, 0));
  write_shard(dir / "fineweb_val_000000.bin", iota_tokens(8, 0));
  const auto train = find_shards(dir, "train");
  REQUIRE(train.size() == 2);
  CHECK(train[0].filename() == "fineweb_train_000000.bin");
  CHECK(find_shards(dir, "val").size() == 1);
  REQUIRE_THROWS_WITH(find_shards(dir, "test"), Catch::Contains("holds no test shards"));
  REQUIRE_THROWS_WITH(find_shards(dir / "nope", "train"), Catch::Contains("is not a directory"));
  fs::remove_all(dir);
}

TEST_CASE("token loader: contiguous spans per rank, shifted targets, wrap-around", "[forward][data]") {
  const auto dir = scratch_dir("loader");
  write_shard(dir / "d_train_000000.bin", iota_tokens(30, 0));    // 0..29
  write_shard(dir / "d_train_000001.bin", iota_tokens(20, 100));  // 100..119
  const auto files = find_shards(dir, "train");
  TokenLoader rank0(files, 1024, 0, 2), rank1(files, 1024, 1, 2);
  // 16 global tokens, 2 ranks, 1 micro-step: 8 tokens per rank, spans of 9.
  auto b0 = rank0.next_batch(16, 4, 1);
  auto b1 = rank1.next_batch(16, 4, 1);
  REQUIRE(b0.rows == 2);
  CHECK(b0.x == std::vector<std::int32_t>{0, 1, 2, 3, 4, 5, 6, 7});
  CHECK(b0.y == std::vector<std::int32_t>{1, 2, 3, 4, 5, 6, 7, 8});
  CHECK(b1.x == std::vector<std::int32_t>{9, 10, 11, 12, 13, 14, 15, 16});
  // Next: tokens 18..29 then the second shard.
  b0 = rank0.next_batch(16, 4, 1);
  CHECK(b0.x == std::vector<std::int32_t>{18, 19, 20, 21, 22, 23, 24, 25});
  b1 = rank1.next_batch(16, 4, 1);
  b1 = rank1.next_batch(16, 4, 1);  // rank1 is now a step ahead: 36..53 -> shard 2 (100+6..)
  CHECK(b1.x.front() == 100 + 6 + 9);
  // Wrap-around back to the first shard after 50 tokens.
  TokenLoader one(files, 1024);
  for (int i = 0; i < 5; ++i) one.next_batch(8, 8, 1);  // 45 tokens
  const auto w = one.next_batch(8, 8, 1);                // 45..49 then 0..3
  CHECK(w.x == std::vector<std::int32_t>{115, 116, 117, 118, 119, 0, 1, 2});
  REQUIRE_THROWS_WITH(one.next_batch(12, 8, 1), Catch::Contains("divisible by the sequence length 8"));
  REQUIRE_THROWS_WITH(one.next_batch(10, 5, 4), Catch::Contains("positive multiple"));
  fs::remove_all(dir);
}

TEST_CASE("validation tokens are truncated to whole sequences plus one", "[forward][data]") {
  const auto dir = scratch_dir("val");
  write_shard(dir / "d_val_000000.bin", iota_tokens(25, 0));
  write_shard(dir / "d_val_000001.bin", iota_tokens(12, 50));
  const auto files = find_shards(dir, "val");
  auto v = load_validation_tokens(files, 8, 1024);
  REQUIRE(v.size() == 33);  // 37 tokens -> 1 + 4 * 8
  CHECK(v[25] == 50);
  v = load_validation_tokens(files, 8, 1024, 20);  // first 20 -> 1 + 2 * 8
  REQUIRE(v.size() == 17);
  REQUIRE_THROWS_WITH(load_validation_tokens(files, 64, 1024), Catch::Contains("fewer than one sequence"));
  REQUIRE_THROWS_WITH(load_validation_tokens(files, 8, 40), Catch::Contains("outside the vocabulary of 40"));
  fs::remove_all(dir);
}
