// The parameter table: one row per parameter tensor of a model, computed at compile time. It is the
// single source of truth for where a tensor lives in the flat parameter buffer and how the rest of
// the library treats it (initialisation, optimizer group, export policy), so optimizers and the
// exporter never match names at run time.
#pragma once

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "pgolf/core/error.hpp"
#include "pgolf/core/fixed_string.hpp"
#include "pgolf/core/rng.hpp"

namespace pgolf {

using ParamName = FixedString<64>;

enum class InitKind {
  zeros,
  ones,
  constant,      // every element = value
  normal,        // N(0, value^2)
  uniform,       // U(-value, value)
  uniform_fan_in,  // U(-1/sqrt(value), 1/sqrt(value)), value = fan_in (PyTorch's Linear default);
                   // the square root is taken at run time so the table stays a constant expression
                   // for every compiler (nvcc's std::sqrt is not constexpr)
  mix_identity,  // shape [2, n]: first row 1, second row 0 (resid_mix)
  orthogonal,    // value * a random matrix with orthonormal rows (rows <= cols) or columns (the
                 // records' orthogonal_ init): Gram-Schmidt of N(0, 1) draws, signs as QR's with R's
                 // diagonal made positive
};

struct Init {
  InitKind kind = InitKind::zeros;
  double value = 0.0;
};

enum class OptimGroup {
  muon_matrix,  // 2-D block weights: Muon
  adam_embed,   // token embedding (tied head): Adam, embedding learning rate
  adam_head,    // untied output head: Adam, head learning rate
  adam_scalar,  // vectors and control tensors: Adam, scalar learning rate
};

enum class ExportPolicy {
  int8_per_row,      // > 65,536 elements and 2-D: int8 per row with an fp16 scale per row
  int8_per_tensor,   // > 65,536 elements, not 2-D: int8 with one fp32 scale
  float16,           // small tensors kept as fp16
  float32_control,   // control tensors (scales, gains, mixes, skip weights) kept in fp32
};

// Who owns a tensor: the whole model (global), one physical block (every virtual layer that runs the
// block reads it), or one virtual layer (a per-use copy: the per-layer scalars of a model that shares
// only its matrices, per-virtual-layer adapters).
enum class Scope { global, block, layer };

struct ParamInfo {
  ParamName name;
  std::size_t offset = 0;  // into the flat parameter buffer, in elements
  int rows = 0;            // shape [rows, cols]; a vector has cols == 1 and rank == 1
  int cols = 1;
  int rank = 1;
  Init init{};
  OptimGroup group = OptimGroup::adam_scalar;
  ExportPolicy export_policy = ExportPolicy::float32_control;
  int block = -1;  // owning physical block (Scope::block), else -1
  Scope scope = Scope::global;
  int layer = -1;  // owning virtual layer (Scope::layer), else -1

  constexpr std::size_t numel() const { return std::size_t(rows) * std::size_t(cols); }
};

// The reference's export rule (quantize_state_dict_int8): big matrices are quantised, small control
// tensors stay fp32, any other small tensor is stored fp16.
constexpr ExportPolicy reference_export_policy(std::size_t numel, int rank, bool control) {
  if (numel > 65536) return rank == 2 ? ExportPolicy::int8_per_row : ExportPolicy::int8_per_tensor;
  return control ? ExportPolicy::float32_control : ExportPolicy::float16;
}

// PyTorch's default Linear init (kaiming_uniform with a = sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
constexpr Init torch_linear_init(int fan_in) { return Init{InitKind::uniform_fan_in, double(fan_in)}; }

// Builds a table at compile time: rows in order, each tensor at the next offset, export policy by the
// reference's rule. add() returns the row's index.
template <std::size_t N>
struct ParamTableBuilder {
  std::array<ParamInfo, N>& table;
  std::size_t offset = 0, row = 0;

  constexpr std::size_t add(ParamName name, int rows, int cols, int rank, Init init, OptimGroup group, bool control,
                            int block) {
    if (row == N) throw "parameter table: more rows than declared";
    ParamInfo& p = table[row];
    p.name = name;
    p.offset = offset;
    p.rows = rows;
    p.cols = cols;
    p.rank = rank;
    p.init = init;
    p.group = group;
    p.export_policy = reference_export_policy(p.numel(), rank, control);
    p.block = block;
    p.scope = block >= 0 ? Scope::block : Scope::global;
    offset += p.numel();
    return row++;
  }
  // A row owned by a scope: index is the physical block (Scope::block) or virtual layer (Scope::layer).
  constexpr std::size_t add_scoped(ParamName name, int rows, int cols, int rank, Init init, OptimGroup group,
                                   bool control, Scope scope, int index) {
    const std::size_t r = add(name, rows, cols, rank, init, group, control, scope == Scope::block ? index : -1);
    table[r].scope = scope;
    table[r].layer = scope == Scope::layer ? index : -1;
    return r;
  }
  constexpr void finish() const {
    if (row != N) throw "parameter table: fewer rows than declared";
  }
};

template <std::size_t N>
constexpr std::size_t table_size(const std::array<ParamInfo, N>& table) {
  std::size_t total = 0;
  for (const auto& p : table) total += p.numel();
  return total;
}

template <std::size_t N>
constexpr const ParamInfo* find_param(const std::array<ParamInfo, N>& table, std::string_view name) {
  for (const auto& p : table)
    if (p.name.view() == name) return &p;
  return nullptr;
}

// The random stream of a tensor is a hash of its name, so a tensor draws the same values in every
// variant that has it, whatever else the table holds.
constexpr std::uint32_t name_stream(std::string_view name) {
  std::uint32_t h = 2166136261u;  // FNV-1a
  for (char c : name) {
    h ^= std::uint8_t(c);
    h *= 16777619u;
  }
  return h;
}

// Identifies a table's layout (names, shapes, offsets, export policies): checkpoints and artifacts
// carry it so that loading one into a different variant fails instead of scrambling weights.
template <std::size_t N>
constexpr std::uint64_t table_fingerprint(const std::array<ParamInfo, N>& table) {
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a, 64-bit
  auto mix = [&h](std::uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      h ^= (v >> (8 * i)) & 0xff;
      h *= 1099511628211ull;
    }
  };
  for (const auto& p : table) {
    for (char c : p.name.view()) mix(std::uint8_t(c));
    mix(p.offset);
    mix(std::uint64_t(p.rows));
    mix(std::uint64_t(p.cols));
    mix(std::uint64_t(p.rank));
    mix(std::uint64_t(p.export_policy));
  }
  return h;
}

// value * an orthogonal [rows, cols] matrix from N(0, 1) draws: the shorter side's vectors are
// orthonormalised by modified Gram-Schmidt (twice, for double precision orthogonality), which equals
// QR with R's diagonal positive.
template <class T>
void orthogonal_init(const ParamInfo& p, std::uint32_t stream, std::uint64_t seed, T* out) {
  const bool wide = p.rows <= p.cols;  // orthonormal rows; else orthonormal columns
  const int k = wide ? p.rows : p.cols, n = wide ? p.cols : p.rows;
  PGOLF_CHECK(k > 0, "parameter ", p.name.c_str(), ": orthogonal init of an empty tensor");
  std::vector<double> q(std::size_t(k) * std::size_t(n));  // k vectors of length n
  for (int a = 0; a < k; ++a)
    for (int e = 0; e < n; ++e) {
      const std::size_t flat = wide ? std::size_t(a) * std::size_t(p.cols) + std::size_t(e)
                                    : std::size_t(e) * std::size_t(p.cols) + std::size_t(a);
      q[std::size_t(a) * std::size_t(n) + std::size_t(e)] = normal01(seed, stream, flat);
    }
  for (int a = 0; a < k; ++a) {
    double* qa = q.data() + std::size_t(a) * std::size_t(n);
    for (int pass = 0; pass < 2; ++pass)
      for (int b = 0; b < a; ++b) {
        const double* qb = q.data() + std::size_t(b) * std::size_t(n);
        double dot = 0;
        for (int e = 0; e < n; ++e) dot += qa[e] * qb[e];
        for (int e = 0; e < n; ++e) qa[e] -= dot * qb[e];
      }
    double norm = 0;
    for (int e = 0; e < n; ++e) norm += qa[e] * qa[e];
    PGOLF_CHECK(norm > 0, "parameter ", p.name.c_str(), ": orthogonal init drew dependent vectors");
    const double inv = 1.0 / std::sqrt(norm);
    for (int e = 0; e < n; ++e) qa[e] *= inv;
  }
  for (int a = 0; a < k; ++a)
    for (int e = 0; e < n; ++e) {
      const std::size_t flat = wide ? std::size_t(a) * std::size_t(p.cols) + std::size_t(e)
                                    : std::size_t(e) * std::size_t(p.cols) + std::size_t(a);
      out[flat] = T(p.init.value * q[std::size_t(a) * std::size_t(n) + std::size_t(e)]);
    }
}

// Fills a tensor from its Init with draws keyed by (seed, stream, element index).
template <class T>
void init_param(const ParamInfo& p, std::uint32_t stream, std::uint64_t seed, T* out) {
  const std::size_t n = p.numel();
  switch (p.init.kind) {
    case InitKind::zeros:
      for (std::size_t i = 0; i < n; ++i) out[i] = T(0);
      break;
    case InitKind::ones:
      for (std::size_t i = 0; i < n; ++i) out[i] = T(1);
      break;
    case InitKind::constant:
      for (std::size_t i = 0; i < n; ++i) out[i] = T(p.init.value);
      break;
    case InitKind::normal:
      for (std::size_t i = 0; i < n; ++i) out[i] = T(p.init.value * normal01(seed, stream, i));
      break;
    case InitKind::uniform:
      for (std::size_t i = 0; i < n; ++i)
        out[i] = T(p.init.value * (2.0 * uniform01(seed, stream, i) - 1.0));
      break;
    case InitKind::uniform_fan_in: {
      const double bound = 1.0 / std::sqrt(p.init.value);
      for (std::size_t i = 0; i < n; ++i) out[i] = T(bound * (2.0 * uniform01(seed, stream, i) - 1.0));
    }
      break;
    case InitKind::mix_identity:
      PGOLF_CHECK(p.rows == 2, "parameter ", p.name.c_str(), ": mix_identity init needs 2 rows");
      for (int c = 0; c < p.cols; ++c) {
        out[c] = T(1);
        out[p.cols + c] = T(0);
      }
      break;
    case InitKind::orthogonal:
      orthogonal_init(p, stream, seed, out);
      break;
  }
}

template <class T, std::size_t N>
void init_params(const std::array<ParamInfo, N>& table, std::uint64_t seed, std::span<T> buffer) {
  PGOLF_CHECK(buffer.size() == table_size(table), "parameter buffer holds ", buffer.size(),
              " elements, the table needs ", table_size(table));
  for (std::size_t i = 0; i < N; ++i)
    init_param(table[i], name_stream(table[i].name.view()), seed, buffer.data() + table[i].offset);
}

constexpr std::string_view to_string(OptimGroup g) {
  switch (g) {
    case OptimGroup::muon_matrix: return "muon_matrix";
    case OptimGroup::adam_embed: return "adam_embed";
    case OptimGroup::adam_head: return "adam_head";
    case OptimGroup::adam_scalar: return "adam_scalar";
  }
  return "?";
}

constexpr std::string_view to_string(Scope s) {
  switch (s) {
    case Scope::global: return "global";
    case Scope::block: return "block";
    case Scope::layer: return "layer";
  }
  return "?";
}

constexpr std::string_view to_string(ExportPolicy e) {
  switch (e) {
    case ExportPolicy::int8_per_row: return "int8_per_row";
    case ExportPolicy::int8_per_tensor: return "int8_per_tensor";
    case ExportPolicy::float16: return "float16";
    case ExportPolicy::float32_control: return "float32_control";
  }
  return "?";
}

}  // namespace pgolf
