// Reader for the golden files written by make_golden.py and make_prism_golden.py: <case>.manifest
// (spec line, batch, seq, losses, one "param NAME COUNT" line per tensor in pgolf's table order) and
// <case>.bin (int32 inputs, int32 targets, float64 weights, float64 gradients).
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
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

// Reads <base>.manifest: the spec line and the "param NAME COUNT" lines (pgolf's table order) for
// every kind of golden; any other "key ..." line goes to other(key, rest of the line).
template <class F>
void read_manifest(const std::string& base, std::string& spec, std::vector<std::pair<std::string, std::size_t>>& params,
                   F&& other) {
  std::ifstream manifest(base + ".manifest");
  REQUIRE(manifest.good());
  std::string line;
  while (std::getline(manifest, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream is(line);
    std::string key;
    is >> key;
    if (key == "spec") {
      std::getline(is >> std::ws, spec);
    } else if (key == "param") {
      std::string n;
      std::size_t k = 0;
      is >> n >> k;
      params.emplace_back(n, k);
    } else {
      other(key, is);
    }
  }
}

inline double read_number(std::istream& is) {
  std::string v;
  is >> v;
  return std::strtod(v.c_str(), nullptr);
}

inline Golden load_golden(const std::string& name) {
  const std::string base = std::string(PGOLF_GOLDEN_DIR) + "/" + name;
  Golden g;
  read_manifest(base, g.spec, g.params, [&g](const std::string& key, std::istream& is) {
    if (key == "batch") is >> g.batch;
    else if (key == "seq") is >> g.seq;
    else if (key == "loss") g.loss = read_number(is);
    else g.values[key] = read_number(is);
  });
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

// Copies the golden weights into the model, checking that names and sizes follow its table.
template <class Model>
void load_golden_weights(const Golden& g, Model& model) {
  REQUIRE(g.params.size() == Model::param_table.size());
  std::size_t at = 0;
  for (std::size_t i = 0; i < g.params.size(); ++i) {
    REQUIRE(g.params[i].first == Model::param_table[i].name.view());
    REQUIRE(g.params[i].second == Model::param_table[i].numel());
    std::copy(g.weights.begin() + std::ptrdiff_t(at), g.weights.begin() + std::ptrdiff_t(at + g.params[i].second),
              model.params().data() + Model::param_table[i].offset);
    at += g.params[i].second;
  }
}

// Per tensor: the L2 norm of (model gradient - golden gradient) and of the golden gradient.
struct GradientError {
  std::string name;
  double error = 0, norm = 0;
};
template <class Model>
std::vector<GradientError> golden_gradient_errors(const Golden& g, const Model& model) {
  std::vector<GradientError> out;
  std::size_t at = 0;
  for (std::size_t i = 0; i < g.params.size(); ++i) {
    double num = 0, den = 0;
    for (std::size_t j = 0; j < g.params[i].second; ++j) {
      const double e = model.grads()[Model::param_table[i].offset + j] - g.grads[at + j];
      num += e * e;
      den += g.grads[at + j] * g.grads[at + j];
    }
    at += g.params[i].second;
    out.push_back({g.params[i].first, std::sqrt(num), std::sqrt(den)});
  }
  return out;
}

}  // namespace pgolf::test
