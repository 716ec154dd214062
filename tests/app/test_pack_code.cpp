// The packed code of a submission (app/pack_code.hpp): the comment stripper against the literals
// that look like comments, the include closure, and the shell archive unpacked by sh back into the
// stripped files exactly.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <vector>
#include <string>

#include "pgolf/app/pack_code.hpp"

namespace {

namespace fs = std::filesystem;
using pgolf::app::strip_comments;

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}

std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

struct TempDir {
  fs::path path = fs::temp_directory_path() / ("pgolf-pack-test-" + std::to_string(::getpid()));
  TempDir() { fs::remove_all(path), fs::create_directories(path); }
  ~TempDir() { fs::remove_all(path); }
};

}  // namespace

TEST_CASE("strip_comments removes comments and blank lines and never touches a literal", "[forward]") {
  const char* cases[][2] = {
      {"int a;  // tail\n\n\n  int b; \n", "int a;\n  int b;\n"},
      {"// only a comment\nx\n", "x\n"},
      {"int/**/x;\n", "int x;\n"},                              // a block comment is a space: tokens stay apart
      {"a /* multi\nline */ b\n", "a   b\n"},
      {"s = \"// not a comment /* nor this */\";\n", "s = \"// not a comment /* nor this */\";\n"},
      {"s = \"esc \\\" // still string\"; // gone\n", "s = \"esc \\\" // still string\";\n"},
      {"c = '\"'; d = '/'; e = '\\''; // gone\n", "c = '\"'; d = '/'; e = '\\'';\n"},
      {"r = R\"(a // b /* c )\";\n", "r = R\"(a // b /* c )\";\n"},
      {"r = R\"x(quote )\" inside // kept\n)x\"; // gone\n", "r = R\"x(quote )\" inside // kept\n)x\";\n"},
      {"u = u8R\"(/*)\"; L'x'; u8\"//\";\n", "u = u8R\"(/*)\"; L'x'; u8\"//\";\n"},
      {"n = 1'000'000; // sep\nm = 0x1p+3; f = 1e-5; c = 'a';\n", "n = 1'000'000;\nm = 0x1p+3; f = 1e-5; c = 'a';\n"},
      {"// continued \\\n  comment line\ncode\n", "code\n"},
      {"#define M(x) \\\n  ((x) + 1) // tail\n#include \"pgolf/a.hpp\"  /* why */\n",
       "#define M(x) \\\n  ((x) + 1)\n#include \"pgolf/a.hpp\"\n"},
      {"#define N \\\n\nint k;\n", "#define N \\\n\nint k;\n"},  // the blank line ends the macro: kept
      {"no newline at end // c", "no newline at end\n"},
  };
  for (const auto& c : cases) {
    INFO(c[0]);
    CHECK(strip_comments(c[0]) == c[1]);
  }
  CHECK_THROWS_WITH(strip_comments("a /* open"), Catch::Contains("unterminated /* comment"));
  CHECK_THROWS_WITH(strip_comments("s = \"open\n"), Catch::Contains("unterminated string literal"));
  CHECK_THROWS_WITH(strip_comments("r = R\"(open"), Catch::Contains("unterminated raw string literal"));
}

TEST_CASE("strip_comments is idempotent on every library header and keeps every #include", "[forward]") {
  int files = 0;
  for (const auto& e : fs::recursive_directory_iterator(fs::path(PGOLF_INCLUDE_ROOT) / "pgolf")) {
    if (!e.is_regular_file()) continue;
    const std::string text = read(e.path()), once = strip_comments(text);
    INFO(e.path().string());
    CHECK(strip_comments(once) == once);
    CHECK(once.size() < text.size());
    CHECK(once.find("\n\n") == std::string::npos);
    // Every #include of a library header in the original (each at the start of a line) survives, in order.
    std::vector<std::string> raw;
    const std::regex inc("#include [<\"](pgolf/[^\">]+)[\">].*");
    std::istringstream lines(text);
    std::smatch m;
    for (std::string line; std::getline(lines, line);)
      if (std::regex_match(line, m, inc)) raw.push_back(m[1]);
    CHECK(pgolf::app::pgolf_includes(once) == raw);
    ++files;
  }
  CHECK(files > 50);
}

TEST_CASE("pgolf_includes finds the library's includes in either spelling and nothing else", "[forward]") {
  const std::string s = strip_comments(
      "#include <vector>\n#include \"pgolf/core/error.hpp\"\n  #  include <pgolf/app/main.hpp>\n"
      "// #include \"pgolf/commented.hpp\"\n#include PGOLF_ABLATION_HEADER\n#include \"local.hpp\"\n");
  CHECK(pgolf::app::pgolf_includes(s) == std::vector<std::string>{"pgolf/core/error.hpp", "pgolf/app/main.hpp"});
}

TEST_CASE("pack_code packs the include closure only, and sh unpacks it into the stripped files", "[forward]") {
  TempDir t;
  write(t.path / "src" / "v.cpp", "// variant\n#include <pgolf/a.hpp>\nint main() { return A + 0; }\n");
  write(t.path / "inc" / "pgolf" / "a.hpp", "#pragma once\n#include \"pgolf/sub/b.hpp\"\n#include <cstdio>\nconstexpr int A = B;  // a\n");
  write(t.path / "inc" / "pgolf" / "sub" / "b.hpp", "#pragma once\n/* b */\nconstexpr int B = 1;\n@\n");
  write(t.path / "inc" / "pgolf" / "unused.hpp", "#pragma once\nint unused;\n");
  const auto pack = pgolf::app::pack_code("v", t.path / "src" / "v.cpp", t.path / "inc");
  REQUIRE(pack.files.size() == 4);  // v.cpp, a.hpp, b.hpp, CMakeLists.txt: not unused.hpp
  CHECK(pack.files[0].path == "v.cpp");
  CHECK(pack.files[1].path == "include/pgolf/a.hpp");
  CHECK(pack.files[2].path == "include/pgolf/sub/b.hpp");
  CHECK(pack.files[3].path == "CMakeLists.txt");
  CHECK(pack.raw_bytes == fs::file_size(t.path / "src" / "v.cpp") + fs::file_size(t.path / "inc" / "pgolf" / "a.hpp") +
                              fs::file_size(t.path / "inc" / "pgolf" / "sub" / "b.hpp"));
  CHECK(pack.stripped_bytes == pack.files[0].stripped.size() + pack.files[1].stripped.size() + pack.files[2].stripped.size());
  CHECK(pack.counted_bytes() == pack.packed.size() + pack.script.size());
  CHECK(pack.script.find("xz -dc") != std::string::npos);

  // The archive, unpacked by sh, gives back each stripped file byte for byte (b.hpp has a line "@").
  const std::string shar = pgolf::app::xz_decode(pack.packed, "test pack");
  write(t.path / "out" / "unpack.sh", shar);
  REQUIRE(std::system(("cd '" + (t.path / "out").string() + "' && sh unpack.sh").c_str()) == 0);
  for (const auto& f : pack.files) {
    INFO(f.path);
    CHECK(read(t.path / "out" / f.path) == f.stripped);
  }
  CHECK(!fs::exists(t.path / "out" / "include" / "pgolf" / "unused.hpp"));

  // An altered pack is refused by its CRC, not unpacked into garbage.
  auto bad = pack.packed;
  bad[bad.size() / 2] ^= 0x01;
  CHECK_THROWS_WITH(pgolf::app::xz_decode(bad, "code.shar.xz"), Catch::Contains("code.shar.xz is corrupt"));

  // An ablation point: its generated header ships as ablation_point.hpp, its includes join the closure,
  // and the generated CMakeLists.txt names it as PGOLF_ABLATION_HEADER.
  write(t.path / "gen" / "point.hpp", "#include \"pgolf/unused.hpp\"\nconstexpr int P = 2;\n");
  const auto point = pgolf::app::pack_code("v", t.path / "src" / "v.cpp", t.path / "inc", t.path / "gen" / "point.hpp");
  REQUIRE(point.files.size() == 6);
  CHECK(point.files[1].path == "ablation_point.hpp");
  CHECK(point.files[4].path == "include/pgolf/unused.hpp");
  CHECK(point.files[5].stripped.find("PGOLF_ABLATION_HEADER=\"${CMAKE_SOURCE_DIR}/ablation_point.hpp\"") != std::string::npos);
  CHECK(pack.files[3].stripped.find("PGOLF_ABLATION_HEADER") == std::string::npos);

  CHECK_THROWS_WITH(pgolf::app::pack_code("v", t.path / "src" / "gone.cpp", t.path / "inc"),
                    Catch::Contains("gone.cpp is not on disk"));
  write(t.path / "src" / "w.cpp", "#include \"pgolf/missing.hpp\"\n");
  CHECK_THROWS_WITH(pgolf::app::pack_code("w", t.path / "src" / "w.cpp", t.path / "inc"),
                    Catch::Contains("includes pgolf/missing.hpp but"));
}
