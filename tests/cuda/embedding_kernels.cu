#include "embedding_kernels.hpp"

#include <cuda_bf16.h>

#include "pgolf/ops/cuda/embedding.cuh"

using pgolf::cuda::DeviceBuffer;

void cuda_embedding_forward_512(const std::vector<std::int32_t>& ids, const std::vector<float>& table,
                                std::vector<float>& out_f32, std::vector<float>& out_bf16) {
  const std::size_t n = ids.size();
  DeviceBuffer<std::int32_t> d_ids(n);
  DeviceBuffer<float> d_table(table.size()), d_out(n * 512);
  DeviceBuffer<__nv_bfloat16> d_bf(n * 512);
  d_ids.upload(ids);
  d_table.upload(table);
  d_out.fill_bytes(0xff);  // NaN everywhere: an unwritten element cannot pass
  d_bf.fill_bytes(0xff);
  pgolf::ops::cuda::embedding_forward<512>(d_ids.data(), n, d_table.data(), d_out.data());
  pgolf::ops::cuda::embedding_forward<512>(d_ids.data(), n, d_table.data(), d_bf.data());
  PGOLF_CUDA_CHECK(cudaDeviceSynchronize());
  out_f32.resize(n * 512);
  d_out.download(out_f32);
  std::vector<__nv_bfloat16> bf(n * 512);
  d_bf.download(bf);
  out_bf16.resize(n * 512);
  for (std::size_t i = 0; i < bf.size(); ++i) out_bf16[i] = __bfloat162float(bf[i]);
}

void cuda_embedding_backward_512(const std::vector<std::int32_t>& ids, const std::vector<float>& dy,
                                 std::vector<float>& dtable) {
  const std::size_t n = ids.size();
  DeviceBuffer<std::int32_t> d_ids(n);
  DeviceBuffer<float> d_dy(dy.size()), d_dtable(dtable.size());
  d_ids.upload(ids);
  d_dy.upload(dy);
  d_dtable.upload(dtable);
  pgolf::ops::cuda::EmbeddingBackward backward(n, 1024);
  backward.run<512>(d_ids.data(), n, d_dy.data(), d_dtable.data());
  PGOLF_CUDA_CHECK(cudaDeviceSynchronize());
  d_dtable.download(dtable);
}
