// The training loop's own CUDA kernels (the text of `namespace detail` in train/cuda/qat.cuh and
// train/cuda/weight_average.cuh, extracted at configure time) run on the CPU under
// emulate_cuda.hpp, launched as CudaFakeQuant::apply/restore and ema_update/accumulate/average_into
// launch them, against the CPU versions in fp32 (train/qat.hpp's fake_quantize_rows<float>,
// train/weight_average.hpp's functions) on the same inputs.
//   QAT: rows of 1000 (a 256-thread block loops four times, the last partial; its max in the last
//   pass) and 300 columns with max |W| over 1, and two rows under the scale's 1/Qmax floor (7
//   small values, 64 zeros), at 2, 6 and 8 bits, in a parameter buffer with other
//   tensors between the rows; the same fp32 formula and ties-to-even rounding as the CPU, so the
//   quantised rows must equal the CPU's bit for bit, the values between them keep their bits, and
//   restore puts every master weight back bit for bit.
//   Weight averaging: 2^20 + 777 elements (more than the 4096-block grid covers: the grid-stride
//   loop's second pass), accumulate and average bit for bit (one fp32 operation each), the EMA
//   within one fp32 rounding of each of its two products (the compiler may contract d*a + e*w).
// This checks the kernels' logic without a GPU; tests/cuda checks them on one.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "train_ops_kernels_emulated.hpp"
#include "emulated_check.hpp"
#include "pgolf/train/qat.hpp"
#include "pgolf/train/weight_average.hpp"

namespace {
using namespace pgolf::test::emulated;
namespace kd = pgolf::cuda::detail;

std::vector<float> random_floats(std::size_t n, std::uint32_t stream, double scale) {
  auto d = randn(n, stream, scale);
  return to_f32(d);
}
}  // namespace

TEST_CASE("emulated: QAT fake-quantisation and restore kernels match the CPU's", "[train_ops_emulated]") {
  // Rows [offset, cols] in a 2600-float buffer; the gaps hold other tensors.
  const std::vector<pgolf::cuda::QatRow> rows = {{5, 0, 1000}, {1010, 1000, 7}, {1030, 1007, 300}, {1400, 1307, 64}};
  const std::size_t master_size = 1371;
  for (int bits : {2, 6, 8}) {
    CAPTURE(bits);
    // Rows whose max |W| is over 1, so their scale is max |W| / Qmax (the floor 1 / Qmax would hide
    // the max's reduction), and two under the floor: a small row and a zero row.
    std::vector<float> params = random_floats(2600, 1, 0.8);
    params[5 + 999] = 4.f;  // the first row's max in its last, partial pass (thread 231)
    for (int j = 0; j < 7; ++j) params[1010 + j] *= 0.05f;
    for (int j = 0; j < 64; ++j) params[1400 + j] = 0.f;
    const std::vector<float> before = params;
    std::vector<float> master(master_size, NAN);
    const float qmax = float((1 << (bits - 1)) - 1);
    emu::launch(unsigned(rows.size()), 1, [&] { kd::fake_quant_rows_kernel(rows.data(), params.data(), master.data(), qmax); },
                kd::kQatThreads);
    std::vector<float> want = before;
    for (const auto& r : rows) {
      pgolf::fake_quantize_rows(before.data() + r.param, 1, r.cols, bits, want.data() + r.param);
      CHECK(std::memcmp(master.data() + r.master, before.data() + r.param, r.cols * sizeof(float)) == 0);
    }
    CHECK(same_bits(params, want));  // the quantised rows, and every value between them untouched
    CHECK(params != before);
    emu::launch(unsigned(rows.size()), 1, [&] { kd::restore_rows_kernel(rows.data(), params.data(), master.data()); },
                kd::kQatThreads);
    CHECK(same_bits(params, before));
  }
}

TEST_CASE("emulated: EMA and SWA kernels match the CPU's", "[train_ops_emulated]") {
  const std::size_t n = (std::size_t(1) << 20) + 777;
  const unsigned blocks = kd::blocks_for(n);
  REQUIRE(std::size_t(blocks) * 256 < n);  // the grid-stride loop runs a second pass
  const std::vector<float> w = random_floats(n, 2, 1.0), start = random_floats(n, 3, 1.0);
  auto elementwise = [&](auto&& body) { emu::launch(blocks, 1, body, 256); };

  const double decay = 0.997;
  std::vector<float> ema = start, want = start;
  elementwise([&] { kd::ema_kernel(ema.data(), w.data(), n, float(decay), float(1.0 - decay)); });
  pgolf::ema_update(std::span<float>(want), std::span<const float>(w), decay);
  const float d = float(decay), e = float(1.0 - decay);
  for (std::size_t i = 0; i < n; ++i) {
    const double bound = 0x1p-23 * (std::abs(d * start[i]) + std::abs(e * w[i]));
    if (!(std::abs(double(ema[i]) - double(want[i])) <= bound)) {
      FAIL_CHECK("ema differs at " << i << ": " << ema[i] << " vs " << want[i]);
      break;
    }
  }

  std::vector<float> sum = start, want_sum = start;
  elementwise([&] { kd::accumulate_kernel(sum.data(), w.data(), n); });
  pgolf::accumulate(std::span<float>(want_sum), std::span<const float>(w));
  CHECK(same_bits(sum, want_sum));

  std::vector<float> avg(n, NAN), want_avg(n);
  elementwise([&] { kd::average_kernel(avg.data(), sum.data(), n, 3.f); });
  pgolf::average_into(std::span<float>(want_avg), std::span<const float>(want_sum), 3);
  CHECK(same_bits(avg, want_avg));
}
