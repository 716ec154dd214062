// The CUDA step benchmark's measurement, templated on the spec (bench/cuda_step.cu dispatches; one
// translation unit per spec keeps nvcc's instantiations apart).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <pgolf/core/rng.hpp>
#include <pgolf/model/gpt_cuda.cuh>
#include <pgolf/optim/cuda/adam.cuh>
#include <pgolf/optim/cuda/muon.cuh>
#ifdef PGOLF_HAVE_NCCL
#include <pgolf/dist/nccl.cuh>
#endif

#include <pgolf/presets/frugendorff.hpp>
#include <pgolf/presets/records_stack.hpp>

namespace pgolf::bench {

struct StepOptions {
  long long batch_tokens = 524288;
  int seq = 1024, micro = 64, steps = 10, warmup = 3, phase = 0;
  bool nccl = false;  // reduce the gradients through NCCL at world size 1, as each rank of a data-parallel run does
};

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
inline double time_ms(const std::function<void()>& fn, int reps = 10, int warm = 2) {
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

inline std::vector<std::int32_t> skewed_tokens(std::size_t n, int vocab, std::uint32_t stream) {
  std::vector<std::int32_t> t(n);
  for (std::size_t i = 0; i < n; ++i) {
    const double u = pgolf::uniform01(17, stream, i);
    t[i] = std::int32_t(u * u * u * vocab);
  }
  return t;
}

inline double measured_bf16_peak(pgolf::cuda::Gemm& gemm) {
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



// Full training steps of GptCuda<S>; prints the step time, tokens/s, MFU, memory and phases.
template <GptSpec S>
int run_steps(const char* name, const StepOptions& o) {
  using Model = GptCuda<S>;
  const long long batch_tokens = o.batch_tokens;
  const int seq = o.seq, micro = o.micro, steps = o.steps, warmup = o.warmup;
  PGOLF_CHECK(batch_tokens % (std::int64_t(micro) * seq) == 0, "--batch-tokens ", batch_tokens,
              " is not a multiple of micro-seqs * seq = ", micro * seq);
  const int accum = int(batch_tokens / (std::int64_t(micro) * seq));
  cudaDeviceProp prop{};
  PGOLF_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));

  Model model(micro, seq);
  model.init(1337);
  model.set_phase(o.phase);
  PGOLF_CUDA_CHECK(cudaDeviceSynchronize());
  std::size_t free0 = 0, total_b = 0;
  PGOLF_CUDA_CHECK(cudaMemGetInfo(&free0, &total_b));
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
#ifdef PGOLF_HAVE_NCCL
  std::unique_ptr<pgolf::dist::NcclCommunicator> comm;
  if (o.nccl) {  // one rank: its own rendezvous on this host
    ::setenv("MASTER_ADDR", "127.0.0.1", 0);
    ::setenv("MASTER_PORT", "29500", 0);
    comm = std::make_unique<pgolf::dist::NcclCommunicator>(pgolf::dist::LaunchEnv{0, 1, 0, "torchrun", "WORLD_SIZE"});
  }
#else
  PGOLF_CHECK(!o.nccl, "--nccl: this benchmark was built without NCCL");
#endif
  double fwd_ms = 0, bwd_ms = 0, red_ms = 0, opt_ms = 0, loss = 0;
  Events e1, e2, e3, e4;
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
#ifdef PGOLF_HAVE_NCCL
    if (comm) {  // the Trainer's all_reduce_grads: every fp32 gradient in place, once per step
      PGOLF_CUDA_CHECK(cudaEventRecord(e4.a));
      const pgolf::cuda::DeviceParamSpan g = model.grads();
      comm->all_reduce_sum_device(g.data, g.size);
      PGOLF_CUDA_CHECK(cudaEventRecord(e4.b));
      PGOLF_CUDA_CHECK(cudaEventSynchronize(e4.b));
      float r = 0;
      PGOLF_CUDA_CHECK(cudaEventElapsedTime(&r, e4.a, e4.b));
      if (timed) red_ms += r;
    }
#endif
    PGOLF_CUDA_CHECK(cudaEventRecord(e3.a));
    muon.step(model.device_params(), model.device_grads(), 0.04);
    embed.step(model.device_params(), model.device_grads(), 0.05);
    scalar.step(model.device_params(), model.device_grads(), 0.04);
    PGOLF_CUDA_CHECK(cudaEventRecord(e3.b));
    PGOLF_CUDA_CHECK(cudaEventSynchronize(e3.b));
    float ot = 0;
    PGOLF_CUDA_CHECK(cudaEventElapsedTime(&ot, e3.a, e3.b));
    if (timed) opt_ms += ot;
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
  std::size_t free_b = 0;
  PGOLF_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  const double tps = double(batch_tokens) / (med / 1e3);

  // Model FLOPs per token: 6 x the matrix parameters each token passes through (a block's matrices once
  // per virtual layer that runs it; the tied head; embedding-side projections once; gathers excluded)
  // plus causal attention: per virtual layer 2 products x 2 flops x T/2 keys x dim, x3 for training.
  const auto& run = Model::Arch::depth.phase[std::size_t(o.phase)];
  double matrix_flops = 0;
  for (const auto& p : Model::param_table) {
    if (p.group == pgolf::OptimGroup::muon_matrix)
      matrix_flops += double(p.numel()) * (p.scope == pgolf::Scope::block ? run.uses(p.block) : 1);
    else if (std::string_view(p.name.c_str()) == "tok_emb.weight" || p.group == pgolf::OptimGroup::adam_head)
      matrix_flops += double(p.numel());  // the head's product
  }
  const double attn_flops = 3.0 * run.count * 2.0 * 2.0 * (seq / 2.0) * Model::kDim;
  const double flops_per_token = 6.0 * matrix_flops + attn_flops;
  const double peak = measured_bf16_peak(model.gemm());
  const double achieved = flops_per_token * tps / 1e12;

  std::printf("device %s (sm_%d%d, %d SMs)\n", prop.name, prop.major, prop.minor, prop.multiProcessorCount);
  std::printf("spec %s params %zu, %d virtual layers (phase %d), seq %d, batch_tokens %lld = %d micro-batches of %d "
              "sequences\n",
              name, Model::num_params, run.count, o.phase, seq, batch_tokens, accum, micro);
  std::printf("train step: median %.1f ms (min %.1f, max %.1f) over %d steps after %d warm-up; loss %.4f\n", med,
              sorted.front(), sorted.back(), steps, warmup, loss);
  std::printf("tokens/s: %.0f\n", tps);
  std::printf("model flops/token: %.3e; achieved %.1f TFLOP/s; measured bf16 peak (8192^3 cuBLASLt) %.1f TFLOP/s; "
              "MFU %.1f%%\n",
              flops_per_token, achieved, peak, 100.0 * achieved / peak);
  std::printf("activation arena %.2f GiB; device memory in use after the steps: %.2f GiB of %.2f GiB (model and "
              "optimizers: %.2f GiB before the first step)\n",
              double(model.arena_bytes()) / (1 << 30), double(total_b - free_b) / (1 << 30),
              double(total_b) / (1 << 30), double(total_b - free0) / (1 << 30));
  std::printf("communicator: %s\n", o.nccl ? "NCCL, world size 1 (gradients all-reduced in place every step)"
                                             : "none (single process)");
  std::printf("\nphase (per step, mean over timed steps)     ms      share\n");
  const double sum = (fwd_ms + bwd_ms + red_ms + opt_ms) / steps;
  std::printf("  forward (incl. loss to host)        %8.2f   %5.1f%%\n", fwd_ms / steps, 100 * fwd_ms / steps / sum);
  std::printf("  backward                            %8.2f   %5.1f%%\n", bwd_ms / steps, 100 * bwd_ms / steps / sum);
  if (o.nccl)
    std::printf("  gradient all-reduce (NCCL)          %8.2f   %5.1f%%\n", red_ms / steps, 100 * red_ms / steps / sum);
  std::printf("  optimizers (Muon + 2 Adam)          %8.2f   %5.1f%%\n", opt_ms / steps, 100 * opt_ms / steps / sum);
  return 0;
}

int run_baseline(const StepOptions& o);
int run_frugendorff(const StepOptions& o);
int run_records_stack(const StepOptions& o);

}  // namespace pgolf::bench
