// safetensors (https://github.com/huggingface/safetensors), the format PyTorch users exchange
// weights in, so a pgolf model loads into the PyTorch reference and a reference state dict loads
// into pgolf:
//
//   offset  bytes  field
//        0      8  N, the header length, unsigned little-endian
//        8      N  a JSON object (UTF-8, may be padded with spaces): per tensor
//                    "name": {"dtype": "F32", "shape": [rows, cols], "data_offsets": [begin, end]}
//                  and an optional "__metadata__": {"key": "string value", ...}
//      8+N      -  the data buffer; offsets are relative to its start, little-endian, row-major
//
// The JSON is read and written with nlohmann-json. Reading checks everything the format promises
// before a value is used: the header length against the file, the JSON, every entry's fields and
// types, dtypes the format knows, shapes whose byte size equals the offsets' span, offsets inside
// the buffer, and a buffer tiled by the tensors exactly (no overlap, no gap, nothing after), each
// error naming the tensor or the field.
//
// The table codec (encode_safetensors / decode_safetensors) maps a parameter table onto state-dict
// entries: one tensor per row under its name, shape [rows] for a vector and [rows, cols] for a
// matrix (pgolf's GPT tables already use the reference's state-dict names and layouts:
// export/state_dict.hpp decides when a model is the reference's). Writing stores F32 or F64;
// reading takes F64, F32, F16 and BF16 and converts to the model's scalar.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "pgolf/core/error.hpp"
#include "pgolf/core/half.hpp"
#include "pgolf/nn/param_table.hpp"

namespace pgolf {

// Every dtype of the format (so any valid file parses and its offsets are checked); the model
// codec reads the four floating ones below and names any other.
enum class StDtype { F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL, F8_E4M3, F8_E5M2, unknown };

inline constexpr std::pair<std::string_view, StDtype> kStDtypes[] = {
    {"F64", StDtype::F64},   {"F32", StDtype::F32},   {"F16", StDtype::F16},         {"BF16", StDtype::BF16},
    {"I64", StDtype::I64},   {"I32", StDtype::I32},   {"I16", StDtype::I16},         {"I8", StDtype::I8},
    {"U64", StDtype::U64},   {"U32", StDtype::U32},   {"U16", StDtype::U16},         {"U8", StDtype::U8},
    {"BOOL", StDtype::BOOL}, {"F8_E4M3", StDtype::F8_E4M3}, {"F8_E5M2", StDtype::F8_E5M2}};

constexpr StDtype st_dtype_of(std::string_view s) {
  for (const auto& [name, d] : kStDtypes)
    if (name == s) return d;
  return StDtype::unknown;
}
constexpr std::string_view to_string(StDtype d) {
  for (const auto& [name, v] : kStDtypes)
    if (v == d) return name;
  return "?";
}
constexpr std::size_t st_dtype_bytes(StDtype d) {
  switch (d) {
    case StDtype::F64: case StDtype::I64: case StDtype::U64: return 8;
    case StDtype::F32: case StDtype::I32: case StDtype::U32: return 4;
    case StDtype::F16: case StDtype::BF16: case StDtype::I16: case StDtype::U16: return 2;
    case StDtype::I8: case StDtype::U8: case StDtype::BOOL: case StDtype::F8_E4M3: case StDtype::F8_E5M2: return 1;
    case StDtype::unknown: return 0;
  }
  return 0;
}
constexpr bool st_dtype_readable(StDtype d) {
  return d == StDtype::F64 || d == StDtype::F32 || d == StDtype::F16 || d == StDtype::BF16;
}

// The safetensors reference implementation refuses headers above 100 MB; so does this reader, so a
// corrupt length cannot ask for an absurd allocation.
inline constexpr std::uint64_t kSafetensorsMaxHeader = 100'000'000;

struct StTensor {
  std::string name;
  StDtype dtype = StDtype::unknown;
  std::vector<std::int64_t> shape;
  std::size_t begin = 0, end = 0;  // into the data buffer
  std::size_t numel() const {
    std::size_t n = 1;
    for (auto d : shape) n *= std::size_t(d);
    return n;
  }
};

struct StFile {
  std::map<std::string, std::string> metadata;
  std::vector<StTensor> tensors;       // in data order
  std::span<const std::uint8_t> data;  // the buffer (a view into the bytes parsed)
  const StTensor* find(std::string_view name) const {
    for (const auto& t : tensors)
      if (t.name == name) return &t;
    return nullptr;
  }
};

inline std::string st_shape_string(std::span<const std::int64_t> shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Parses and checks a whole file (see the top of this header). `what` names the source.
inline StFile parse_safetensors(std::span<const std::uint8_t> bytes, const std::string& what = "safetensors file") {
  using nlohmann::json;
  PGOLF_CHECK(bytes.size() >= 8, what, " is truncated: ", bytes.size(),
              " bytes, shorter than the 8-byte header length field");
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[std::size_t(i)];
  PGOLF_CHECK(n <= bytes.size() - 8, what, ": header length field says ", n, " bytes, longer than the ",
              bytes.size() - 8, " bytes after it (a truncated file, or not a safetensors file)");
  PGOLF_CHECK(n <= kSafetensorsMaxHeader, what, ": header length field says ", n, " bytes, above the format's limit of ",
              kSafetensorsMaxHeader);
  PGOLF_CHECK(n >= 2 && bytes[8] == '{', what, ": the header (", n, " bytes) is not a JSON object (it must start with '{')");
  const auto* h = reinterpret_cast<const char*>(bytes.data() + 8);
  // nlohmann keeps the last of two equal keys; the format forbids them, so the parser's callback
  // collects the top-level keys and a repeat is an error.
  std::set<std::string> keys;
  std::string repeated;
  const json::parser_callback_t cb = [&](int depth, json::parse_event_t ev, json& parsed) {
    if (ev == json::parse_event_t::key && depth == 1 && !keys.insert(parsed.get<std::string>()).second)
      repeated = parsed.get<std::string>();
    return true;
  };
  json header;
  try {
    header = json::parse(h, h + n, cb);
  } catch (const json::exception& e) {
    PGOLF_FAIL(what, ": the header is not valid JSON (", e.what(), ")");
  }
  PGOLF_CHECK(header.is_object(), what, ": the header is not a JSON object");
  PGOLF_CHECK(repeated.empty(), what, ": the header names \"", repeated, "\" twice");

  StFile f;
  f.data = bytes.subspan(8 + std::size_t(n));
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      PGOLF_CHECK(v.is_object(), what, ": __metadata__ is not an object of strings");
      for (auto m = v.begin(); m != v.end(); ++m) {
        PGOLF_CHECK(m.value().is_string(), what, ": __metadata__ field \"", m.key(), "\" is not a string");
        f.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    PGOLF_CHECK(v.is_object(), what, ": tensor ", name, ": its entry is not an object");
    for (auto k = v.begin(); k != v.end(); ++k)
      PGOLF_CHECK(k.key() == "dtype" || k.key() == "shape" || k.key() == "data_offsets", what, ": tensor ", name,
                  ": unknown field \"", k.key(), "\"");
    StTensor t;
    t.name = name;
    PGOLF_CHECK(v.contains("dtype") && v["dtype"].is_string(), what, ": tensor ", name, ": field dtype is missing or not a string");
    const std::string dtype = v["dtype"].get<std::string>();
    t.dtype = st_dtype_of(dtype);
    PGOLF_CHECK(t.dtype != StDtype::unknown, what, ": tensor ", name, ": dtype \"", dtype,
                "\" is not a safetensors dtype");
    PGOLF_CHECK(v.contains("shape") && v["shape"].is_array(), what, ": tensor ", name, ": field shape is missing or not an array");
    std::size_t numel = 1;
    for (const json& d : v["shape"]) {
      PGOLF_CHECK(d.is_number_unsigned(), what, ": tensor ", name, ": field shape holds ", d.dump(),
                  ", not a whole number >= 0");
      const std::uint64_t dim = d.get<std::uint64_t>();
      PGOLF_CHECK(dim == 0 || numel <= std::numeric_limits<std::size_t>::max() / 8 / dim, what, ": tensor ", name,
                  ": field shape ", v["shape"].dump(), " overflows");
      numel *= std::size_t(dim);
      t.shape.push_back(std::int64_t(dim));
    }
    PGOLF_CHECK(v.contains("data_offsets") && v["data_offsets"].is_array() && v["data_offsets"].size() == 2 &&
                    v["data_offsets"][0].is_number_unsigned() && v["data_offsets"][1].is_number_unsigned(),
                what, ": tensor ", name, ": field data_offsets is missing or not two whole numbers [begin, end]");
    const auto b = v["data_offsets"][0].get<std::uint64_t>(), e = v["data_offsets"][1].get<std::uint64_t>();
    PGOLF_CHECK(b <= e, what, ": tensor ", name, ": field data_offsets [", b, ", ", e, "] ends before it begins");
    PGOLF_CHECK(e <= f.data.size(), what, ": tensor ", name, ": field data_offsets [", b, ", ", e,
                "] lies outside the data buffer (", f.data.size(), " bytes)");
    PGOLF_CHECK(e - b == numel * st_dtype_bytes(t.dtype), what, ": tensor ", name, ": field data_offsets spans ", e - b,
                " bytes, its shape ", st_shape_string(t.shape), " of ", dtype, " needs ", numel * st_dtype_bytes(t.dtype));
    t.begin = std::size_t(b), t.end = std::size_t(e);
    f.tensors.push_back(std::move(t));
  }
  // The tensors tile the buffer: sorted by their offsets, each begins where the one before ended
  // (an earlier begin is an overlap, a later one a gap), and the last ends at the buffer's end.
  std::stable_sort(f.tensors.begin(), f.tensors.end(), [](const StTensor& a, const StTensor& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  std::size_t at = 0;
  const StTensor* prev = nullptr;
  for (const auto& t : f.tensors) {
    PGOLF_CHECK(t.begin >= at, what, ": tensor ", t.name, ": field data_offsets [", t.begin, ", ", t.end,
                "] overlaps tensor ", prev ? prev->name : std::string("?"), " (which ends at ", at, ")");
    PGOLF_CHECK(t.begin == at, what, ": tensor ", t.name, ": field data_offsets [", t.begin, ", ", t.end,
                "] leaves a gap of ", t.begin - at, " bytes after ", prev ? "tensor " + prev->name : std::string("the header"),
                " (the tensors must be contiguous)");
    at = t.end;
    prev = &t;
  }
  PGOLF_CHECK(at == f.data.size(), what, ": the data buffer holds ", f.data.size() - at,
              " bytes after the last tensor (", f.data.size(), " bytes, the tensors' data_offsets cover ", at, ")");
  return f;
}

// One tensor to write: its name, dtype (F32 or F64), shape and values.
template <class T>
struct StWrite {
  std::string name;
  std::vector<std::int64_t> shape;
  std::span<const T> values;
};

// Writes tensors in the given order, contiguous, and the metadata; the header is padded with
// spaces to a multiple of 8 bytes so the data buffer starts aligned (as the Python writer does).
template <class T>
std::vector<std::uint8_t> write_safetensors(std::span<const StWrite<T>> tensors, StDtype dtype,
                                            const std::map<std::string, std::string>& metadata) {
  PGOLF_CHECK(dtype == StDtype::F32 || dtype == StDtype::F64, "write_safetensors: dtype ", to_string(dtype),
              " is not written (F32 or F64)");
  using nlohmann::json;
  const std::size_t w = st_dtype_bytes(dtype);
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::size_t at = 0;
  for (const auto& t : tensors) {
    std::size_t numel = 1;
    for (auto d : t.shape) numel *= std::size_t(d);
    PGOLF_CHECK(numel == t.values.size(), "write_safetensors: tensor ", t.name, " has ", t.values.size(),
                " values, its shape ", st_shape_string(t.shape), " needs ", numel);
    PGOLF_CHECK(!header.contains(t.name), "write_safetensors: tensor ", t.name, " twice");
    header[t.name] = {{"dtype", std::string(to_string(dtype))}, {"shape", t.shape}, {"data_offsets", {at, at + numel * w}}};
    at += numel * w;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::vector<std::uint8_t> out(8 + text.size() + at);
  std::uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out[std::size_t(i)] = std::uint8_t(n >> (8 * i));
  std::memcpy(out.data() + 8, text.data(), text.size());
  std::uint8_t* d = out.data() + 8 + text.size();
  for (const auto& t : tensors)
    for (const T& x : t.values) {
      if (dtype == StDtype::F64) {
        const double v = double(x);
        std::memcpy(d, &v, 8);
      } else {
        const float v = float(x);
        std::memcpy(d, &v, 4);
      }
      d += w;
    }
  return out;
}

// A tensor's values converted to T (F64, F32, F16 or BF16; another dtype is an error naming it).
template <class T>
void read_st_values(const StFile& f, const StTensor& t, T* out, const std::string& what = "safetensors file") {
  PGOLF_CHECK(st_dtype_readable(t.dtype), what, ": tensor ", t.name, " has dtype ", to_string(t.dtype),
              "; pgolf reads F64, F32, F16 and BF16");
  const std::uint8_t* p = f.data.data() + t.begin;
  const std::size_t n = t.numel();
  for (std::size_t i = 0; i < n; ++i) {
    switch (t.dtype) {
      case StDtype::F64: {
        double v;
        std::memcpy(&v, p + 8 * i, 8);
        out[i] = T(v);
        break;
      }
      case StDtype::F32: {
        float v;
        std::memcpy(&v, p + 4 * i, 4);
        out[i] = T(v);
        break;
      }
      case StDtype::F16:
      case StDtype::BF16: {
        std::uint16_t b;
        std::memcpy(&b, p + 2 * i, 2);
        // bfloat16 is the top half of a float32.
        out[i] = T(t.dtype == StDtype::F16 ? half_bits_to_float(b) : std::bit_cast<float>(std::uint32_t(b) << 16));
        break;
      }
      default: break;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// A parameter table as a state dict

// How a table's tensors are named in the file. reference: the PyTorch reference's state dict (a
// model it can build); pgolf: pgolf's own table names, for a model the reference has no class for.
struct StateDictNaming {
  bool reference = false;
  std::string family;  // "reference_gpt", or pgolf's architecture kind
};

// A table row as a state-dict entry: the name, and the shape ([rows] for a vector, [rows, cols] for
// a matrix: the layouts of the reference's nn.Linear weights [out, in], embeddings [vocab, dim],
// resid_mix [2, dim], skip_weights [skips, dim]).
inline std::vector<std::int64_t> state_dict_shape(const ParamInfo& p) {
  if (p.rank == 1) return {std::int64_t(p.rows)};
  return {std::int64_t(p.rows), std::int64_t(p.cols)};
}

inline std::string fingerprint_hex(std::uint64_t v) {
  char buf[20];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// The metadata pgolf writes: "format": "pt" (what PyTorch writers put), and pgolf.* fields naming
// the variant, the table's fingerprint, the naming, and the parameter count.
template <std::size_t N>
std::map<std::string, std::string> safetensors_metadata(const std::array<ParamInfo, N>& table,
                                                        const StateDictNaming& naming, const std::string& variant) {
  return {{"format", "pt"},
          {"pgolf.variant", variant},
          {"pgolf.table_fingerprint", fingerprint_hex(table_fingerprint(table))},
          {"pgolf.naming", naming.reference ? "reference" : "pgolf"},
          {"pgolf.family", naming.family},
          {"pgolf.parameters", std::to_string(table_size(table))}};
}

template <class T, std::size_t N>
std::vector<std::uint8_t> encode_safetensors(const std::array<ParamInfo, N>& table, std::span<const T> params,
                                             StDtype dtype, const StateDictNaming& naming,
                                             const std::string& variant = "") {
  PGOLF_CHECK(params.size() == table_size(table), "encode_safetensors: ", params.size(), " parameters, the table needs ",
              table_size(table));
  std::vector<StWrite<T>> list;
  for (const auto& p : table)
    list.push_back({std::string(p.name.view()), state_dict_shape(p), params.subspan(p.offset, p.numel())});
  return write_safetensors<T>(std::span<const StWrite<T>>(list), dtype, safetensors_metadata(table, naming, variant));
}

struct SafetensorsInfo {
  std::size_t tensors = 0;
  std::map<std::string, std::string> metadata;
  std::map<std::string, std::size_t> dtypes;  // how many tensors of each dtype
};

// Reads a state dict into params: every table tensor must be present with its shape and a readable
// dtype, and the file must hold nothing else. A file pgolf wrote carries its table fingerprint,
// which must be this table's, and its family, which must be `expected`'s when given (two GPTs can
// share a table and compute different functions: the reference's and one with the LN scale). A
// file without pgolf's metadata (the reference's own) is taken on its names and shapes. Nothing is
// written into params unless every check passed.
template <class T, std::size_t N>
SafetensorsInfo decode_safetensors(std::span<const std::uint8_t> bytes, const std::array<ParamInfo, N>& table,
                                   std::span<T> params, const std::string& what = "safetensors file",
                                   const StateDictNaming* expected = nullptr) {
  PGOLF_CHECK(params.size() == table_size(table), "decode_safetensors: ", params.size(), " parameters, the table needs ",
              table_size(table));
  const StFile f = parse_safetensors(bytes, what);
  const auto variant = f.metadata.count("pgolf.variant") ? f.metadata.at("pgolf.variant") : std::string("?");
  std::vector<const StTensor*> found(N, nullptr);
  for (std::size_t i = 0; i < N; ++i) {
    const ParamInfo& p = table[i];
    found[i] = f.find(p.name.view());
    PGOLF_CHECK(found[i] != nullptr, what, ": tensor ", p.name.c_str(), " is missing (shape ",
                st_shape_string(state_dict_shape(p)), ")");
  }
  std::string extra;
  std::size_t extras = 0;
  for (const auto& t : f.tensors)
    if (find_param(table, t.name) == nullptr) {
      if (extras < 8) extra += (extras ? ", " : "") + t.name;
      ++extras;
    }
  PGOLF_CHECK(extras == 0, what, ": ", extras, extras == 1 ? " tensor is" : " tensors are", " not in this model: ", extra,
              extras > 8 ? ", ..." : "");
  for (std::size_t i = 0; i < N; ++i) {
    const auto expect = state_dict_shape(table[i]);
    PGOLF_CHECK(found[i]->shape == expect, what, ": tensor ", table[i].name.c_str(), " has shape ",
                st_shape_string(found[i]->shape), ", this model expects ", st_shape_string(expect));
    PGOLF_CHECK(st_dtype_readable(found[i]->dtype), what, ": tensor ", table[i].name.c_str(), " has dtype ",
                to_string(found[i]->dtype), "; pgolf reads F64, F32, F16 and BF16");
  }
  // pgolf's metadata, after the tensors (whose errors name them): the same names and shapes can
  // still be another variant's table (its export policies) or another function.
  if (const auto it = f.metadata.find("pgolf.table_fingerprint"); it != f.metadata.end())
    PGOLF_CHECK(it->second == fingerprint_hex(table_fingerprint(table)), what, " was written by a different pgolf variant (",
                variant, ": parameter-table fingerprint ", it->second, ", this model's is ",
                fingerprint_hex(table_fingerprint(table)), ")");
  // After the fingerprint: a file of another table has been refused by then.
  if (const auto it = f.metadata.find("pgolf.family"); it != f.metadata.end() && expected != nullptr)
    PGOLF_CHECK(it->second == expected->family, what, " holds a ", it->second, " model (", variant, "), this model is a ",
                expected->family, " (same tensors, a different function)");
  SafetensorsInfo info;
  info.tensors = f.tensors.size();
  info.metadata = f.metadata;
  for (std::size_t i = 0; i < N; ++i) {
    read_st_values(f, *found[i], params.data() + table[i].offset, what);
    ++info.dtypes[std::string(to_string(found[i]->dtype))];
  }
  return info;
}

// Whether bytes look like a safetensors file (a length, then a JSON object): what `eval` uses to
// tell one from a checkpoint or an artifact, whose first bytes are a magic.
inline bool looks_like_safetensors(std::span<const std::uint8_t> bytes) {
  return bytes.size() >= 10 && bytes[8] == '{';
}

}  // namespace pgolf
