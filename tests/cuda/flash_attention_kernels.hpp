#pragma once

#include <cstdint>
#include <vector>

// Flash attention (ops/cuda/flash_attention.cuh) on inputs in the CPU reference's layouts: q, dy
// [B,T,H,Hd], k, v [B,T,G,Hd], gain [H], Hd 32, 64 or 128. q, k, v and dy are replaced by their bf16
// roundings (what the GPU sees), so the CPU reference can run on exactly the same values. Outputs
// in the CPU layouts: y [B,T,H,Hd], lse [B,H,T], dq [B,T,H,Hd], dk, dv [B,T,G,Hd], dgain [H]
// (accumulated from 0). Every output buffer is filled with NaN before each call that writes it.
struct AttentionOutputs {
  std::vector<float> y, lse, dq, dk, dv, dgain;
};
struct FlashAttentionRun {
  AttentionOutputs flash;
  // A second backward on the same inputs with dq, dk poisoned again, dv accumulating onto the first
  // run's dv and dgain onto the first run's dgain: deterministic means dq, dk equal bitwise and
  // dv, dgain exactly twice the first run's.
  AttentionOutputs again;
  // The cuBLASLt path (Attention<Hd>) on the same inputs, when asked for (it needs T % 8 == 0).
  AttentionOutputs gemm;
  // Forward and backward again on the kernels on registers (FlashKernels::mma), in the same mode.
  AttentionOutputs mma;
};
// doc_start: document starts [B*T] (ops::cpu::AttentionShape::doc_start), uploaded and set with
// FlashAttention::set_doc_starts; empty: plain causal. deterministic: FlashAttention's backward mode
// (false: the atomic backward, whose dq is not bitwise reproducible; dk, dv and dgain still are).
FlashAttentionRun gpu_flash_attention(int Hd, int B, int T, int H, int G, std::vector<float>& q,
                                      std::vector<float>& k, std::vector<float>& v, const std::vector<float>& gain,
                                      std::vector<float>& dy, bool with_gemm,
                                      const std::vector<std::int32_t>& doc_start = {}, bool deterministic = true);
