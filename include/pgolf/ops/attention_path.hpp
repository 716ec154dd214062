// Which CUDA attention implementation the CausalAttention component runs (nn/causal_attention.hpp):
//   gemm:      Attention<Hd> (ops/cuda/attention.cuh), cuBLASLt products with scores in a workspace.
//              The default.
//   flash:     FlashAttention<Hd> (ops/cuda/flash_attention.cuh), the fused kernels (wmma, scores
//              staged through shared memory); match the CPU on an H200, about as fast as gemm.
//   flash-mma: the same on the kernels on registers (FlashKernels::mma: the forward and the
//              deterministic backward through mma.sync); checked under the CUDA emulation only,
//              not yet run on a GPU.
// Chosen by the environment variable PGOLF_ATTENTION (gemm | flash | flash-mma; unset or empty:
// gemm), read once per process. Kept free of CUDA so the parser is tested on the CPU.
// The flash path's backward mode is a process-wide choice too, made by the trainer from
// TrainConfig::deterministic (--deterministic, the default; --no-deterministic: the atomics backward,
// whose float sums change order from run to run) before it builds a model. The gemm path and the CPU
// are deterministic either way.
#pragma once

#include <cstdlib>
#include <string_view>

#include "pgolf/core/error.hpp"

namespace pgolf {

enum class AttentionPath { gemm, flash, flash_mma };

inline AttentionPath parse_attention_path(std::string_view s) {
  if (s.empty() || s == "gemm") return AttentionPath::gemm;
  if (s == "flash") return AttentionPath::flash;
  if (s == "flash-mma") return AttentionPath::flash_mma;
  PGOLF_FAIL("PGOLF_ATTENTION: '", s, "' is not an attention path (gemm, flash or flash-mma)");
}

inline AttentionPath attention_path_from_env() {
  static const AttentionPath path = [] {
    const char* v = std::getenv("PGOLF_ATTENTION");
    return parse_attention_path(v ? v : "");
  }();
  return path;
}

namespace detail {
inline bool& attention_deterministic_flag() {
  static bool deterministic = true;
  return deterministic;
}
}  // namespace detail
inline bool attention_deterministic() { return detail::attention_deterministic_flag(); }
inline void set_attention_deterministic(bool on) { detail::attention_deterministic_flag() = on; }

}  // namespace pgolf
