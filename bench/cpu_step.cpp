// CPU reference step time: forward + backward of a spec on the CPU backend (float), averaged over
// repeats after one warm-up step. The CPU backend is the correctness reference, not the fast path;
// this benchmark tracks its cost so tests and small CPU runs stay affordable.
//
//   pgolf-bench-cpu-step [--batch B] [--seq T] [--repeats R]
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <omp.h>

#include <pgolf/pgolf.hpp>

namespace {

template <pgolf::GptSpec S>
void bench(const char* name, int batch, int seq, int repeats) {
  pgolf::Gpt<S, float> model(batch, seq);
  model.init(1);
  std::vector<std::int32_t> tokens(std::size_t(batch) * seq + 1);
  for (std::size_t i = 0; i < tokens.size(); ++i) tokens[i] = std::int32_t(pgolf::uniform01(2, 0, i) * S.vocab);
  const std::vector<std::int32_t> x(tokens.begin(), tokens.end() - 1), y(tokens.begin() + 1, tokens.end());
  auto step = [&] {
    model.forward(x, y);
    model.zero_grad();
    model.backward();
  };
  step();  // warm-up
  std::vector<double> ms;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    step();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  double mean = 0, var = 0;
  for (double v : ms) mean += v / repeats;
  for (double v : ms) var += (v - mean) * (v - mean) / std::max(1, repeats - 1);
  const double tokens_per_s = double(batch) * seq / (mean / 1e3);
  std::printf("%-10s params %9zu  batch %d x seq %d  step %9.1f ms +- %.1f  %9.0f tokens/s\n", name,
              model.num_params, batch, seq, mean, std::sqrt(var), tokens_per_s);
}

}  // namespace

int main(int argc, char** argv) {
  int batch = 1, seq = 256, repeats = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    const int v = std::atoi(argv[i + 1]);
    if (v <= 0) {
      std::fprintf(stderr, "error: %s must be a positive integer\n", argv[i]);
      return 2;
    }
    if (!std::strcmp(argv[i], "--batch")) batch = v;
    else if (!std::strcmp(argv[i], "--seq")) seq = v;
    else if (!std::strcmp(argv[i], "--repeats")) repeats = v;
    else {
      std::fprintf(stderr, "usage: %s [--batch B] [--seq T] [--repeats R]\n", argv[0]);
      return 2;
    }
  }
  std::printf("CPU reference forward+backward, float, %d OpenMP threads\n", omp_get_max_threads());
  bench<pgolf::GptSpec{.dim = 128, .depth = {.layers = 4}, .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 32}}>(
      "tiny", batch, seq, repeats);
  bench<pgolf::GptSpec{}>("baseline", batch, seq, repeats);
  return 0;
}
