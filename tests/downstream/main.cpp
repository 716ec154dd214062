// Compiles a model from a spec against the installed headers and runs one training-step's worth of
// forward and backward.
#include <cmath>
#include <cstdio>
#include <vector>

#include <pgolf/pgolf.hpp>

// Also the base of a one-point ablation grid (CMakeLists.txt): pgolf_add_ablation comes with the package.
constexpr pgolf::GptSpec kSpec = pgolf::ablation::apply(
    {.vocab = 128, .dim = 64, .depth = {.layers = 2}, .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 16}});

int main() {
  pgolf::Gpt<kSpec> model(2, 16);
  model.init(1);
  std::vector<std::int32_t> x(32), y(32);
  for (int i = 0; i < 32; ++i) x[i] = (i * 7) % 128, y[i] = (i * 7 + 3) % 128;
  const double loss = model.forward(x, y);
  model.zero_grad();
  model.backward();
  std::printf("downstream: %zu parameters, loss %.4f, ablation point '%s'\n", model.num_params, loss,
              pgolf::ablation::point());
  return std::abs(loss - std::log(128.0)) < 0.05 ? 0 : 1;
}
