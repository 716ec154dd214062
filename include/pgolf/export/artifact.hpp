// The exported model artifact: each parameter tensor encoded by its export policy from the
// parameter table (int8 per row, int8 per tensor, fp16, fp32 control), then the whole payload
// compressed. All fields little-endian; header (52 bytes, versions 1 and 2):
//
//   offset  bytes  field
//        0      8  magic "PGOLFART"
//        8      4  format version (1 or 2)
//       12      4  codec (0 none, 1 zlib, 2 zstd, 3 brotli, 4 brotli-shuffle, 5 lzma)
//       16      8  parameter-table fingerprint (table_fingerprint: names, shapes, offsets, policies)
//       24      8  payload size before compression
//       32      8  stored (compressed) payload size
//       40      4  CRC-32 of the stored payload
//       44      4  number of tensors
//       48      4  CRC-32 of bytes 0..47
//       52      -  stored payload
//
// Payload, version 1 (the reference's export; written whenever the export options are the defaults,
// so the baseline's artifact is unchanged), per tensor in table order: one byte with its export
// policy, then
//   int8_per_row:    rows fp16 scales, rows*cols int8 codes
//   int8_per_tensor: one fp32 scale, numel int8 codes
//   float16:         numel fp16 values
//   float32_control: numel fp32 values
// Version 2 (any other export options) records how each matrix was quantised. Per tensor: the
// policy byte as stored (int8_per_row also for a table float16 matrix that the options quantise), and
// for int8_per_row: quantiser id (quantize_rows.hpp: 0 int8-clip, 1 rowmax, 2 gptq-lite, 3 gptq),
// bits (2..8), the rank r of a low-rank (LQER) correction (0: none; at most 16), then rows fp16
// scales and rows*cols codes one per int8 byte (in [-2^(bits-1), 2^(bits-1) - 1]), and when r > 0
// (export/lqer.hpp): A's fp32 scale, rows*r INT2 codes of A, r*ceil(cols/32) fp16 group scales of B,
// r*cols INT4 codes of B. Other policies as in version 1.
// Loading checks everything (size, magic, version, both CRCs, fingerprint, sizes, policies, ids,
// code ranges) before a single weight is written, so a truncated or corrupted file is an error, never
// a model. The payload size is checked against the table's bound before anything is decompressed.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "pgolf/core/error.hpp"
#include "pgolf/core/file_io.hpp"
#include "pgolf/core/half.hpp"
#include "pgolf/export/compress.hpp"
#include "pgolf/export/gptq.hpp"
#include "pgolf/export/int8.hpp"
#include "pgolf/export/lqer.hpp"
#include "pgolf/export/options.hpp"
#include "pgolf/export/quantize_rows.hpp"
#include "pgolf/nn/param_table.hpp"

namespace pgolf {

inline constexpr char kArtifactMagic[8] = {'P', 'G', 'O', 'L', 'F', 'A', 'R', 'T'};
inline constexpr std::uint32_t kArtifactVersion = 2;        // the newest this build writes and reads
inline constexpr std::uint32_t kArtifactReferenceVersion = 1;  // the reference export's format
inline constexpr std::size_t kArtifactHeaderBytes = 52;

struct ArtifactInfo {
  Codec codec = Codec::none;
  std::size_t raw_bytes = 0;     // payload before compression
  std::size_t stored_bytes = 0;  // payload after compression
  std::size_t file_bytes = 0;    // header + stored payload: what counts against the size cap
  std::size_t tensors = 0;
  std::uint32_t version = 1;
};

// Per table row, H = sum x x^T / batches of the product input [cols, cols] (empty: none collected).
using TensorHessians = std::vector<std::vector<double>>;

namespace detail {
template <class T>
void put_plain_tensor(ByteWriter& payload, const ParamInfo& p, const T* x) {
  const std::size_t n = p.numel();
  switch (p.export_policy) {
    case ExportPolicy::int8_per_row: {
      const Int8Rows q = quantize_int8_rows(x, p.rows, p.cols);
      payload.put_span(std::span<const std::uint16_t>(q.scales));
      payload.put_span(std::span<const std::int8_t>(q.q));
      break;
    }
    case ExportPolicy::int8_per_tensor: {
      const Int8Tensor q = quantize_int8_tensor(x, n);
      payload.put(q.scale);
      payload.put_span(std::span<const std::int8_t>(q.q));
      break;
    }
    case ExportPolicy::float16:
      for (std::size_t i = 0; i < n; ++i) payload.put(float_to_half_bits(float(x[i])));
      break;
    case ExportPolicy::float32_control:
      for (std::size_t i = 0; i < n; ++i) payload.put(float(x[i]));
      break;
  }
}

template <std::size_t N>
std::vector<std::uint8_t> finish_artifact(const std::array<ParamInfo, N>& table, std::uint32_t version,
                                          const std::vector<std::uint8_t>& raw, Codec codec, int level) {
  const std::vector<std::uint8_t> stored = compress_bytes(raw, codec, level);
  ByteWriter out;
  for (char c : kArtifactMagic) out.put(c);
  out.put(version);
  out.put(std::uint32_t(codec));
  out.put(table_fingerprint(table));
  out.put(std::uint64_t(raw.size()));
  out.put(std::uint64_t(stored.size()));
  out.put(crc32_of(stored));
  out.put(std::uint32_t(N));
  out.put(crc32_of(std::span<const std::uint8_t>(out.bytes()).first(48)));
  out.put_span(std::span<const std::uint8_t>(stored));
  return std::move(out.bytes());
}
}  // namespace detail

// The reference's export (format version 1).
template <class T, std::size_t N>
std::vector<std::uint8_t> encode_artifact(const std::array<ParamInfo, N>& table, std::span<const T> params,
                                          Codec codec, int level = -1) {
  PGOLF_CHECK(params.size() == table_size(table), "encode_artifact: ", params.size(),
              " parameters, the table needs ", table_size(table));
  ByteWriter payload;
  for (const auto& p : table) {
    payload.put(std::uint8_t(p.export_policy));
    detail::put_plain_tensor(payload, p, params.data() + p.offset);
  }
  return detail::finish_artifact(table, kArtifactReferenceVersion, payload.bytes(), codec, level);
}

// Quantises the matrices the options select (quantised_rows); the others stay nullopt. GPTQ needs
// the tensor's Hessian: without one it is an error naming the tensor (the caller decides a fallback).
template <class T, std::size_t N>
std::vector<std::optional<RowCodes>> quantize_for_export(const std::array<ParamInfo, N>& table,
                                                         std::span<const T> params, const ExportOptions& o,
                                                         const TensorHessians* hessians = nullptr) {
  o.validate();
  PGOLF_CHECK(params.size() == table_size(table), "quantize_for_export: ", params.size(),
              " parameters, the table needs ", table_size(table));
  std::vector<std::optional<RowCodes>> codes(N);
  for (std::size_t t = 0; t < N; ++t) {
    const ParamInfo& p = table[t];
    if (!quantised_rows(p, o)) continue;
    const T* x = params.data() + p.offset;
    const TensorClass cls = tensor_class(p);
    const QuantChoice& c = o.choice(cls);
    switch (c.quantiser) {
      case Quantiser::int8_clip: codes[t] = quantize_rows_int8_clip(x, p.rows, p.cols); break;
      case Quantiser::rowmax: codes[t] = quantize_rows_rowmax(x, p.rows, p.cols, c.bits); break;
      case Quantiser::gptq_lite: codes[t] = quantize_rows_gptq_lite(x, p.rows, p.cols, c.bits); break;
      case Quantiser::gptq: {
        PGOLF_CHECK(hessians && t < hessians->size() && !(*hessians)[t].empty(), "GPTQ export: tensor ",
                    p.name.c_str(), " has no calibration Hessian");
        const GptqSettings g{c.bits, o.gptq_sdclip, o.sdclip(cls), o.gptq_damp, o.gptq_block};
        codes[t] = quantize_rows_gptq(x, p.rows, p.cols, (*hessians)[t], g, std::string("GPTQ of ") + p.name.c_str());
        break;
      }
    }
  }
  if (o.lqer_rank > 0) {  // LQER on the tensors with the largest squared quantisation error
    std::vector<std::pair<double, std::size_t>> errors;
    for (std::size_t t = 0; t < N; ++t)
      if (codes[t]) errors.emplace_back(row_codes_sq_error(params.data() + table[t].offset, *codes[t]), t);
    std::stable_sort(errors.begin(), errors.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    for (std::size_t k = 0; k < errors.size() && k < std::size_t(o.lqer_tensors); ++k) {
      const std::size_t t = errors[k].second;
      const ParamInfo& p = table[t];
      std::vector<double> E(p.numel());
      dequantize_rows(*codes[t], E.data());
      for (std::size_t i = 0; i < E.size(); ++i) E[i] = double(params[p.offset + i]) - E[i];
      codes[t]->lqer = fit_lqer(E, p.rows, p.cols, o.lqer_rank);
    }
  }
  return codes;
}

// Format version 2 from quantised matrices (quantize_for_export, possibly edited, e.g. pruned).
template <class T, std::size_t N>
std::vector<std::uint8_t> encode_artifact_codes(const std::array<ParamInfo, N>& table, std::span<const T> params,
                                                const std::vector<std::optional<RowCodes>>& codes, Codec codec,
                                                int level = -1) {
  PGOLF_CHECK(params.size() == table_size(table) && codes.size() == N, "encode_artifact_codes: ", params.size(),
              " parameters and ", codes.size(), " tensors, the table needs ", table_size(table), " and ", N);
  ByteWriter payload;
  for (std::size_t t = 0; t < N; ++t) {
    const ParamInfo& p = table[t];
    if (!codes[t]) {
      payload.put(std::uint8_t(p.export_policy));
      detail::put_plain_tensor(payload, p, params.data() + p.offset);
      continue;
    }
    const RowCodes& c = *codes[t];
    PGOLF_CHECK(c.rows == p.rows && c.cols == p.cols && c.q.size() == p.numel() && c.scales.size() == std::size_t(p.rows),
                "encode_artifact_codes: tensor ", p.name.c_str(), " codes do not match its shape");
    payload.put(std::uint8_t(ExportPolicy::int8_per_row));
    payload.put(std::uint8_t(c.quantiser));
    payload.put(std::uint8_t(c.bits));
    const LqerFactors& f = c.lqer;
    PGOLF_CHECK(f.rank >= 0 && f.rank <= std::min({kLqerMaxRank, p.rows, p.cols}) &&
                    f.a.size() == std::size_t(p.rows) * f.rank && f.b.size() == std::size_t(f.rank) * p.cols &&
                    f.b_scales.size() == std::size_t(f.rank) * lqer_groups(p.cols),
                "encode_artifact_codes: tensor ", p.name.c_str(), " has a malformed low-rank correction");
    payload.put(std::uint8_t(f.rank));
    payload.put_span(std::span<const std::uint16_t>(c.scales));
    payload.put_span(std::span<const std::int8_t>(c.q));
    if (f.rank > 0) {
      payload.put(f.a_scale);
      payload.put_span(std::span<const std::int8_t>(f.a));
      payload.put_span(std::span<const std::uint16_t>(f.b_scales));
      payload.put_span(std::span<const std::int8_t>(f.b));
    }
  }
  return detail::finish_artifact(table, kArtifactVersion, payload.bytes(), codec, level);
}

// Selective +-1 pruning (TECHNIQUES.md 5.6): among the +-1 codes of the low-bit matrices (every
// quantiser but the reference's int8), zero the ones whose row scale^2 (the squared error zeroing
// adds) is smallest, the fewest that make the compressed artifact fit target_bytes (binary search
// over the count; every probe compresses the whole payload). An error when even zeroing all of them
// does not fit.
struct PruneResult {
  std::vector<std::uint8_t> bytes;
  std::size_t pruned = 0, candidates = 0;
};

template <class T, std::size_t N>
PruneResult prune_to_target(const std::array<ParamInfo, N>& table, std::span<const T> params,
                            const std::vector<std::optional<RowCodes>>& codes, Codec codec, int level,
                            std::size_t target_bytes) {
  struct Candidate {
    float cost;
    std::uint32_t tensor;
    std::size_t index;
  };
  std::vector<Candidate> cand;
  for (std::size_t t = 0; t < N; ++t) {
    if (!codes[t] || codes[t]->quantiser == Quantiser::int8_clip) continue;
    const RowCodes& c = *codes[t];
    for (int r = 0; r < c.rows; ++r) {
      const float s = half_bits_to_float(c.scales[std::size_t(r)]);
      for (int j = 0; j < c.cols; ++j) {
        const std::size_t i = std::size_t(r) * c.cols + j;
        if (c.q[i] == 1 || c.q[i] == -1) cand.push_back({s * s, std::uint32_t(t), i});
      }
    }
  }
  std::stable_sort(cand.begin(), cand.end(), [](const Candidate& a, const Candidate& b) { return a.cost < b.cost; });
  auto encode_pruned = [&](std::size_t k) {
    std::vector<std::optional<RowCodes>> c = codes;
    for (std::size_t i = 0; i < k; ++i) c[cand[i].tensor]->q[cand[i].index] = 0;
    return encode_artifact_codes(table, params, c, codec, level);
  };
  PruneResult out{encode_pruned(0), 0, cand.size()};
  if (out.bytes.size() <= target_bytes) return out;
  std::vector<std::uint8_t> all = encode_pruned(cand.size());
  PGOLF_CHECK(all.size() <= target_bytes, "+-1 pruning cannot reach ", target_bytes, " bytes: the artifact is ",
              all.size(), " bytes with all ", cand.size(), " +-1 codes zeroed (", out.bytes.size(), " without)");
  std::size_t lo = 0, hi = cand.size();  // lo does not fit, hi fits
  out.bytes = std::move(all);
  while (hi - lo > 1) {
    const std::size_t mid = lo + (hi - lo) / 2;
    std::vector<std::uint8_t> b = encode_pruned(mid);
    if (b.size() <= target_bytes) {
      hi = mid;
      out.bytes = std::move(b);
    } else {
      lo = mid;
    }
  }
  out.pruned = hi;
  return out;
}

// The export under options: version 1 when they are the reference's, else version 2 (pruned to
// target_bytes when set; *pruned receives the count).
template <class T, std::size_t N>
std::vector<std::uint8_t> encode_artifact(const std::array<ParamInfo, N>& table, std::span<const T> params,
                                          Codec codec, int level, const ExportOptions& o,
                                          const TensorHessians* hessians = nullptr, std::size_t* pruned = nullptr) {
  if (pruned) *pruned = 0;
  if (o.is_reference()) return encode_artifact(table, params, codec, level);
  auto codes = quantize_for_export(table, params, o, hessians);
  if (o.target_bytes == 0) return encode_artifact_codes(table, params, codes, codec, level);
  PruneResult r = prune_to_target(table, params, codes, codec, level, o.target_bytes);
  if (pruned) *pruned = r.pruned;
  return std::move(r.bytes);
}

// The payload size a table implies in version 1: the header's claim is checked against it before
// anything is decompressed, so a corrupt size cannot ask for an arbitrarily large buffer.
template <std::size_t N>
constexpr std::size_t artifact_payload_bytes(const std::array<ParamInfo, N>& table) {
  std::size_t total = 0;
  for (const auto& p : table) {
    total += 1;
    switch (p.export_policy) {
      case ExportPolicy::int8_per_row: total += 2 * std::size_t(p.rows) + p.numel(); break;
      case ExportPolicy::int8_per_tensor: total += 4 + p.numel(); break;
      case ExportPolicy::float16: total += 2 * p.numel(); break;
      case ExportPolicy::float32_control: total += 4 * p.numel(); break;
    }
  }
  return total;
}

// Version 2's payload lies between these: each 2-D fp16 matrix either as fp16 or as quantised rows
// (whichever the options chose), each int8_per_row tensor with its 3 descriptor bytes.
template <std::size_t N>
constexpr std::size_t artifact_payload_bytes_v2(const std::array<ParamInfo, N>& table, bool upper) {
  std::size_t total = 0;
  for (const auto& p : table) {
    const std::size_t rows_form = 1 + 3 + 2 * std::size_t(p.rows) + p.numel() +
                                  (upper ? lqer_bytes(p.rows, p.cols, std::min({kLqerMaxRank, p.rows, p.cols})) : 0);
    switch (p.export_policy) {
      case ExportPolicy::int8_per_row: total += rows_form; break;
      case ExportPolicy::int8_per_tensor: total += 1 + 4 + p.numel(); break;
      case ExportPolicy::float16: {
        const std::size_t plain = 1 + 2 * p.numel();
        total += p.rank == 2 ? (upper ? std::max(plain, rows_form) : std::min(plain, rows_form)) : plain;
        break;
      }
      case ExportPolicy::float32_control: total += 1 + 4 * p.numel(); break;
    }
  }
  return total;
}

namespace detail {
struct ArtifactHeader {
  std::uint32_t version;
  Codec codec;
  std::uint64_t fingerprint, raw_size, stored_size;
  std::uint32_t stored_crc, tensors;
};

// Checks size, magic, the header's CRC, the version and the codec id, then returns the header's fields.
inline ArtifactHeader read_artifact_header(std::span<const std::uint8_t> bytes, const std::string& what) {
  PGOLF_CHECK(bytes.size() >= kArtifactHeaderBytes, what, " is truncated: ", bytes.size(),
              " bytes, shorter than the ", kArtifactHeaderBytes, "-byte header");
  PGOLF_CHECK(std::memcmp(bytes.data(), kArtifactMagic, 8) == 0, what, " is not a pgolf artifact (bad magic)");
  ByteReader r(bytes.subspan(8, kArtifactHeaderBytes - 8), what + " header");
  ArtifactHeader h{};
  h.version = r.get<std::uint32_t>();
  const std::uint32_t codec_id = r.get<std::uint32_t>();
  h.codec = Codec(codec_id);
  h.fingerprint = r.get<std::uint64_t>();
  h.raw_size = r.get<std::uint64_t>();
  h.stored_size = r.get<std::uint64_t>();
  h.stored_crc = r.get<std::uint32_t>();
  h.tensors = r.get<std::uint32_t>();
  PGOLF_CHECK(r.get<std::uint32_t>() == crc32_of(bytes.first(48)), what, " header is corrupted (checksum mismatch)");
  PGOLF_CHECK(h.version == 1 || h.version == kArtifactVersion, what, " has format version ", h.version,
              "; this build reads versions 1 and ", kArtifactVersion);
  bool known = false;
  for (Codec c : kAllCodecs) known = known || std::uint32_t(c) == codec_id;
  PGOLF_CHECK(known, what, ": compressor id ", codec_id,
              " in the header is not known to this build (it knows 0 none .. 5 lzma); written by a newer build?");
  return h;
}

// Reads one version-2 quantised matrix into x, checking its descriptor and code range.
template <class T>
void read_row_codes(ByteReader& r, const ParamInfo& p, T* x, const std::string& what) {
  const std::uint8_t qid = r.get<std::uint8_t>(), bits = r.get<std::uint8_t>(), extra = r.get<std::uint8_t>();
  PGOLF_CHECK(known_quantiser(qid), what, ": tensor ", p.name.c_str(), " has quantiser id ", int(qid),
              ", which this build does not know (written by a newer build?)");
  PGOLF_CHECK(bits >= kMinQuantBits && bits <= kMaxQuantBits, what, ": tensor ", p.name.c_str(), " has ", int(bits),
              " quantisation bits, expected ", kMinQuantBits, "..", kMaxQuantBits);
  const int rank = extra;
  PGOLF_CHECK(rank <= std::min({kLqerMaxRank, p.rows, p.cols}), what, ": tensor ", p.name.c_str(),
              " has a low-rank correction of rank ", rank, ", above the ", std::min({kLqerMaxRank, p.rows, p.cols}),
              " this build allows for its shape");
  RowCodes c{p.rows, p.cols, int(bits), Quantiser(qid), std::vector<std::int8_t>(p.numel()),
             std::vector<std::uint16_t>(std::size_t(p.rows))};
  r.get_into(std::span<std::uint16_t>(c.scales));
  r.get_into(std::span<std::int8_t>(c.q));
  const int qmax = quant_qmax(bits);
  for (std::int8_t v : c.q)
    PGOLF_CHECK(v >= -(qmax + 1) && v <= qmax, what, ": tensor ", p.name.c_str(), " holds code ", int(v),
                ", outside the ", int(bits), "-bit range");
  dequantize_rows(c, x);
  if (rank == 0) return;
  LqerFactors& f = c.lqer;
  f.rank = rank;
  f.a_scale = r.get<float>();
  PGOLF_CHECK(std::isfinite(f.a_scale), what, ": tensor ", p.name.c_str(), " has a non-finite low-rank scale");
  f.a.resize(std::size_t(p.rows) * rank);
  f.b_scales.resize(std::size_t(rank) * lqer_groups(p.cols));
  f.b.resize(std::size_t(rank) * p.cols);
  r.get_into(std::span<std::int8_t>(f.a));
  r.get_into(std::span<std::uint16_t>(f.b_scales));
  r.get_into(std::span<std::int8_t>(f.b));
  for (std::int8_t v : f.a)
    PGOLF_CHECK(v >= kLqerAMin && v <= kLqerAMax, what, ": tensor ", p.name.c_str(), " low-rank factor A holds code ",
                int(v), ", outside INT2");
  for (std::int8_t v : f.b)
    PGOLF_CHECK(v >= kLqerBMin && v <= kLqerBMax, what, ": tensor ", p.name.c_str(), " low-rank factor B holds code ",
                int(v), ", outside INT4");
  apply_lqer(f, p.rows, p.cols, x);
}
}  // namespace detail

// Decodes an artifact (version 1 or 2) into params (dequantised). `what` names the source in errors.
template <class T, std::size_t N>
ArtifactInfo decode_artifact(std::span<const std::uint8_t> bytes, const std::array<ParamInfo, N>& table,
                             std::span<T> params, const std::string& what = "artifact") {
  PGOLF_CHECK(params.size() == table_size(table), "decode_artifact: ", params.size(),
              " parameters, the table needs ", table_size(table));
  const detail::ArtifactHeader h = detail::read_artifact_header(bytes, what);
  PGOLF_CHECK(bytes.size() - kArtifactHeaderBytes == h.stored_size, what, " is ",
              bytes.size() < kArtifactHeaderBytes + h.stored_size ? "truncated" : "followed by extra bytes", ": ",
              bytes.size(), " bytes, the header says ", kArtifactHeaderBytes + h.stored_size);
  const auto stored = bytes.subspan(kArtifactHeaderBytes);
  PGOLF_CHECK(crc32_of(stored) == h.stored_crc, what, " payload is corrupted (checksum mismatch)");
  PGOLF_CHECK(h.fingerprint == table_fingerprint(table) && h.tensors == N, what,
              " was exported from a different model variant (parameter-table fingerprint or tensor count differs)");
  const bool v2 = h.version == 2;
  if (v2) {
    const std::size_t lo = artifact_payload_bytes_v2(table, false), hi = artifact_payload_bytes_v2(table, true);
    PGOLF_CHECK(h.raw_size >= lo && h.raw_size <= hi, what, " is corrupted: the header says the payload is ",
                h.raw_size, " bytes, this parameter table's version-2 payload is ", lo, "..", hi, " bytes");
  } else {
    PGOLF_CHECK(h.raw_size == artifact_payload_bytes(table), what, " is corrupted: the header says the payload is ",
                h.raw_size, " bytes, this parameter table's payload is ", artifact_payload_bytes(table), " bytes");
  }
  const std::vector<std::uint8_t> raw = decompress_bytes(stored, h.codec, std::size_t(h.raw_size));

  ByteReader r(raw, what + " payload");
  std::vector<std::uint16_t> halves;
  for (const auto& p : table) {
    T* x = params.data() + p.offset;
    const std::size_t n = p.numel();
    const auto policy = ExportPolicy(r.get<std::uint8_t>());
    // Version 2 may store a table fp16 matrix as quantised rows (a lowered quant_min_numel).
    const bool quantised_fp16 = v2 && policy == ExportPolicy::int8_per_row && p.export_policy == ExportPolicy::float16 &&
                                p.rank == 2;
    PGOLF_CHECK(policy == p.export_policy || quantised_fp16, what, ": tensor ", p.name.c_str(), " is stored as ",
                to_string(policy), ", the table says ", to_string(p.export_policy));
    switch (policy) {
      case ExportPolicy::int8_per_row: {
        if (v2) {
          detail::read_row_codes(r, p, x, what);
          break;
        }
        Int8Rows q{p.rows, p.cols, std::vector<std::int8_t>(n), std::vector<std::uint16_t>(std::size_t(p.rows))};
        r.get_into(std::span<std::uint16_t>(q.scales));
        r.get_into(std::span<std::int8_t>(q.q));
        dequantize_int8_rows(q, x);
        break;
      }
      case ExportPolicy::int8_per_tensor: {
        Int8Tensor q{std::vector<std::int8_t>(n), 1.0f};
        q.scale = r.get<float>();
        r.get_into(std::span<std::int8_t>(q.q));
        dequantize_int8_tensor(q, x);
        break;
      }
      case ExportPolicy::float16:
        halves.resize(n);
        r.get_into(std::span<std::uint16_t>(halves));
        for (std::size_t i = 0; i < n; ++i) x[i] = T(half_bits_to_float(halves[i]));
        break;
      case ExportPolicy::float32_control:
        for (std::size_t i = 0; i < n; ++i) x[i] = T(r.get<float>());
        break;
    }
  }
  PGOLF_CHECK(r.remaining() == 0, what, " payload has ", r.remaining(), " unread bytes");
  return ArtifactInfo{h.codec, std::size_t(h.raw_size), std::size_t(h.stored_size), bytes.size(), std::size_t(h.tensors),
                      h.version};
}

// Reads only the header fields (for printing an artifact's size breakdown without a model).
inline ArtifactInfo peek_artifact(std::span<const std::uint8_t> bytes, const std::string& what = "artifact") {
  const detail::ArtifactHeader h = detail::read_artifact_header(bytes, what);
  return ArtifactInfo{h.codec, std::size_t(h.raw_size), std::size_t(h.stored_size), bytes.size(), std::size_t(h.tensors),
                      h.version};
}

}  // namespace pgolf
