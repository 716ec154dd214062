// The log and score scanners of submit/verify (app/submit.hpp).
#include <catch2/catch.hpp>

#include "pgolf/app/submit.hpp"

using pgolf::app::detail::parse_score_line;
using pgolf::app::detail::value_after;

TEST_CASE("value_after takes the first non-empty run of the allowed characters after the key", "[forward]") {
  CHECK(value_after("run device:cuda world_size:8\n", "device:", "abcdefghijklmnopqrstuvwxyz") == "cuda");
  CHECK(value_after("run device:cuda world_size:8\n", "world_size:", "0123456789") == "8");
  // An occurrence without a value is skipped, as a regex search would.
  CHECK(value_after("device: none device:cpu", "device:", "abcdefghijklmnopqrstuvwxyz") == "cpu");
  CHECK_FALSE(value_after("device:", "device:", "abc").has_value());
  CHECK_FALSE(value_after("no such key", "device:", "abc").has_value());
  std::size_t end = 0;
  CHECK(value_after("a:12b", "a:", "0123456789", 0, &end) == "12");
  CHECK(end == 4);
}

TEST_CASE("parse_score_line reads the eval command's score line and nothing else", "[forward]") {
  const auto s = parse_score_line("loading model.pgolf\nval_loss:2.50000000 val_bpb:1.25000000 tokens:4096 bytes:9000\n");
  REQUIRE(s.has_value());
  CHECK(s->first == 2.5);
  CHECK(s->second == 1.25);
  // A step line (val_loss without val_bpb right after it) comes first in a train log and is skipped.
  const auto t = parse_score_line("step:4/4 val_loss:3.0 train_time:10ms\nval_loss:1e-1 val_bpb:2E+0 tokens:1 bytes:2\n");
  REQUIRE(t.has_value());
  CHECK(t->first == 0.1);
  CHECK(t->second == 2.0);
  CHECK_FALSE(parse_score_line("val_loss:2.5 val_bpb:1.25\n").has_value());        // no tokens: field
  CHECK_FALSE(parse_score_line("val_loss:- val_bpb:. tokens:3\n").has_value());    // not numbers
  CHECK_FALSE(parse_score_line("val_loss: val_bpb:1.0 tokens:3\n").has_value());   // empty loss
  CHECK_FALSE(parse_score_line("").has_value());
}
