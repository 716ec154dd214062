// pgolf-baseline: the challenge's reference GPT (the default GptSpec: 9 layers x 512, 8 heads and
// 4 KV heads, relu^2 MLP x2, U-Net skips, tied embedding, softcap 30; 17,059,912 parameters) with
// the reference trainer's defaults (524,288 tokens per step at seq 1024, 20,000 iterations capped
// at 600 s, warmdown 1200, Muon 0.04 / Adam 0.05 and 0.04, int8 + zlib export).
//
//   pgolf-baseline train --data-path DIR --tokenizer-path FILE   (or DATA_PATH=... TOKENIZER_PATH=...)
//   pgolf-baseline eval runs/<id>/model.pgolf
//   pgolf-baseline info
#include <pgolf/pgolf.hpp>

constexpr pgolf::GptSpec kSpec{};

int main(int argc, char** argv) {
  return pgolf::app::gpt_main<kSpec>(
      argc, argv, {.name = "pgolf-baseline", .description = "pgolf-baseline: the parameter-golf reference GPT (9x512)"});
}
