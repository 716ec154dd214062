// Compiled once per PGOLF_BAD_SPEC case by the compile-fail tests: each case must be rejected at
// compile time by a static_assert whose message names the offending field. Case 0 is the control:
// a valid spec that must compile, proving the harness itself works.
#include "pgolf/model/gpt.hpp"

#ifndef PGOLF_BAD_SPEC
#error "define PGOLF_BAD_SPEC"
#endif

constexpr pgolf::GptSpec kSpec = [] {
  pgolf::GptSpec s{.vocab = 64, .dim = 32, .depth = {.layers = 2}, .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 8}};
#if PGOLF_BAD_SPEC == 1
  s.attention.heads = 5;  // 32 % 5 != 0
#elif PGOLF_BAD_SPEC == 2
  s.attention.kv_heads = 3;  // 4 % 3 != 0
#elif PGOLF_BAD_SPEC == 3
  s.attention.rope_dims = 7;
#elif PGOLF_BAD_SPEC == 4
  s.attention.rope_dims = 16;  // head dim is 8
#elif PGOLF_BAD_SPEC == 5
  s.depth.loops = 3;  // 2 layers
#elif PGOLF_BAD_SPEC == 6
  s.vocab = 0;
#elif PGOLF_BAD_SPEC == 7
  s.head.softcap = 0.0;
#elif PGOLF_BAD_SPEC == 8
  s.mlp.mult = 0;
#elif PGOLF_BAD_SPEC == 9
  s.depth.schedule = pgolf::repeat_span(2, 0, 1, 2);  // 4 virtual layers, but layers = 2
#elif PGOLF_BAD_SPEC == 10
  s.depth.schedule = pgolf::schedule_of(0, 2);  // block 1 never runs
#elif PGOLF_BAD_SPEC == 11
  s.depth.looped = pgolf::schedule_of(0, 0, 0);  // block 1 dropped when the loop turns on
#elif PGOLF_BAD_SPEC == 12
  s.attention.xsa = pgolf::blocks_of(2);  // blocks 0 and 1 only
#elif PGOLF_BAD_SPEC == 13
  s.embedding.bigram_buckets = 1;  // the hash needs buckets - 1 >= 1
#elif PGOLF_BAD_SPEC == 14
  s.depth.loop_embedding = pgolf::LoopEmbedding::random;  // one loop
#elif PGOLF_BAD_SPEC == 15
  s.attention.ve_dim = 8;  // no block takes the value embedding
#elif PGOLF_BAD_SPEC == 16
  s.depth.skips_per_loop = true;  // one loop
#elif PGOLF_BAD_SPEC == 17
  s.attention.gate_channels = 40;  // dim 32
#elif PGOLF_BAD_SPEC == 18
  s.residual.parallel_from = 2;  // blocks 0 and 1 only
#endif
  return s;
}();

int main() {
  pgolf::Gpt<kSpec, float> model(1, 4);
  return model.num_params > 0 ? 0 : 1;
}
