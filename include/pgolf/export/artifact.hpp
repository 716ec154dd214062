// The exported model artifact: each parameter tensor encoded by its export policy from the
// parameter table (int8 per row, int8 per tensor, fp16, fp32 control), then the whole payload
// compressed. Format, version 1, all fields little-endian:
//
//   offset  bytes  field
//        0      8  magic "PGOLFART"
//        8      4  format version (1)
//       12      4  codec (0 none, 1 zlib, 2 zstd, 3 brotli)
//       16      8  parameter-table fingerprint (table_fingerprint: names, shapes, offsets, policies)
//       24      8  payload size before compression
//       32      8  stored (compressed) payload size
//       40      4  CRC-32 of the stored payload
//       44      4  number of tensors
//       48      4  CRC-32 of bytes 0..47
//       52      -  stored payload
//
// Payload, per tensor in table order: one byte with its export policy, then
//   int8_per_row:    rows fp16 scales, rows*cols int8 codes
//   int8_per_tensor: one fp32 scale, numel int8 codes
//   float16:         numel fp16 values
//   float32_control: numel fp32 values
// Loading checks everything (size, magic, version, both CRCs, fingerprint, sizes, policies) before
// a single weight is written, so a truncated or corrupted file is an error, never a model.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "pgolf/core/error.hpp"
#include "pgolf/core/file_io.hpp"
#include "pgolf/core/half.hpp"
#include "pgolf/export/compress.hpp"
#include "pgolf/export/int8.hpp"
#include "pgolf/nn/param_table.hpp"

namespace pgolf {

inline constexpr char kArtifactMagic[8] = {'P', 'G', 'O', 'L', 'F', 'A', 'R', 'T'};
inline constexpr std::uint32_t kArtifactVersion = 1;
inline constexpr std::size_t kArtifactHeaderBytes = 52;

struct ArtifactInfo {
  Codec codec = Codec::none;
  std::size_t raw_bytes = 0;     // payload before compression
  std::size_t stored_bytes = 0;  // payload after compression
  std::size_t file_bytes = 0;    // header + stored payload: what counts against the size cap
  std::size_t tensors = 0;
};

template <class T, std::size_t N>
std::vector<std::uint8_t> encode_artifact(const std::array<ParamInfo, N>& table, std::span<const T> params,
                                          Codec codec, int level = -1) {
  PGOLF_CHECK(params.size() == table_size(table), "encode_artifact: ", params.size(),
              " parameters, the table needs ", table_size(table));
  ByteWriter payload;
  for (const auto& p : table) {
    const T* x = params.data() + p.offset;
    const std::size_t n = p.numel();
    payload.put(std::uint8_t(p.export_policy));
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
  const std::vector<std::uint8_t>& raw = payload.bytes();
  const std::vector<std::uint8_t> stored = compress_bytes(raw, codec, level);

  ByteWriter out;
  for (char c : kArtifactMagic) out.put(c);
  out.put(kArtifactVersion);
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

// The payload size a table implies: the header's claim is checked against it before anything is
// decompressed, so a corrupt size cannot ask for an arbitrarily large buffer.
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

namespace detail {
struct ArtifactHeader {
  std::uint32_t version;
  Codec codec;
  std::uint64_t fingerprint, raw_size, stored_size;
  std::uint32_t stored_crc, tensors;
};

// Checks size, magic and the header's CRC, then returns the header's fields.
inline ArtifactHeader read_artifact_header(std::span<const std::uint8_t> bytes, const std::string& what) {
  PGOLF_CHECK(bytes.size() >= kArtifactHeaderBytes, what, " is truncated: ", bytes.size(),
              " bytes, shorter than the ", kArtifactHeaderBytes, "-byte header");
  PGOLF_CHECK(std::memcmp(bytes.data(), kArtifactMagic, 8) == 0, what, " is not a pgolf artifact (bad magic)");
  ByteReader r(bytes.subspan(8, kArtifactHeaderBytes - 8), what + " header");
  ArtifactHeader h{};
  h.version = r.get<std::uint32_t>();
  h.codec = Codec(r.get<std::uint32_t>());
  h.fingerprint = r.get<std::uint64_t>();
  h.raw_size = r.get<std::uint64_t>();
  h.stored_size = r.get<std::uint64_t>();
  h.stored_crc = r.get<std::uint32_t>();
  h.tensors = r.get<std::uint32_t>();
  PGOLF_CHECK(r.get<std::uint32_t>() == crc32_of(bytes.first(48)), what, " header is corrupted (checksum mismatch)");
  return h;
}
}  // namespace detail

// Decodes an artifact into params (dequantised). `what` names the source in error messages.
template <class T, std::size_t N>
ArtifactInfo decode_artifact(std::span<const std::uint8_t> bytes, const std::array<ParamInfo, N>& table,
                             std::span<T> params, const std::string& what = "artifact") {
  PGOLF_CHECK(params.size() == table_size(table), "decode_artifact: ", params.size(),
              " parameters, the table needs ", table_size(table));
  const detail::ArtifactHeader h = detail::read_artifact_header(bytes, what);
  PGOLF_CHECK(h.version == kArtifactVersion, what, " has format version ", h.version, "; this build reads version ",
              kArtifactVersion);
  PGOLF_CHECK(bytes.size() - kArtifactHeaderBytes == h.stored_size, what, " is ",
              bytes.size() < kArtifactHeaderBytes + h.stored_size ? "truncated" : "followed by extra bytes", ": ",
              bytes.size(), " bytes, the header says ", kArtifactHeaderBytes + h.stored_size);
  const auto stored = bytes.subspan(kArtifactHeaderBytes);
  PGOLF_CHECK(crc32_of(stored) == h.stored_crc, what, " payload is corrupted (checksum mismatch)");
  PGOLF_CHECK(h.fingerprint == table_fingerprint(table) && h.tensors == N, what,
              " was exported from a different model variant (parameter-table fingerprint or tensor count differs)");
  PGOLF_CHECK(h.raw_size == artifact_payload_bytes(table), what, " is corrupted: the header says the payload is ",
              h.raw_size, " bytes, this parameter table's payload is ", artifact_payload_bytes(table), " bytes");
  const std::vector<std::uint8_t> raw = decompress_bytes(stored, h.codec, std::size_t(h.raw_size));

  ByteReader r(raw, what + " payload");
  std::vector<std::uint16_t> halves;
  for (const auto& p : table) {
    T* x = params.data() + p.offset;
    const std::size_t n = p.numel();
    const auto policy = ExportPolicy(r.get<std::uint8_t>());
    PGOLF_CHECK(policy == p.export_policy, what, ": tensor ", p.name.c_str(), " is stored as ", to_string(policy),
                ", the table says ", to_string(p.export_policy));
    switch (policy) {
      case ExportPolicy::int8_per_row: {
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
  return ArtifactInfo{h.codec, std::size_t(h.raw_size), std::size_t(h.stored_size), bytes.size(), std::size_t(h.tensors)};
}

// Reads only the header fields (for printing an artifact's size breakdown without a model).
inline ArtifactInfo peek_artifact(std::span<const std::uint8_t> bytes, const std::string& what = "artifact") {
  const detail::ArtifactHeader h = detail::read_artifact_header(bytes, what);
  return ArtifactInfo{h.codec, std::size_t(h.raw_size), std::size_t(h.stored_size), bytes.size(), std::size_t(h.tensors)};
}

}  // namespace pgolf
