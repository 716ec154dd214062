// Reader for the golden files written by make_golden.py and make_prism_golden.py: <case>.manifest
// (spec line, batch, seq, losses, one "param NAME COUNT" line per tensor in pgolf's table order) and
// <case>.bin (int32 inputs, int32 targets, float64 weights, float64 gradients).
#pragma once

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace pgolf::test {

struct Golden {
  std::string spec;
  int batch = 0, seq = 0;
  double loss = 0;
  std::map<std::string, double> values;  // every other "key number" line (ce, aux, ...)
  std::vector<std::pair<std::string, std::size_t>> params;
  std::vector<std::int32_t> x, y;
  std::vector<double> weights, grads;
};

inline Golden load_golden(const std::string& name) {
  const std::string base = std::string(PGOLF_GOLDEN_DIR) + "/" + name;
  Golden g;
  std::ifstream manifest(base + ".manifest");
  REQUIRE(manifest.good());
  std::string line;
  while (std::getline(manifest, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream is(line);
    std::string key;
    is >> key;
    if (key == "spec") {
      std::getline(is >> std::ws, g.spec);
    } else if (key == "batch") {
      is >> g.batch;
    } else if (key == "seq") {
      is >> g.seq;
    } else if (key == "loss") {
      std::string v;
      is >> v;
      g.loss = std::strtod(v.c_str(), nullptr);
    } else if (key == "param") {
      std::string n;
      std::size_t k = 0;
      is >> n >> k;
      g.params.emplace_back(n, k);
    } else {
      std::string v;
      is >> v;
      g.values[key] = std::strtod(v.c_str(), nullptr);
    }
  }
  std::size_t total = 0;
  for (const auto& p : g.params) total += p.second;
  const std::size_t N = std::size_t(g.batch) * g.seq;
  std::ifstream bin(base + ".bin", std::ios::binary);
  REQUIRE(bin.good());
  g.x.resize(N), g.y.resize(N), g.weights.resize(total), g.grads.resize(total);
  bin.read(reinterpret_cast<char*>(g.x.data()), std::streamsize(N * 4));
  bin.read(reinterpret_cast<char*>(g.y.data()), std::streamsize(N * 4));
  bin.read(reinterpret_cast<char*>(g.weights.data()), std::streamsize(total * 8));
  bin.read(reinterpret_cast<char*>(g.grads.data()), std::streamsize(total * 8));
  REQUIRE(bin.gcount() == std::streamsize(total * 8));
  REQUIRE(bin.peek() == std::char_traits<char>::eof());
  return g;
}

}  // namespace pgolf::test
