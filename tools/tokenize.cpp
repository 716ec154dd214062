// pgolf-tokenize: documents (text, one per line, or JSONL with a `text` field) to challenge shards.
//
//   pgolf-tokenize --model data/tokenizers/fineweb_1024_bpe.model --input docs.jsonl \
//                  --output-dir out [--format text|jsonl] [--val-docs N] [--shard-tokens N] [--prefix NAME]
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <unistd.h>

#include <CLI/CLI.hpp>

#include <pgolf/data/tokenize.hpp>

int main(int argc, char** argv) {
  std::string model, input, out_dir, format = "jsonl";
  pgolf::data::TokenizeOptions opt;
  CLI::App app("pgolf-tokenize: documents to challenge token shards (BOS before every document)", "pgolf-tokenize");
  app.add_option("--model", model, "SentencePiece .model file")->required()->check(CLI::ExistingFile);
  app.add_option("--input", input, "input documents")->required()->check(CLI::ExistingFile);
  app.add_option("--output-dir", out_dir, "where the shards go")->required();
  app.add_option("--format", format, "text: one document per line; jsonl: one JSON object per line")
      ->check(CLI::IsMember({"text", "jsonl"}))->capture_default_str();
  app.add_option("--field", opt.field, "JSONL field holding the document")->capture_default_str();
  app.add_option("--val-docs", opt.val_docs, "leading documents for the validation split")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--shard-tokens", opt.shard_tokens, "tokens per shard (the last one shorter)")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--prefix", opt.prefix, "file prefix: NAME_train_000000.bin, NAME_val_000000.bin")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  opt.format = format == "text" ? pgolf::data::DocFormat::text : pgolf::data::DocFormat::jsonl;

  try {
    const pgolf::data::Tokenizer tok(model);
    std::ifstream in(input, std::ios::binary);
    if (!in) throw pgolf::Error("cannot open " + input);
    const double total = double(std::filesystem::file_size(input));
    const bool tty = ::isatty(STDERR_FILENO);
    auto progress = [&, last = -1](std::size_t done) mutable {
      if (!tty || total <= 0) return;
      const int pct = int(100.0 * double(done) / total);
      if (pct == last) return;
      last = pct;
      const int filled = pct * 30 / 100;
      std::fprintf(stderr, "\r[%.*s%*s] %3d%%", filled, "==============================", 30 - filled, "", pct);
    };
    const auto r = pgolf::data::tokenize_to_shards(tok, in, out_dir, opt, progress);
    if (tty) std::fprintf(stderr, "\r%*s\r", 40, "");
    std::printf("documents: %lld (validation %lld, training %lld)\n", r.docs, r.val_docs, r.docs - r.val_docs);
    std::printf("tokens: validation %lld, training %lld\n", r.val_tokens, r.train_tokens);
    for (const auto& f : r.files) std::printf("wrote %s\n", f.string().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
