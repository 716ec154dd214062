// CUDA step benchmark: full training steps of GptCuda (forward, backward, Muon, Adam) for the
// baseline spec (9x512, seq 1024, 524,288 tokens per step by gradient accumulation), with a
// per-phase and per-component table. A benchmark, never a test: figures depend on the machine.
// Timing: device events after warm-up steps; median and spread over the timed steps. Tokens are
// drawn from a skewed distribution (a few hot ids, many rare ones, as in text).
//
//   pgolf-bench-cuda-step [--batch-tokens N] [--seq T] [--micro-seqs B] [--steps S] [--warmup W]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include <pgolf/core/rng.hpp>
#include <pgolf/model/gpt_cuda.cuh>
#include <pgolf/optim/cuda/adam.cuh>
#include <pgolf/optim/cuda/muon.cuh>

namespace {

constexpr pgolf::GptSpec kBaseline{};
using Model = pgolf::GptCuda<kBaseline>;

struct Events {
  cudaEvent_t a, b;
  Events() {
    PGOLF_CUDA_CHECK(cudaEventCreate(&a));
    PGOLF_CUDA_CHECK(cudaEventCreate(&b));
  }
  ~Events() {
    cudaEventDestroy(a);
    cudaEventDestroy(b);
  }
};

// Median milliseconds of fn over reps runs after warm-up runs, timed by device events.
double time_ms(const std::function<void()>& fn, int reps = 10, int warm = 2) {
  Events e;
  for (int i = 0; i < warm; ++i) fn();
  std::vector<float> t;
  for (int i = 0; i < reps; ++i) {
    PGOLF_CUDA_CHECK(cudaEventRecord(e.a));
    fn();
    PGOLF_CUDA_CHECK(cudaEventRecord(e.b));
    PGOLF_CUDA_CHECK(cudaEventSynchronize(e.b));
    float ms = 0;
    PGOLF_CUDA_CHECK(cudaEventElapsedTime(&ms, e.a, e.b));
    t.push_back(ms);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

std::vector<std::int32_t> skewed_tokens(std::size_t n, int vocab, std::uint32_t stream) {
  std::vector<std::int32_t> t(n);
  for (std::size_t i = 0; i < n; ++i) {
    const double u = pgolf::uniform01(17, stream, i);
    t[i] = std::int32_t(u * u * u * vocab);
  }
  return t;
}

double measured_bf16_peak(pgolf::cuda::Gemm& gemm) {
  const int n = 8192;
  pgolf::cuda::DeviceBuffer<__nv_bfloat16> a(std::size_t(n) * n), b(std::size_t(n) * n), c(std::size_t(n) * n);
  std::vector<__nv_bfloat16> h(std::size_t(n) * n);
  for (std::size_t i = 0; i < h.size(); ++i) h[i] = __float2bfloat16(float(pgolf::normal01(3, 1, i)));
  a.upload(h);
  b.upload(h);
  const pgolf::cuda::GemmShape s{.ta = false, .tb = true, .M = n, .N = n, .K = n, .lda = n, .ldb = n, .ldc = n,
                                 .c = pgolf::cuda::DType::bf16};
  const double ms = time_ms([&] { gemm.run(s, a.data(), b.data(), c.data(), 1.f, 0.f); }, 20, 3);
  return 2.0 * n * n * double(n) / (ms / 1e3) / 1e12;
}

}  // namespace

int main(int argc, char** argv) {
  long long batch_tokens = 524288;
  int seq = 1024, micro = 64, steps = 10, warmup = 3;
  CLI::App app("pgolf CUDA training-step benchmark (baseline spec)", "pgolf-bench-cuda-step");
  app.add_option("--batch-tokens", batch_tokens)->capture_default_str();
  app.add_option("--seq", seq)->capture_default_str();
  app.add_option("--micro-seqs", micro, "sequences per micro-batch")->capture_default_str();
  app.add_option("--steps", steps)->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--warmup", warmup)->check(CLI::NonNegativeNumber)->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    if (pgolf::cuda::device_count() == 0) {
      std::printf("SKIP: no CUDA device\n");
      return 0;
    }
    PGOLF_CHECK(batch_tokens % (std::int64_t(micro) * seq) == 0, "--batch-tokens ", batch_tokens,
                " is not a multiple of micro-seqs * seq = ", micro * seq);
    const int accum = int(batch_tokens / (std::int64_t(micro) * seq));
    cudaDeviceProp prop{};
    PGOLF_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));

    Model model(micro, seq);
    model.init(1337);
    constexpr auto& dev = Model::device_table;
    pgolf::cuda::CudaMuon muon(dev, pgolf::MuonOptions{.momentum = 0.95}, model.gemm());
    pgolf::AdamOptions ao{.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8};
    pgolf::cuda::CudaAdam embed(dev, pgolf::OptimGroup::adam_embed, ao), scalar(dev, pgolf::OptimGroup::adam_scalar, ao);
    const std::size_t N = std::size_t(micro) * seq;
    std::vector<std::vector<std::int32_t>> xs, ys;
    for (int a = 0; a < accum; ++a) {
      auto t = skewed_tokens(N + 1, Model::kVocab, std::uint32_t(a));
      xs.emplace_back(t.begin(), t.end() - 1);
      ys.emplace_back(t.begin() + 1, t.end());
    }
    double fwd_ms = 0, bwd_ms = 0, opt_ms = 0, loss = 0;
    Events e1, e2, e3;
    auto step = [&](bool timed) {
      model.zero_grad();
      loss = 0;
      for (int a = 0; a < accum; ++a) {
        PGOLF_CUDA_CHECK(cudaEventRecord(e1.a));
        loss += model.forward(xs[a], ys[a]) / accum;  // returns after the loss is on the host
        PGOLF_CUDA_CHECK(cudaEventRecord(e1.b));
        model.backward(1.0 / accum);
        PGOLF_CUDA_CHECK(cudaEventRecord(e2.a));
        PGOLF_CUDA_CHECK(cudaEventSynchronize(e2.a));
        float f = 0, b = 0;
        PGOLF_CUDA_CHECK(cudaEventElapsedTime(&f, e1.a, e1.b));
        PGOLF_CUDA_CHECK(cudaEventElapsedTime(&b, e1.b, e2.a));
        if (timed) fwd_ms += f, bwd_ms += b;
      }
      PGOLF_CUDA_CHECK(cudaEventRecord(e3.a));
      muon.step(model.device_params(), model.device_grads(), 0.04);
      embed.step(model.device_params(), model.device_grads(), 0.05);
      scalar.step(model.device_params(), model.device_grads(), 0.04);
      PGOLF_CUDA_CHECK(cudaEventRecord(e3.b));
      PGOLF_CUDA_CHECK(cudaEventSynchronize(e3.b));
      float o = 0;
      PGOLF_CUDA_CHECK(cudaEventElapsedTime(&o, e3.a, e3.b));
      if (timed) opt_ms += o;
    };
    for (int i = 0; i < warmup; ++i) step(false);
    std::vector<double> ms;
    for (int i = 0; i < steps; ++i) {
      Events e;
      PGOLF_CUDA_CHECK(cudaEventRecord(e.a));
      step(true);
      PGOLF_CUDA_CHECK(cudaEventRecord(e.b));
      PGOLF_CUDA_CHECK(cudaEventSynchronize(e.b));
      float t = 0;
      PGOLF_CUDA_CHECK(cudaEventElapsedTime(&t, e.a, e.b));
      ms.push_back(t);
    }
    std::vector<double> sorted = ms;
    std::sort(sorted.begin(), sorted.end());
    const double med = sorted[sorted.size() / 2];
    std::size_t free_b = 0, total_b = 0;
    PGOLF_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    const double tps = double(batch_tokens) / (med / 1e3);

    // Model FLOPs per token: 6 x matrix parameters (embedding gather excluded, tied head included)
    // plus causal attention: per layer 2 products x 2 flops x T/2 keys x dim, x3 for training.
    double matrix_params = 0;
    for (const auto& p : Model::param_table)
      if (p.rank == 2 && std::string_view(p.name.c_str()).find("resid_mix") == std::string_view::npos &&
          std::string_view(p.name.c_str()) != "skip_weights")
        matrix_params += double(p.numel());
    const double attn_flops = 3.0 * Model::spec.depth.layers * 2.0 * 2.0 * (seq / 2.0) * Model::kDim;
    const double flops_per_token = 6.0 * matrix_params + attn_flops;
    const double peak = measured_bf16_peak(model.gemm());
    const double achieved = flops_per_token * tps / 1e12;

    std::printf("device %s (sm_%d%d, %d SMs)\n", prop.name, prop.major, prop.minor, prop.multiProcessorCount);
    std::printf("spec baseline params %zu, seq %d, batch_tokens %lld = %d micro-batches of %d sequences\n",
                Model::num_params, seq, batch_tokens, accum, micro);
    std::printf("train step: median %.1f ms (min %.1f, max %.1f) over %d steps after %d warm-up; loss %.4f\n", med,
                sorted.front(), sorted.back(), steps, warmup, loss);
    std::printf("tokens/s: %.0f\n", tps);
    std::printf("model flops/token: %.3e; achieved %.1f TFLOP/s; measured bf16 peak (8192^3 cuBLASLt) %.1f TFLOP/s; "
                "MFU %.1f%%\n",
                flops_per_token, achieved, peak, 100.0 * achieved / peak);
    std::printf("device memory in use after the steps: %.2f GiB of %.2f GiB\n", double(total_b - free_b) / (1 << 30),
                double(total_b) / (1 << 30));
    std::printf("\nphase (per step, mean over timed steps)     ms      share\n");
    const double sum = (fwd_ms + bwd_ms + opt_ms) / steps;
    std::printf("  forward (incl. loss to host)        %8.2f   %5.1f%%\n", fwd_ms / steps, 100 * fwd_ms / steps / sum);
    std::printf("  backward                            %8.2f   %5.1f%%\n", bwd_ms / steps, 100 * bwd_ms / steps / sum);
    std::printf("  optimizers (Muon + 2 Adam)          %8.2f   %5.1f%%\n", opt_ms / steps, 100 * opt_ms / steps / sum);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
