// Writes the seed corpora of the fuzz targets: a few small valid inputs of each format (derived from
// the bundled data where there is some: a truncated real shard, real FineWeb text, the sp1024
// tokenizer) plus edge cases. Usage: pgolf-fuzz-make-corpus <pgolf data dir> <output corpus dir>.
// The committed fuzz/corpus/ is this program's output; rerun it after a format change.
#include <sentencepiece_trainer.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <span>
#include <string>
#include <vector>

#include "fuzz_common.hpp"
#include "pgolf/data/shard.hpp"
#include "pgolf/export/artifact.hpp"
#include "pgolf/export/safetensors.hpp"
#include "pgolf/train/checkpoint.hpp"

namespace fs = std::filesystem;
using Bytes = std::vector<std::uint8_t>;

namespace {

fs::path out_root;

void emit(const std::string& target, const std::string& name, const Bytes& bytes) {
  const fs::path dir = out_root / target;
  fs::create_directories(dir);
  std::ofstream out(dir / name, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  PGOLF_CHECK(out.good(), "cannot write ", (dir / name).string());
}
void emit(const std::string& target, const std::string& name, const std::string& text) {
  emit(target, name, Bytes(text.begin(), text.end()));
}
Bytes flagged(std::uint8_t flag, const Bytes& body) {
  Bytes b{flag};
  b.insert(b.end(), body.begin(), body.end());
  return b;
}
Bytes read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  PGOLF_CHECK(in.good(), "cannot read ", p.string());
  return Bytes(std::istreambuf_iterator<char>(in), {});
}
Bytes shard_bytes(const std::vector<std::uint16_t>& tokens) {
  const fs::path tmp = fs::temp_directory_path() / "pgolf_make_corpus_shard.bin";
  pgolf::data::write_shard(tmp, tokens);
  Bytes b = read_file(tmp);
  fs::remove(tmp);
  return b;
}

void shards(const fs::path& data) {
  const pgolf::data::Shard real(data / "fineweb_sp1024_mini/fineweb_val_000000.bin");
  std::vector<std::uint16_t> head;
  for (std::size_t i = 0; i < 64 && i < real.size(); ++i) head.push_back(real[i]);
  emit("shard", "val_first64", shard_bytes(head));
  emit("shard", "empty", shard_bytes({}));
  emit("shard", "one_token", shard_bytes({1023}));
  emit("shard", "out_of_vocab", shard_bytes({1, 2, 5000}));
  Bytes b = shard_bytes(head);
  b.resize(b.size() - 1);
  emit("shard", "truncated_body", b);
  b.resize(1000);
  emit("shard", "truncated_header", b);
  b = shard_bytes(head);
  b[0] ^= 1;
  emit("shard", "bad_magic", b);
  b = shard_bytes(head);
  b[11] = 0x80;  // negative token count
  emit("shard", "negative_count", b);
}

std::vector<float> params() {
  std::vector<float> p(pgolf::fuzz::kTableSize);
  for (std::size_t i = 0; i < p.size(); ++i) p[i] = float(int(i % 7) - 3) * 0.25f;
  return p;
}

void artifacts() {
  const auto p = params();
  for (auto codec : pgolf::kAllCodecs) {
    const Bytes a = pgolf::encode_artifact(pgolf::fuzz::kTable, std::span<const float>(p), codec,
                                           codec == pgolf::Codec::none ? -1 : 1);
    const std::string name(pgolf::to_string(codec));
    emit("artifact", name, flagged(0, a));
    emit("artifact", name + "_fixcrc", flagged(1, a));
  }
  Bytes a = pgolf::encode_artifact(pgolf::fuzz::kTable, std::span<const float>(p), pgolf::Codec::none);
  Bytes t(a.begin(), a.begin() + 40);
  emit("artifact", "truncated_header", flagged(0, t));
  a[8] = 3;  // a format version this build does not know
  emit("artifact", "version3_fixcrc", flagged(1, a));
  // Version 2: the matrix quantised by row-max int6 and recorded as such.
  pgolf::ExportOptions o;
  o.other = {pgolf::Quantiser::rowmax, 6};
  for (auto codec : {pgolf::Codec::none, pgolf::Codec::zstd, pgolf::Codec::lzma}) {
    const Bytes v2 = pgolf::encode_artifact(pgolf::fuzz::kTable, std::span<const float>(p), codec,
                                            codec == pgolf::Codec::none ? -1 : 1, o);
    const std::string name = "v2_int6_" + std::string(pgolf::to_string(codec));
    emit("artifact", name, flagged(0, v2));
    emit("artifact", name + "_fixcrc", flagged(1, v2));
  }
}

template <class T>
void checkpoints(const std::string& name) {
  pgolf::Checkpoint<T> c;
  c.fingerprint = pgolf::fuzz::kFingerprint;
  c.step = 12;
  c.train_ms = 345.5;
  c.data_file = 1;
  c.data_pos = 4096;
  c.seed = 1337;
  c.tensors = {std::vector<T>(8, T(0.5)), std::vector<T>(8, T(-1)), {}};
  c.counters = {12, 3};
  const Bytes b = pgolf::encode_checkpoint(c);
  emit("checkpoint", name, flagged(0, b));
  emit("checkpoint", name + "_fixcrc", flagged(1, b));
  Bytes t(b.begin(), b.end() - 9);
  emit("checkpoint", name + "_truncated", flagged(0, t));
  c.tensors.clear();
  emit("checkpoint", name + "_no_tensors_fixcrc", flagged(1, pgolf::encode_checkpoint(c)));
  // Version 2, shaped like a trainer's with EMA, SWA and QAT on: its state block describes the
  // parameters, Muon momentum, 3 Adam moment pairs, EMA and SWA sum; 3 Adam counts, SWA count, QAT step.
  c.tensors = {std::vector<T>(8, T(0.5)), std::vector<T>(8, T(0))};
  for (int k = 0; k < 6; ++k) c.tensors.push_back(std::vector<T>(2, T(k)));
  c.tensors.push_back(std::vector<T>(8, T(0.25)));
  c.tensors.push_back(std::vector<T>(8, T(1.5)));
  c.counters = {12, 12, 12, 3, 9};
  c.state = pgolf::CheckpointState{.ema = true, .swa = true, .qat = true, .ema_decay = 0.9965, .average = "swa_of_ema"};
  const Bytes v2 = pgolf::encode_checkpoint(c);
  emit("checkpoint", name + "_v2", flagged(0, v2));
  emit("checkpoint", name + "_v2_fixcrc", flagged(1, v2));
  emit("checkpoint", name + "_v2_state_cut_fixcrc", flagged(1, Bytes(v2.begin(), v2.begin() + 84)));
  // Version 3: the same, 5 steps into the end phase, in distillation (the teacher after the SWA sum).
  c.tensors.push_back(std::vector<T>(8, T(-0.75)));
  c.state->end_steps = 5, c.state->end_loss = 3.25, c.state->end_ms = 40.5, c.state->teacher = true;
  const Bytes v3 = pgolf::encode_checkpoint(c);
  emit("checkpoint", name + "_v3", flagged(0, v3));
  emit("checkpoint", name + "_v3_fixcrc", flagged(1, v3));
  emit("checkpoint", name + "_v3_end_cut_fixcrc", flagged(1, Bytes(v3.begin(), v3.begin() + 100)));
}

void jsonl(const fs::path& data) {
  emit("jsonl", "text_only", R"({"text": "hello world"})");
  emit("jsonl", "mixed", R"({"id": 17, "url": "http://x/\u00e9", "meta": {"a": [1, -2.5e3, true, false, null, {}]}, "text": "line\nnext\t\"q\" \u00e9 \ud83d\ude00 \ud800x"})");
  emit("jsonl", "no_text", R"({"title": "none", "n": 0})");
  emit("jsonl", "text_not_string", R"({"text": [1, 2]})");
  emit("jsonl", "empty_object", "{}");
  emit("jsonl", "unterminated", R"({"text": "abc)");
  emit("jsonl", "trailing", R"({"text": "a"} x)");
  emit("jsonl", "bad_escape", R"({"text": "\q\u12"})");
  // The first document of the bundled FineWeb sample, cut to a valid line of about 300 bytes.
  std::ifstream in(data / "text/fineweb_sample200_docs.jsonl");
  std::string line;
  std::getline(in, line);
  std::string cut = line.substr(0, 280);
  while (!cut.empty() && (cut.back() == '\\' || (static_cast<unsigned char>(cut.back()) & 0x80))) cut.pop_back();
  emit("jsonl", "fineweb_doc0", cut + "\"}");
}

void tokenizer(const fs::path& data) {
  std::ifstream in(data / "text/fineweb_val_prefix_docs.txt");
  std::string doc;
  std::getline(in, doc);
  doc = doc.substr(0, 200);
  emit("tokenizer", "doc_fineweb", std::string(1, '\0') + doc);
  emit("tokenizer", "doc_edge", std::string(1, '\1') + "  tabs\tand\r\nnewlines \xe2\x96\x81 \xff\xfe invalid utf-8 \xf0\x9f\x98\x80");
  emit("tokenizer", "doc_empty", std::string(1, '\0'));
  const std::string jsonl = "{\"text\": \"first document\"}\n\n{\"text\": \"second \\u00e9\"}\r\n{\"text\": \"" + doc.substr(0, 80) + "\"}\n";
  emit("tokenizer", "tokenize_jsonl", std::string(1, char(2 | (3 << 3))) + jsonl);
  emit("tokenizer", "tokenize_text", std::string(1, char(2 | 4)) + doc.substr(0, 60) + "\n\nsecond line\n");
  emit("tokenizer", "tokenize_bad_json", std::string(1, char(2)) + "{\"text\": 1}\n{\"text\"\n");
  // A tiny tokenizer model: BPE and a character model over a few sentences, no normalisation table.
  for (const std::string type : {"bpe", "char"}) {
    const fs::path txt = fs::temp_directory_path() / "pgolf_make_corpus_spm.txt";
    {
      std::ofstream t(txt);
      t << "the quick brown fox jumps over the lazy dog\nhello world hello fuzz\n" << doc.substr(0, 120) << "\n";
    }
    std::string model;
    const auto status = sentencepiece::SentencePieceTrainer::Train(
        "--input=" + txt.string() + " --model_type=" + type +
            (type == "bpe" ? " --vocab_size=300 --byte_fallback=true" : " --vocab_size=30") +
            " --normalization_rule_name=identity --character_coverage=1.0 --minloglevel=2 --hard_vocab_limit=false",
        nullptr, &model);
    PGOLF_CHECK(status.ok(), "training the ", type, " tokenizer seed failed: ", status.ToString());
    fs::remove(txt);
    emit("tokenizer", "model_" + type, std::string(1, '\3') + model);
  }
  emit("tokenizer", "model_garbage", std::string(1, '\3') + "\x0a\x05hello\x12\xff");
}

// Valid files of the fuzz table in both written dtypes, one the reference might write (F16 and BF16
// entries, no metadata), and edge cases.
void safetensors_files() {
  const std::vector<float> p = params();
  const pgolf::StateDictNaming naming{true, "fuzz"};
  const Bytes f32 = pgolf::encode_safetensors(pgolf::fuzz::kTable, std::span<const float>(p), pgolf::StDtype::F32, naming, "fuzz");
  emit("safetensors", "f32", f32);
  const std::vector<double> d(p.begin(), p.end());
  emit("safetensors", "f64", pgolf::encode_safetensors(pgolf::fuzz::kTable, std::span<const double>(d), pgolf::StDtype::F64, naming));
  std::string h =
      R"({"rows":{"dtype":"BF16","shape":[4,8],"data_offsets":[0,64]},"tensor":{"dtype":"F16","shape":[16],"data_offsets":[64,96]},)"
      R"("half":{"dtype":"F32","shape":[8],"data_offsets":[96,128]},"control":{"dtype":"F64","shape":[4],"data_offsets":[128,160]}})";
  Bytes mixed(8);
  for (int i = 0; i < 8; ++i) mixed[std::size_t(i)] = std::uint8_t(std::uint64_t(h.size()) >> (8 * i));
  mixed.insert(mixed.end(), h.begin(), h.end());
  for (int i = 0; i < 160; ++i) mixed.push_back(std::uint8_t(i % 2 ? 0x3f : 0x80));
  emit("safetensors", "mixed_no_metadata", mixed);
  Bytes t = f32;
  t.resize(t.size() / 2);
  emit("safetensors", "truncated", t);
  emit("safetensors", "empty_object", Bytes{2, 0, 0, 0, 0, 0, 0, 0, '{', '}'});
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s <pgolf data dir> <output corpus dir>\n", argv[0]);
    return 2;
  }
  const fs::path data = argv[1];
  out_root = argv[2];
  try {
    shards(data);
    artifacts();
    checkpoints<float>("float");
    checkpoints<double>("double");
    jsonl(data);
    tokenizer(data);
    safetensors_files();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
