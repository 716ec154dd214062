// GPTQ on a trained tiny model: Hessians collected from training batches through the CPU product
// hook (every product, the tied head's input for the embedding, once per use), and the artifact's
// round-trip loss with GPTQ int6 against row-max int6 on the same weights.
#include <catch2/catch.hpp>

#include <cmath>

#include "pgolf/export/artifact.hpp"
#include "pgolf/export/calibration.hpp"
#include "pgolf/train/run_log.hpp"
#include "pgolf/train/trainer.hpp"
#include "train_fixture.hpp"

using namespace pgolf;
using namespace pgolf::test;

namespace {
using Model = Gpt<kTrainSpec, float>;
}

TEST_CASE("GPTQ calibration on training batches; GPTQ int6 round trip no worse than row-max int6", "[forward][train]") {
  RunLog log;
  TrainConfig c = small_config();
  c.iterations = 40;
  c.train_batch_tokens = 2048;
  c.micro_batch_tokens = 2048;
  Trainer<Model> tr(c, log);
  tr.run();
  const auto& table = Model::param_table;

  ExportOptions o;
  o.quant_min_numel = 0;  // the tiny model's block matrices are below the reference's threshold
  o.attn = o.mlp = o.other = o.embed = {Quantiser::gptq, 6};
  o.gptq_sdclip = false;  // the percentile sweep: the same scale family as the row-max baseline
  const std::vector<bool> want = gptq_rows(table, o);
  int wanted = 0;
  for (bool w : want) wanted += w;
  REQUIRE(wanted == 1 + 2 * 6);  // the embedding and q, k, v, proj, fc, proj of two blocks

  HessianCollector<float> hc(table, std::span<const float>(tr.model().params()), want);
  CHECK_THROWS_WITH(hc.hessians(), Catch::Contains("calibration ran no batches"));
  hc.start();
  HessianCollector<float> other(table, std::span<const float>(tr.model().params()), want);
  CHECK_THROWS_WITH(other.start(), Catch::Contains("another collector is installed"));
  const int batches = 3;
  for (int b = 0; b < batches; ++b) {
    const data::Batch batch = tr.data().next_batch(c, 1);
    (void)tr.model().forward(batch.x, batch.y);
    hc.end_batch();
  }
  hc.stop();
  CHECK(ops::cpu::product_input_observer() == nullptr);
  const TensorHessians H = hc.hessians();
  for (std::size_t t = 0; t < table.size(); ++t) {
    INFO(table[t].name.c_str());
    REQUIRE(H[t].empty() == !want[t]);
    if (H[t].empty()) continue;
    const int n = table[t].cols;
    REQUIRE(H[t].size() == std::size_t(n) * n);
    for (int a = 0; a < n; ++a) {
      CHECK(H[t][std::size_t(a) * n + a] > 0);
      for (int b = 0; b < a; ++b) REQUIRE(H[t][std::size_t(a) * n + b] == H[t][std::size_t(b) * n + a]);
    }
  }
  // q, k and v read the same normalised input: the same Hessian.
  const auto idx = [&](const char* name) { return std::size_t(find_param(table, name) - table.data()); };
  CHECK(H[idx("blocks.0.attn.c_q.weight")] == H[idx("blocks.0.attn.c_k.weight")]);
  // The embedding's H is the head input's (RMS-normalised: mean diagonal ~ 1 per token, times the
  // tokens of a batch), not the one-hot lookup's.
  const auto& He = H[idx("tok_emb.weight")];
  double trace = 0;
  for (int a = 0; a < kTrainSpec.dim; ++a) trace += He[std::size_t(a) * kTrainSpec.dim + a];
  CHECK(trace / kTrainSpec.dim == Approx(double(c.micro_batch_tokens)).epsilon(0.2));

  const std::vector<float> trained(tr.model().params().begin(), tr.model().params().end());
  auto roundtrip = [&](const ExportOptions& opts, const TensorHessians* h) {
    const auto bytes = encode_artifact(table, std::span<const float>(trained), Codec::zstd, 3, opts, h);
    std::vector<float> loaded(trained.size());
    decode_artifact(std::span<const std::uint8_t>(bytes), table, std::span<float>(loaded));
    std::copy(loaded.begin(), loaded.end(), tr.model().params().begin());
    const double loss = tr.validate().val_loss();
    std::copy(trained.begin(), trained.end(), tr.model().params().begin());
    return loss;
  };
  const double fp = tr.validate().val_loss();
  ExportOptions r = o;
  r.attn = r.mlp = r.other = r.embed = {Quantiser::rowmax, 6};
  const double loss_rowmax = roundtrip(r, nullptr);
  const double loss_gptq = roundtrip(o, &H);
  INFO("fp " << fp << " rowmax int6 " << loss_rowmax << " gptq int6 " << loss_gptq);
  CHECK(loss_gptq <= loss_rowmax);
  CHECK(std::abs(loss_gptq - fp) < 0.1);
}

// The GPU collector's bookkeeping (CudaHessianCollector, compiled only where nvcc is): which table rows
// a product's weight span covers, in a layout with padding between tensors like the device's, and the
// finishing of a sum. The fused q/k/v product covers three rows, the tied head the embedding, a span
// cut short or a row not wanted gets nothing.
TEST_CASE("GPTQ on the GPU: a product's weight span maps to the table rows it covers", "[forward][train]") {
  const auto& table = Model::param_table;
  auto padded = table;  // every tensor at a multiple of 64 elements, as the device layout
  std::size_t at = 0;
  for (auto& p : padded) {
    p.offset = at;
    at += (p.numel() + 63) / 64 * 64;
  }
  const auto index = [&](const char* name) {
    const ParamInfo* p = find_param(table, name);
    REQUIRE(p != nullptr);
    return int(p - table.data());
  };
  std::vector<bool> want(table.size(), true);
  const int q = index("blocks.0.attn.c_q.weight"), k = index("blocks.0.attn.c_k.weight"),
            v = index("blocks.0.attn.c_v.weight"), proj = index("blocks.0.attn.proj.weight"),
            emb = index("tok_emb.weight");
  const int dim = table[std::size_t(q)].cols, qkv = table[std::size_t(q)].rows + 2 * table[std::size_t(k)].rows;
  CHECK(rows_read_by(padded, want, padded[std::size_t(q)].offset, dim, qkv) == std::vector<int>{q, k, v});
  CHECK(rows_read_by(padded, want, padded[std::size_t(q)].offset, dim, qkv - 1) == std::vector<int>{q, k});
  CHECK(rows_read_by(padded, want, padded[std::size_t(proj)].offset, dim, dim) == std::vector<int>{proj});
  CHECK(rows_read_by(padded, want, padded[std::size_t(emb)].offset, dim, table[std::size_t(emb)].rows) ==
        std::vector<int>{emb});
  CHECK(rows_read_by(padded, want, padded[std::size_t(proj)].offset, dim + 1, dim).empty());  // other width
  want[std::size_t(k)] = false;
  CHECK(rows_read_by(padded, want, padded[std::size_t(q)].offset, dim, qkv) == std::vector<int>{q, v});

  const std::vector<double> H = finish_hessian({4, 1, 3, 8}, 2, 2);
  CHECK(H == std::vector<double>{2, 1, 1, 4});
  CHECK_THROWS_WITH(finish_hessian({1, 2, 3}, 2, 1), Catch::Contains("3 values for a 2 x 2 matrix"));
}
