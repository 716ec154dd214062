// pgolf-baseline: the parameter-golf baseline GPT (the default GptSpec) as one variant binary.
// It prints the model's parameter table (what the optimizers and the exporter read) and runs one
// forward and backward pass on the CPU backend over a batch of pseudo-random tokens.
//
//   pgolf-baseline [--batch B] [--seq T] [--seed S]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <pgolf/pgolf.hpp>

constexpr pgolf::GptSpec kSpec{};  // 9x512, 8 heads / 4 KV heads, relu^2 x2, tied, softcap 30

int main(int argc, char** argv) {
  int batch = 1, seq = 128;
  unsigned long long seed = 1337;
  for (int i = 1; i < argc; ++i) {
    auto value = [&](const char* flag) -> long long {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "error: %s needs a value\n", flag);
        std::exit(2);
      }
      char* end = nullptr;
      const long long v = std::strtoll(argv[++i], &end, 10);
      if (*end != '\0' || v <= 0) {
        std::fprintf(stderr, "error: %s must be a positive integer, got '%s'\n", flag, argv[i]);
        std::exit(2);
      }
      return v;
    };
    if (!std::strcmp(argv[i], "--batch")) batch = int(value("--batch"));
    else if (!std::strcmp(argv[i], "--seq")) seq = int(value("--seq"));
    else if (!std::strcmp(argv[i], "--seed")) seed = value("--seed");
    else {
      std::fprintf(stderr, "usage: %s [--batch B] [--seq T] [--seed S]\n", argv[0]);
      return 2;
    }
  }

  using Model = pgolf::Gpt<kSpec, float>;
  std::printf("%-28s %-12s %-12s %-16s %s\n", "parameter", "shape", "group", "export", "elements");
  for (const auto& p : Model::param_table) {
    const std::string shape = p.rank == 1 ? std::to_string(p.rows) : std::to_string(p.rows) + "x" + std::to_string(p.cols);
    std::printf("%-28s %-12s %-12s %-16s %zu\n", p.name.c_str(), shape.c_str(),
                std::string(pgolf::to_string(p.group)).c_str(), std::string(pgolf::to_string(p.export_policy)).c_str(),
                p.numel());
  }
  std::printf("total parameters: %zu\n", Model::num_params);

  try {
    Model model(batch, seq);
    model.init(seed);
    std::printf("activation arena: %.1f MiB for batch %d x seq %d\n",
                double(model.arena_elements()) * sizeof(float) / (1 << 20), batch, seq);
    std::vector<std::int32_t> tokens(std::size_t(batch) * seq + 1);
    for (std::size_t i = 0; i < tokens.size(); ++i)
      tokens[i] = std::int32_t(pgolf::uniform01(seed, 0, i) * kSpec.vocab);
    const std::vector<std::int32_t> x(tokens.begin(), tokens.end() - 1), y(tokens.begin() + 1, tokens.end());
    const auto t0 = std::chrono::steady_clock::now();
    const double loss = model.forward(x, y);
    const auto t1 = std::chrono::steady_clock::now();
    model.zero_grad();
    model.backward();
    const auto t2 = std::chrono::steady_clock::now();
    std::printf("loss at init: %.6f (log(vocab) = %.6f)\n", loss, std::log(double(kSpec.vocab)));
    std::printf("forward %.1f ms, backward %.1f ms (CPU reference, float)\n",
                std::chrono::duration<double, std::milli>(t1 - t0).count(),
                std::chrono::duration<double, std::milli>(t2 - t1).count());
  } catch (const pgolf::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
