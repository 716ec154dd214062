// The PRISM toy tasks: layouts and labels as PRISM.md 3 specifies (with the reasoning leak fixed and
// kept as a variant), the held-out split of mini_lm, determinism, and bad input.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <set>

#include "pgolf/data/toy_tasks.hpp"

using namespace pgolf;
using data::ToyTask;
using data::ToyTaskData;

namespace {
std::pair<std::vector<std::int32_t>, std::vector<std::int32_t>> seq(const ToyTaskData& d, std::uint64_t stream,
                                                                     std::uint64_t i) {
  std::vector<std::int32_t> x(std::size_t(d.seq_len())), y(std::size_t(d.seq_len()));
  d.sequence(stream, i, x.data(), y.data());
  return {x, y};
}
}  // namespace

TEST_CASE("toy task copy: [a_1..a_k, SEP, PAD x k], positions k..2k-1 emit a_1..a_k", "[forward][tasks]") {
  ToyTaskData d(ToyTask::copy, {}, 3);
  REQUIRE(d.vocab() == 18);
  REQUIRE(d.seq_len() == 17);
  for (int i = 0; i < 50; ++i) {
    const auto [x, y] = seq(d, 0, std::uint64_t(i));
    for (int j = 0; j < 8; ++j) {
      CHECK(x[std::size_t(j)] >= 2);
      CHECK(x[std::size_t(j)] < 18);
      CHECK(y[std::size_t(8 + j)] == x[std::size_t(j)]);
      CHECK(x[std::size_t(9 + j)] == 0);
      CHECK(y[std::size_t(j)] == -1);
    }
    CHECK(x[8] == 1);
    CHECK(y[16] == -1);
  }
}

TEST_CASE("toy task induction: distinct keys, the query is a key, the last position emits its value",
          "[forward][tasks]") {
  ToyTaskData d(ToyTask::induction, {}, 5);
  REQUIRE(d.vocab() == 12);
  REQUIRE(d.seq_len() == 9);
  std::set<int> answers;
  for (int i = 0; i < 200; ++i) {
    const auto [x, y] = seq(d, 0, std::uint64_t(i));
    const std::set<int> keys{x[0], x[2], x[4]};
    CHECK(keys.size() == 3);
    CHECK(x[6] == 1);
    CHECK(x[8] == 0);
    int expect = -1;
    for (int k = 0; k < 3; ++k)
      if (x[std::size_t(2 * k)] == x[7]) expect = x[std::size_t(2 * k + 1)];
    CHECK(expect >= 2);
    CHECK(y[8] == expect);
    for (int t = 0; t < 8; ++t) CHECK(y[std::size_t(t)] == -1);
    answers.insert(y[8]);
  }
  CHECK(answers.size() == 10);
}

TEST_CASE("toy task reasoning: the answer replays the saturating chain; the leaky variant shows it", "[forward][tasks]") {
  for (ToyTask t : {ToyTask::reasoning, ToyTask::reasoning_leaky}) {
    ToyTaskData d(t, {}, 7);
    REQUIRE(d.vocab() == 20);
    REQUIRE(d.seq_len() == 11);
    for (int i = 0; i < 100; ++i) {
      const auto [x, y] = seq(d, 0, std::uint64_t(i));
      int v = x[0] - 4;
      for (int s = 0; s < 4; ++s) {
        const int op = x[std::size_t(1 + 2 * s)], dlt = x[std::size_t(2 + 2 * s)] - 4;
        REQUIRE((op == 2 || op == 3));
        REQUIRE((dlt >= 1 && dlt <= 4));
        v = std::clamp(op == 2 ? v + dlt : v - dlt, 0, 15);
      }
      CHECK(x[9] == 1);
      if (t == ToyTask::reasoning) {
        CHECK(y[9] == 4 + v);   // scored at SEP
        CHECK(x[10] == 0);      // the answer is nowhere in the input
        CHECK(y[10] == -1);
      } else {
        CHECK(y[10] == 4 + v);
        CHECK(x[10] == 4 + v);  // the reference's leak: the input at the scored position is the label
      }
    }
  }
}

TEST_CASE("toy task mini_lm: bytes, next-byte targets, evaluation only from the held-out tail", "[forward][tasks]") {
  const auto path = std::filesystem::temp_directory_path() / "pgolf_toy_corpus.txt";
  {
    std::ofstream f(path, std::ios::binary);
    f << std::string(900, 'a') << std::string(100, 'b');
  }
  data::ToyTaskOptions o;
  o.corpus_path = path.string();
  o.mini_lm_seq = 16;
  ToyTaskData d(ToyTask::mini_lm, o, 1);
  REQUIRE(d.vocab() == 257);
  CHECK(d.train_bytes() == 900);
  CHECK(d.heldout_bytes() == 100);
  for (int i = 0; i < 20; ++i) {
    const auto [x, y] = seq(d, 0, std::uint64_t(i));
    for (int t = 0; t < 16; ++t) CHECK(x[std::size_t(t)] == 'a' + 1);
    const auto [hx, hy] = seq(d, 1, std::uint64_t(i));
    for (int t = 0; t < 16; ++t) CHECK(hy[std::size_t(t)] == 'b' + 1);
  }
  o.corpus_path = (std::filesystem::temp_directory_path() / "pgolf_missing_corpus.txt").string();
  CHECK_THROWS_WITH(ToyTaskData(ToyTask::mini_lm, o, 1), Catch::Contains("pgolf_missing_corpus.txt"));
  {
    std::ofstream f(path, std::ios::binary);
    f << "tiny";
  }
  o.corpus_path = path.string();
  CHECK_THROWS_WITH(ToyTaskData(ToyTask::mini_lm, o, 1), Catch::Contains("too few"));
  std::filesystem::remove(path);
}

TEST_CASE("toy tasks: the stream depends on (seed, index) only, not on the batch size", "[forward][tasks]") {
  ToyTaskData a(ToyTask::copy, {}, 11), b(ToyTask::copy, {}, 11), c(ToyTask::copy, {}, 12);
  TrainConfig c8, c4;
  c8.train_seq_len = c4.train_seq_len = 17;
  c8.train_batch_tokens = 8 * 17;
  c4.train_batch_tokens = 4 * 17;
  const auto big = a.next_batch(c8, 1);
  const auto s1 = b.next_batch(c4, 1), s2 = b.next_batch(c4, 1);
  std::vector<std::int32_t> joined(s1.x);
  joined.insert(joined.end(), s2.x.begin(), s2.x.end());
  CHECK(joined == big.x);
  CHECK(c.next_batch(c8, 1).x != big.x);
  CHECK(a.position().second == 8);
  c8.train_seq_len = 9;
  CHECK_THROWS_WITH(a.next_batch(c8, 1), Catch::Contains("train_seq_len = 9"));
  CHECK_THROWS_WITH(data::parse_toy_task("lookup"), Catch::Contains("unknown toy task 'lookup'"));
}
