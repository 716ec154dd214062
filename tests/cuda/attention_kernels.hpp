#pragma once

#include <cstdint>
#include <vector>

// CUDA attention (head dim 64) on inputs in the CPU reference's layouts: q, dy [B,T,H,64],
// k, v [B,T,G,64], gain [H]. q, k, v and dy are replaced by their bf16 roundings (what the GPU
// sees), so the CPU reference can run on exactly the same values. Outputs in the CPU layouts:
// y [B,T,H,64], lse [B,H,T], dq [B,T,H,64], dk, dv [B,T,G,64], dgain [H] (accumulated from 0).
// ids [B*T] non-empty: document masking, the starts computed on the device from ids (BOS 1) and
// returned in starts.
struct GpuAttention {
  std::vector<float> y, lse, dq, dk, dv, dgain;
  std::vector<std::int32_t> starts;
};
GpuAttention gpu_attention_64(int B, int T, int H, int G, std::vector<float>& q, std::vector<float>& k,
                              std::vector<float>& v, const std::vector<float>& gain, std::vector<float>& dy,
                              std::size_t workspace_bytes, int query_tiles,
                              const std::vector<std::int32_t>& ids = {});
