// The packed code of a submission: what the challenge counts as code bytes besides the artifact.
//
// pack_code() takes a variant's source file and the library headers it actually includes (the
// include closure: every `#include "pgolf/..."` or `<pgolf/...>` followed recursively from the
// source, under every #if branch, so the CUDA headers of a CUDA-capable variant are counted too;
// system and third-party headers are dependencies and are not counted, as the records do not count
// torch), strips comments and blank lines from each (strip_comments), and writes them as a shell
// archive (one `cat >FILE <<'DELIM'` here-document per file, plus a CMakeLists.txt that builds the
// variant with the flags and libraries of the pgolf target) compressed into the .xz container
// with LZMA2 at preset 9 (the settings of Codec::lzma, the dictionary cut to the input's size; the
// container adds a CRC32, so `xz -d` refuses an altered pack instead of unpacking garbage). build.sh (build_script()) unpacks it with
// `xz` and builds it with CMake. Counted code bytes = code.shar.xz + build.sh.
#pragma once

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <filesystem>
#include <map>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <lzma.h>

#include "pgolf/core/error.hpp"
#include "pgolf/core/file_io.hpp"

namespace pgolf::app {

inline constexpr const char* kPackedCodeFile = "code.shar.xz";
inline constexpr const char* kBuildScriptFile = "build.sh";

// C++ source without comments and without blank lines; string and character literals (raw ones
// included) are copied untouched, a comment continued by a backslash-newline ends where the
// compiler ends it, and a block comment becomes one space (as translation phase 3 does), so tokens
// on either side of it stay apart. Trailing spaces go; indentation and preprocessor lines stay.
inline std::string strip_comments(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  const std::size_t n = s.size();
  auto ident = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  std::size_t i = 0;
  while (i < n) {
    const char c = s[i];
    if (c == '/' && i + 1 < n && s[i + 1] == '/') {  // line comment, continued by backslash-newline
      i += 2;
      while (i < n && s[i] != '\n') {
        if (s[i] == '\\' && i + 1 < n && s[i + 1] == '\n') ++i;
        ++i;
      }
      continue;  // the newline itself is kept
    }
    if (c == '/' && i + 1 < n && s[i + 1] == '*') {
      const std::size_t end = s.find("*/", i + 2);
      PGOLF_CHECK(end != std::string_view::npos, "strip_comments: unterminated /* comment");
      i = end + 2;
      out += ' ';
      continue;
    }
    if (std::isdigit(static_cast<unsigned char>(c)) || (c == '.' && i + 1 < n && std::isdigit(static_cast<unsigned char>(s[i + 1])))) {
      // A pp-number: 1'000'000 has digit separators, not character literals; 1e-5, 0x1p+3 take a sign.
      std::size_t j = i + 1;
      while (j < n) {
        const char d = s[j];
        if ((d == '+' || d == '-') && (s[j - 1] == 'e' || s[j - 1] == 'E' || s[j - 1] == 'p' || s[j - 1] == 'P')) ++j;
        else if (d == '\'' && j + 1 < n && ident(s[j + 1])) j += 2;
        else if (ident(d) || d == '.') ++j;
        else break;
      }
      out.append(s.substr(i, j - i));
      i = j;
      continue;
    }
    if (ident(c)) {  // an identifier, or the encoding prefix of a literal (u8, L, u, U, with R for raw)
      std::size_t j = i;
      while (j < n && ident(s[j])) ++j;
      const std::string_view word = s.substr(i, j - i);
      const bool raw = j < n && s[j] == '"' && (word == "R" || word == "u8R" || word == "LR" || word == "uR" || word == "UR");
      out.append(word);
      i = j;
      if (raw) {  // R"delim( ... )delim"
        const std::size_t open = s.find('(', i + 1);
        PGOLF_CHECK(open != std::string_view::npos && open - i - 1 <= 16, "strip_comments: malformed raw string literal");
        const std::string close = ")" + std::string(s.substr(i + 1, open - i - 1)) + "\"";
        const std::size_t end = s.find(close, open + 1);
        PGOLF_CHECK(end != std::string_view::npos, "strip_comments: unterminated raw string literal");
        out.append(s.substr(i, end + close.size() - i));
        i = end + close.size();
      }
      continue;
    }
    if (c == '"' || c == '\'') {  // an ordinary string or character literal, escapes included
      std::size_t j = i + 1;
      while (j < n && s[j] != c) {
        PGOLF_CHECK(s[j] != '\n', "strip_comments: unterminated ", c == '"' ? "string" : "character", " literal");
        j += s[j] == '\\' ? 2 : 1;
      }
      PGOLF_CHECK(j < n, "strip_comments: unterminated literal at the end of the file");
      out.append(s.substr(i, j + 1 - i));
      i = j + 1;
      continue;
    }
    out += c;
    ++i;
  }
  // Blank lines and trailing spaces go. A line ending in a backslash keeps its continuation.
  std::string lines;
  lines.reserve(out.size());
  std::size_t p = 0;
  while (p < out.size()) {
    std::size_t e = out.find('\n', p);
    if (e == std::string::npos) e = out.size();
    std::string_view line(out.data() + p, e - p);
    while (!line.empty() && (line.back() == ' ' || line.back() == '\t' || line.back() == '\r')) line.remove_suffix(1);
    // A blank line after a backslash-continued one ends a macro: it stays (empty) so nothing joins.
    if (!line.empty() || (lines.size() >= 2 && lines[lines.size() - 2] == '\\')) {
      lines.append(line);
      lines += '\n';
    }
    p = e + 1;
  }
  return lines;
}

// The pgolf headers a file names in its #include lines ("pgolf/x.hpp" or <pgolf/x.hpp>), after
// comments are stripped, in order of appearance.
inline std::vector<std::string> pgolf_includes(std::string_view stripped) {
  std::vector<std::string> found;
  std::size_t p = 0;
  while (p < stripped.size()) {
    std::size_t e = stripped.find('\n', p);
    if (e == std::string_view::npos) e = stripped.size();
    std::string_view line = stripped.substr(p, e - p);
    p = e + 1;
    const std::size_t a = line.find_first_not_of(" \t");
    if (a == std::string_view::npos || line[a] != '#') continue;
    line.remove_prefix(a + 1);
    line.remove_prefix(std::min(line.find_first_not_of(" \t"), line.size()));
    if (!line.starts_with("include")) continue;
    line.remove_prefix(7);
    line.remove_prefix(std::min(line.find_first_not_of(" \t"), line.size()));
    if (line.size() < 2 || (line[0] != '"' && line[0] != '<')) continue;  // a macro (PGOLF_ABLATION_HEADER)
    const std::size_t close = line.find(line[0] == '"' ? '"' : '>', 1);
    if (close == std::string_view::npos) continue;
    const std::string_view name = line.substr(1, close - 1);
    if (name.starts_with("pgolf/")) found.emplace_back(name);
  }
  return found;
}

struct PackedFile {
  std::string path;     // in the unpacked folder: "tiny.cpp", "include/pgolf/app/main.hpp"
  std::size_t raw_bytes = 0;
  std::string stripped;
};

struct CodePack {
  std::string variant;                // the binary's name (the target the CMakeLists.txt builds)
  std::vector<PackedFile> files;      // the source first, then the closure in sorted order
  std::size_t raw_bytes = 0;          // source + closure as on disk
  std::size_t stripped_bytes = 0;     // the same without comments and blank lines
  std::vector<std::uint8_t> packed;   // code.shar.xz
  std::string script;                 // build.sh
  std::size_t counted_bytes() const { return packed.size() + script.size(); }
};

namespace detail {

// LZMA2 preset 9 with the dictionary cut to the input (at least 4 KiB): nothing lies farther back, so
// the output is what the 64 MiB dictionary gives, and encoding takes tens of MiB instead of 674.
inline std::vector<std::uint8_t> xz_encode(std::string_view text) {
  lzma_options_lzma opt{};
  PGOLF_CHECK(!lzma_lzma_preset(&opt, 9), "lzma: preset 9 is not supported by this liblzma");
  std::uint32_t dict = 4096;
  while (dict < text.size() && dict < opt.dict_size) dict *= 2;
  opt.dict_size = dict;
  const lzma_filter filters[] = {{LZMA_FILTER_LZMA2, &opt}, {LZMA_VLI_UNKNOWN, nullptr}};
  std::vector<std::uint8_t> out(lzma_stream_buffer_bound(text.size()));
  std::size_t n = 0;
  const lzma_ret rc = lzma_stream_buffer_encode(const_cast<lzma_filter*>(filters), LZMA_CHECK_CRC32, nullptr,
                                                reinterpret_cast<const std::uint8_t*>(text.data()), text.size(),
                                                out.data(), &n, out.size());
  PGOLF_CHECK(rc == LZMA_OK, "xz compression of the packed code failed (code ", int(rc), ")");
  out.resize(n);
  return out;
}

// A here-document delimiter that no line of `text` equals.
inline std::string delimiter_for(const std::string& text) {
  std::string d = "@";
  while (text.starts_with(d + "\n") || text.find("\n" + d + "\n") != std::string::npos) d += "@";
  return d;
}

inline std::string shell_quote(std::string_view s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

}  // namespace detail

// The CMakeLists.txt of the unpacked folder: the variant built as pgolf_add_variant builds it (the
// pgolf target's packages, C++20 with GNU extensions as CMake's default, Release: -O3 -DNDEBUG, no
// other optimisation flags), CPU backend only.
inline std::string unpacked_cmakelists(const std::string& variant, const std::string& source, bool ablation) {
  std::string s =
      "cmake_minimum_required(VERSION 3.25)\n"
      "project(pgolf_submission CXX)\n"
      "if(NOT CMAKE_BUILD_TYPE)\nset(CMAKE_BUILD_TYPE Release)\nendif()\n"
      "find_package(Boost 1.74 REQUIRED)\n"
      "find_package(OpenMP REQUIRED)\n"
      "set(BLA_VENDOR OpenBLAS)\n"
      "find_package(BLAS REQUIRED)\n"
      "find_package(PkgConfig REQUIRED)\n"
      "pkg_check_modules(D REQUIRED IMPORTED_TARGET sentencepiece libzstd libbrotlienc libbrotlidec liblzma)\n"
      "find_package(ZLIB REQUIRED)\n"
      "find_package(CLI11 CONFIG REQUIRED)\n"
      "find_package(nlohmann_json 3 REQUIRED)\n"
      "add_executable(" + variant + " " + source + ")\n"
      "target_include_directories(" + variant + " PRIVATE include)\n"
      "target_compile_features(" + variant + " PRIVATE cxx_std_20)\n"
      "target_link_libraries(" + variant + " PRIVATE Boost::headers OpenMP::OpenMP_CXX BLAS::BLAS PkgConfig::D ZLIB::ZLIB "
      "CLI11::CLI11 nlohmann_json::nlohmann_json)\n";
  if (ablation)
    s += "target_compile_definitions(" + variant + " PRIVATE PGOLF_ABLATION_HEADER=\"${CMAKE_SOURCE_DIR}/ablation_point.hpp\")\n";
  return s;
}

inline std::string build_script(const std::string& variant) {
  return "#!/bin/sh\n"
         "# " + variant + ": unpack " + kPackedCodeFile + " into DIR (default ./code) and build DIR/build/" + variant +
         " (needs xz, cmake, g++ and the pgolf README's packages)\n"
         "set -e\n"
         "p=$(cd \"$(dirname \"$0\")\" && pwd)/" + kPackedCodeFile + "\n"
         "mkdir -p \"${1:-code}\"\n"
         "cd \"${1:-code}\"\n"
         "xz -dc \"$p\" >unpack.sh\n"
         "sh unpack.sh\n"
         "cmake -S . -B build -DCMAKE_BUILD_TYPE=Release\n"
         "cmake --build build\n";
}

// Packs `source` and its pgolf include closure found under `include_root` (the folder holding
// pgolf/). `ablation_header`, when not empty, is the generated header of an ablation point
// (PGOLF_ABLATION_HEADER), shipped as ablation_point.hpp with its own closure.
inline CodePack pack_code(const std::string& variant, const std::filesystem::path& source,
                          const std::filesystem::path& include_root, const std::filesystem::path& ablation_header = {}) {
  namespace fs = std::filesystem;
  PGOLF_CHECK(fs::is_regular_file(source), "the variant's source ", source.string(),
              " is not on disk (the packed code is made from the sources the binary was built from; run submit where "
              "they are, or rebuild the binary from where they are now)");
  PGOLF_CHECK(fs::is_directory(include_root / "pgolf"), "the pgolf headers are not in ", include_root.string(),
              " (the include folder the binary was built with)");
  auto read_text = [](const fs::path& p) {
    const auto b = read_file_bytes(p);
    return std::string(b.begin(), b.end());
  };
  CodePack pack;
  pack.variant = variant;
  std::set<std::string> seen;
  std::vector<std::string> todo;
  auto add = [&](const std::string& path, const std::string& text) {
    PackedFile f{path, text.size(), strip_comments(text)};
    for (auto& inc : pgolf_includes(f.stripped))
      if (seen.insert(inc).second) todo.push_back(inc);
    pack.files.push_back(std::move(f));
  };
  const std::string source_name = source.filename().string();
  add(source_name, read_text(source));
  if (!ablation_header.empty()) add("ablation_point.hpp", read_text(ablation_header));
  std::vector<PackedFile> headers;
  while (!todo.empty()) {
    const std::string inc = todo.back();
    todo.pop_back();
    const fs::path p = include_root / inc;
    PGOLF_CHECK(fs::is_regular_file(p), "the source includes ", inc, " but ", p.string(), " does not exist");
    add("include/" + inc, read_text(p));
  }
  std::sort(pack.files.begin() + (ablation_header.empty() ? 1 : 2), pack.files.end(),
            [](const PackedFile& a, const PackedFile& b) { return a.path < b.path; });
  pack.files.push_back({"CMakeLists.txt", 0, unpacked_cmakelists(variant, source_name, !ablation_header.empty())});

  // The shell archive: directories first, then one here-document per file.
  std::set<std::string> dirs;
  for (const auto& f : pack.files)
    for (fs::path d = fs::path(f.path).parent_path(); !d.empty(); d = d.parent_path()) dirs.insert(d.string());
  std::string shar;
  if (!dirs.empty()) {
    shar += "mkdir -p";
    for (const auto& d : dirs) shar += " " + d;
    shar += "\n";
  }
  for (const auto& f : pack.files) {
    pack.raw_bytes += f.raw_bytes;
    if (f.raw_bytes) pack.stripped_bytes += f.stripped.size();
    const std::string delim = detail::delimiter_for(f.stripped);
    shar += "cat >" + f.path + " <<'" + delim + "'\n" + f.stripped + delim + "\n";
  }
  pack.packed = detail::xz_encode(shar);
  pack.script = build_script(variant);
  return pack;
}

// The text of a .xz file, or an error saying it is corrupt (its CRC or structure does not hold).
inline std::string xz_decode(std::span<const std::uint8_t> bytes, const std::string& what) {
  lzma_stream strm = LZMA_STREAM_INIT;
  PGOLF_CHECK(lzma_stream_decoder(&strm, 1ull << 30, LZMA_CONCATENATED) == LZMA_OK, "xz: cannot start the decoder");
  std::string out;
  strm.next_in = bytes.data();
  strm.avail_in = bytes.size();
  std::vector<std::uint8_t> buf(1 << 16);
  lzma_ret rc = LZMA_OK;
  while (rc == LZMA_OK) {
    strm.next_out = buf.data();
    strm.avail_out = buf.size();
    rc = lzma_code(&strm, LZMA_FINISH);
    out.append(reinterpret_cast<const char*>(buf.data()), buf.size() - strm.avail_out);
  }
  lzma_end(&strm);
  PGOLF_CHECK(rc == LZMA_STREAM_END, what, " is corrupt: xz decoding failed (liblzma code ", int(rc),
              rc == LZMA_DATA_ERROR ? ", data error" : rc == LZMA_BUF_ERROR ? ", truncated" : "",
              rc == LZMA_FORMAT_ERROR ? ", not an .xz file" : "", ")");
  return out;
}

}  // namespace pgolf::app
