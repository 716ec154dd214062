#pragma once

#include <cstdint>
#include <vector>

// Host wrappers around the CUDA embedding kernels for dim 512, vocab 1024 (the baseline's sizes).
// out_bf16 receives the bf16 forward widened to float.
void cuda_embedding_forward_512(const std::vector<std::int32_t>& ids, const std::vector<float>& table,
                                std::vector<float>& out_f32, std::vector<float>& out_bf16);
// dtable starts from the given values (the backward accumulates).
void cuda_embedding_backward_512(const std::vector<std::int32_t>& ids, const std::vector<float>& dy,
                                 std::vector<float>& dtable);
