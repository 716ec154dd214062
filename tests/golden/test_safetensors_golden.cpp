// safetensors interop with the PyTorch reference port (tests/golden/make_safetensors_golden.py):
//   reference -> pgolf: the committed state dicts of a seeded tiny reference GPT (all F64, and the
//     mixed BF16/F32/F16 dtypes a reference run saves) import into Gpt<tiny, double> and give the
//     loss PyTorch computed in float64, within 1e-10;
//   pgolf -> reference: a pgolf model (perturbed, then a few SGD steps with pgolf's backward) exported
//     here gives the loss the port computed from that file (pgolf_export.manifest, written by the script's --check mode);
//   export -> import is bit for bit in double and float, for tied and untied, shared-block models;
//   which specs are the reference's (and so written under its names).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <string>
#include <vector>

#include "golden_file.hpp"
#include "pgolf/core/file_io.hpp"
#include "pgolf/export/safetensors.hpp"
#include "pgolf/export/state_dict.hpp"
#include "pgolf/model/gpt.hpp"

using namespace pgolf;

namespace {

// make_golden.py's tiny_reference spec (the port's BASE), and its GQA / partial RoPE / untied /
// shared-block case.
constexpr GptSpec kTinyReference{
    .vocab = 64, .dim = 32, .depth = {.layers = 3}, .attention = {.heads = 4, .kv_heads = 4, .rope_dims = 8}};
constexpr GptSpec kTinyGqa{
    .vocab = 64,
    .dim = 32,
    .depth = {.layers = 4, .loops = 2},
    .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 4, .rope_base = 500.0, .qk_gain_init = 2.0},
    .mlp = {.mult = 3, .activation = Activation::leaky_relu2},
    .embedding = {.tied = false},
    .head = {.softcap = 10.0}};
// A technique the reference lacks (the records' LN scale): same names, a different function.
constexpr GptSpec kLnScale{.vocab = 64, .dim = 32, .depth = {.layers = 2},
                           .attention = {.heads = 4, .kv_heads = 4, .rope_dims = 8},
                           .norm = {.ln_scale = LnScaleIndex::block}};

struct Manifest {
  std::string spec;
  int batch = 0, seq = 0;
  std::map<std::string, double> values;
  std::vector<std::int32_t> x, y;
};

std::string golden_path(const std::string& name) { return std::string(PGOLF_GOLDEN_DIR) + "/safetensors/" + name; }

Manifest read_manifest(const std::string& name) {
  std::ifstream in(golden_path(name));
  REQUIRE(in.good());
  Manifest m;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream is(line);
    std::string key;
    is >> key;
    if (key == "spec") std::getline(is >> std::ws, m.spec);
    else if (key == "batch") is >> m.batch;
    else if (key == "seq") is >> m.seq;
    else if (key == "x" || key == "y") {
      auto& v = key == "x" ? m.x : m.y;
      for (std::int32_t t; is >> t;) v.push_back(t);
    } else if (key == "variant" || key == "fingerprint") {
    } else {
      m.values[key] = pgolf::test::read_number(is);
    }
  }
  return m;
}

template <class Model>
double loss_of(Model& model, const Manifest& m) {
  return model.forward(std::span<const std::int32_t>(m.x), std::span<const std::int32_t>(m.y));
}

template <class Model>
std::vector<typename Model::Scalar> import_file(const std::string& path) {
  using T = typename Model::Scalar;
  std::vector<T> p(Model::num_params);
  decode_safetensors(std::span<const std::uint8_t>(read_file_bytes(path)), Model::param_table, std::span<T>(p), path);
  return p;
}

// A trained-looking pgolf model: the reference init plus a seeded perturbation (the zero-init
// projections would otherwise hide the block weights from the loss).
template <class Model>
std::vector<typename Model::Scalar> perturbed_params(std::uint64_t seed) {
  using T = typename Model::Scalar;
  std::vector<T> p(Model::num_params);
  init_params<T>(Model::param_table, seed, std::span<T>(p));
  for (const auto& row : Model::param_table) {
    const double scale = row.rank == 2 && row.rows != 2 ? 1.0 / std::sqrt(double(row.cols)) : 0.3;
    for (std::size_t i = 0; i < row.numel(); ++i)
      p[row.offset + i] += T(scale * normal01(seed + 1, name_stream(row.name.view()), i));
  }
  return p;
}

template <class Model>
void check_round_trip(std::uint64_t seed) {
  using T = typename Model::Scalar;
  const auto p = perturbed_params<Model>(seed);
  const StateDictNaming naming = state_dict_naming<Model>();
  const auto bytes = encode_safetensors(Model::param_table, std::span<const T>(p),
                                        sizeof(T) == 8 ? StDtype::F64 : StDtype::F32, naming, "test");
  std::vector<T> back(Model::num_params, T(-1));
  const auto info = decode_safetensors(std::span<const std::uint8_t>(bytes), Model::param_table, std::span<T>(back));
  CHECK(std::memcmp(back.data(), p.data(), p.size() * sizeof(T)) == 0);
  CHECK(info.tensors == Model::param_table.size());
  CHECK(info.metadata.at("pgolf.naming") == (naming.reference ? "reference" : "pgolf"));
  CHECK(info.metadata.at("pgolf.family") == naming.family);
}

}  // namespace

TEST_CASE("safetensors: which specs are the reference's", "[golden][safetensors]") {
  STATIC_REQUIRE(is_reference_gpt<kTinyReference>);
  STATIC_REQUIRE(is_reference_gpt<kTinyGqa>);
  STATIC_REQUIRE(is_reference_gpt<GptSpec{}>);  // the baseline
  STATIC_REQUIRE(!is_reference_gpt<kLnScale>);
  STATIC_REQUIRE(!is_reference_gpt<GptSpec{.embedding = {.bigram_buckets = 16}}>);
  STATIC_REQUIRE(!is_reference_gpt<GptSpec{.attention = {.xsa = all_blocks()}}>);
  STATIC_REQUIRE(!is_reference_gpt<GptSpec{.depth = {.layers = 9, .schedule = repeat_span(9, 3, 5, 2)}}>);
  CHECK(state_dict_naming<Gpt<kTinyReference, double>>().reference);
  CHECK(state_dict_naming<Gpt<kLnScale, float>>().family == "pgolf_gpt");
  CHECK_FALSE(state_dict_naming<Gpt<kLnScale, float>>().reference);
}

TEST_CASE("safetensors: the tiny reference's state dict is pgolf's table, name for name and shape for shape",
          "[golden][safetensors]") {
  // The port's state dict as the script wrote it, against the table.
  using M = Gpt<kTinyReference, double>;
  const auto bytes = read_file_bytes(golden_path("tiny_reference_f64.safetensors"));
  const StFile f = parse_safetensors(bytes);
  REQUIRE(f.tensors.size() == M::param_table.size());
  for (const auto& row : M::param_table) {
    INFO(row.name.c_str());
    const StTensor* t = f.find(row.name.view());
    REQUIRE(t != nullptr);
    CHECK(t->shape == state_dict_shape(row));
  }
  CHECK(f.find("blocks.0.resid_mix")->shape == std::vector<std::int64_t>{2, 32});
  CHECK(f.find("blocks.2.attn.q_gain")->shape == std::vector<std::int64_t>{4});
  CHECK(f.find("skip_weights")->shape == std::vector<std::int64_t>{1, 32});
}

TEST_CASE("safetensors: a reference state dict imports into pgolf with PyTorch's loss", "[golden][safetensors]") {
  const Manifest m = read_manifest("tiny_reference.manifest");
  using M = Gpt<kTinyReference, double>;
  REQUIRE(m.batch * m.seq == int(m.x.size()));
  M model(m.batch, m.seq);
  for (const char* kind : {"f64", "mixed"}) {
    INFO(kind);
    const auto p = import_file<M>(golden_path(std::string("tiny_reference_") + kind + ".safetensors"));
    model.set_params(p);
    const double loss = loss_of(model, m);
    const double expect = m.values.at(std::string("loss_") + kind);
    INFO("pgolf " << std::setprecision(17) << loss << ", PyTorch " << expect << ", difference " << loss - expect);
    CHECK(std::abs(loss - expect) < 1e-10);
    CHECK(std::isfinite(loss));
  }
}

TEST_CASE("safetensors: a pgolf model exported loads into the PyTorch port with the same loss", "[golden][safetensors]") {
  const Manifest m = read_manifest("tiny_reference.manifest");
  const Manifest torch_side = read_manifest("pgolf_export.manifest");
  using M = Gpt<kTinyReference, double>;
  M model(m.batch, m.seq);
  model.set_params(perturbed_params<M>(7));
  // Trained by pgolf: a few SGD steps with pgolf's own backward on the tokens.
  for (int step = 0; step < 5; ++step) {
    model.zero_grad();
    loss_of(model, m);
    model.backward();
    for (std::size_t i = 0; i < M::num_params; ++i) model.params()[i] -= 0.05 * model.grads()[i];
  }
  const std::vector<double> p = model.params_host();
  const double loss = loss_of(model, m);
  // The file the script checks: /usr/bin/python3 tests/golden/make_safetensors_golden.py --check <it>
  const std::filesystem::path out = std::filesystem::path(PGOLF_TEST_OUT_DIR) / "pgolf_tiny_reference_export.safetensors";
  write_file_bytes(out, encode_safetensors(M::param_table, std::span<const double>(p), StDtype::F64,
                                           state_dict_naming<M>(), "test_safetensors_golden"));
  INFO("pgolf's loss " << std::setprecision(17) << loss << "; PyTorch's (pgolf_export.manifest) " << torch_side.values.at("loss")
                       << ". If the model or the export changed on purpose, rerun: /usr/bin/python3 "
                          "tests/golden/make_safetensors_golden.py --check "
                       << out.string() << "; difference " << loss - torch_side.values.at("loss"));
  CHECK(std::abs(loss - torch_side.values.at("loss")) < 1e-10);
  // pgolf's own import of what it wrote scores the same, bit for bit.
  model.set_params(import_file<M>(out.string()));
  CHECK(loss_of(model, m) == loss);
}

TEST_CASE("safetensors: export then import is bit for bit", "[golden][safetensors]") {
  check_round_trip<Gpt<kTinyReference, double>>(3);
  check_round_trip<Gpt<kTinyReference, float>>(4);
  check_round_trip<Gpt<kTinyGqa, float>>(5);
  check_round_trip<Gpt<kLnScale, float>>(6);
}

TEST_CASE("safetensors: a state dict of another model is refused naming the tensor", "[golden][safetensors][bad_input]") {
  // The tiny reference's file into the untied GQA model: lm_head.weight is missing, c_k is [32, 32]
  // where the model has [16, 32].
  using M = Gpt<kTinyGqa, double>;
  std::vector<double> p(M::num_params);
  const std::string path = golden_path("tiny_reference_f64.safetensors");
  CHECK_THROWS_WITH(decode_safetensors(std::span<const std::uint8_t>(read_file_bytes(path)), M::param_table,
                                       std::span<double>(p), path),
                    Catch::Contains("tiny_reference_f64.safetensors: tensor lm_head.weight is missing (shape [64, 32])"));
  // The LN-scale variant's table equals the reference GPT's (LnScale has no tensor), so the
  // fingerprint cannot tell them apart; the family in the metadata does.
  using L = Gpt<kLnScale, float>;
  using R = Gpt<GptSpec{.vocab = 64, .dim = 32, .depth = {.layers = 2}, .attention = {.heads = 4, .kv_heads = 4, .rope_dims = 8}}, float>;
  REQUIRE(table_fingerprint(L::param_table) == table_fingerprint(R::param_table));
  const auto lp = perturbed_params<L>(1);
  const auto bytes = encode_safetensors(L::param_table, std::span<const float>(lp), StDtype::F32, state_dict_naming<L>(), "ln");
  std::vector<float> rp(R::num_params);
  const StateDictNaming r_naming = state_dict_naming<R>();
  CHECK_THROWS_WITH(decode_safetensors(std::span<const std::uint8_t>(bytes), R::param_table, std::span<float>(rp), "ln.safetensors",
                                       &r_naming),
                    Catch::Contains("ln.safetensors holds a pgolf_gpt model (ln), this model is a reference_gpt"));
  const StateDictNaming l_naming = state_dict_naming<L>();
  CHECK_NOTHROW(decode_safetensors(std::span<const std::uint8_t>(bytes), L::param_table, std::span<float>(rp), "ln.safetensors",
                                   &l_naming));
}
