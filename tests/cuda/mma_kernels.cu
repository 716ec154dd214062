#include "mma_kernels.hpp"

#include <cmath>
#include <cstddef>
#include <vector>

#include "pgolf/backend/cuda/buffer.hpp"
#include "pgolf/core/cuda_check.hpp"
#include "pgolf/ops/cuda/mma.cuh"

namespace {
using pgolf::ops::cuda::bf16;
namespace mma = pgolf::ops::cuda::mma;

// Leading dimensions unlike the tiles' widths, so an index that forgets them shows.
constexpr int kLdA = 24, kLdBt = 20, kLdB = 10, kLdB2 = 18, kLdC = 8, kLdD = 12;

__global__ void mma_kernel(const bf16* a, const bf16* bt, const bf16* b, const bf16* b2, const float* c, float* nk,
                           float* kn, float* chained) {
  const int lane = threadIdx.x;
  mma::FragA fa;
  mma::load_a(fa, a, kLdA, lane);
  mma::FragC acc;
  for (int i = 0; i < 4; ++i) acc.x[i] = c[mma::c_row(lane, i) * kLdC + mma::c_col(lane, i)];
  const mma::FragC c0 = acc;

  mma::FragB fb;
  mma::load_b_nk(fb, bt, kLdBt, lane);
  mma::mma_16x8x16(acc, fa, fb);
  mma::store_c(nk, kLdD, acc, lane);

  mma::FragB fk;
  acc = c0;
  mma::load_b_kn(fk, b, kLdB, lane);
  mma::mma_16x8x16(acc, fa, fk);
  mma::store_c(kn, kLdD, acc, lane);

  mma::FragC e[2];
  for (int j = 0; j < 2; ++j) {
    mma::zero(e[j]);
    mma::FragB f2;
    mma::load_b_kn(f2, b2 + 8 * j, kLdB2, lane);
    mma::mma_16x8x16(e[j], fa, f2);
  }
  mma::FragA p;
  mma::a_from_c(p, e[0], e[1]);
  acc = c0;
  mma::mma_16x8x16(acc, p, fb);
  mma::store_c(chained, kLdD, acc, lane);
}

// rows x cols of m (row-major) rounded to bf16 in place, laid out with leading dimension ld.
std::vector<bf16> to_device_layout(std::vector<float>& m, int rows, int cols, int ld, bool transpose = false) {
  std::vector<bf16> out(std::size_t(transpose ? cols : rows) * ld, __float2bfloat16_rn(NAN));
  for (int r = 0; r < rows; ++r)
    for (int k = 0; k < cols; ++k) {
      float& x = m[std::size_t(r) * cols + k];
      const bf16 h = __float2bfloat16_rn(x);
      x = __bfloat162float(h);
      out[transpose ? std::size_t(k) * ld + r : std::size_t(r) * ld + k] = h;
    }
  return out;
}
std::vector<float> from_device_layout(const std::vector<float>& d) {
  std::vector<float> out(16 * 8);
  for (int r = 0; r < 16; ++r)
    for (int n = 0; n < 8; ++n) out[std::size_t(r) * 8 + n] = d[std::size_t(r) * kLdD + n];
  return out;
}
}  // namespace

MmaProducts mma_on_device(std::vector<float>& a, std::vector<float>& b, std::vector<float>& b2,
                          const std::vector<float>& c) {
  using pgolf::cuda::DeviceBuffer;
  const std::vector<bf16> ha = to_device_layout(a, 16, 16, kLdA);
  const std::vector<bf16> hb = to_device_layout(b, 16, 8, kLdB);
  std::vector<float> b_again = b;  // already rounded: the transpose holds the same values
  const std::vector<bf16> hbt = to_device_layout(b_again, 16, 8, kLdBt, true);
  const std::vector<bf16> hb2 = to_device_layout(b2, 16, 16, kLdB2);
  std::vector<float> hc(16 * kLdC);
  for (std::size_t i = 0; i < hc.size(); ++i) hc[i] = c[i];
  DeviceBuffer<bf16> da(ha.size()), dbt(hbt.size()), db(hb.size()), db2(hb2.size());
  DeviceBuffer<float> dc(hc.size()), dnk(16 * kLdD), dkn(16 * kLdD), dch(16 * kLdD);
  da.upload(ha);
  dbt.upload(hbt);
  db.upload(hb);
  db2.upload(hb2);
  dc.upload(hc);
  for (auto* d : {&dnk, &dkn, &dch}) d->fill_bytes(0xff);  // NaN: an element left unwritten fails
  mma_kernel<<<1, 32>>>(da.data(), dbt.data(), db.data(), db2.data(), dc.data(), dnk.data(), dkn.data(), dch.data());
  PGOLF_CUDA_CHECK_LAUNCH("mma_kernel");
  auto get = [](const DeviceBuffer<float>& d) {
    std::vector<float> h(16 * kLdD);
    d.download(h);
    return from_device_layout(h);
  };
  return {get(dnk), get(dkn), get(dch)};
}
