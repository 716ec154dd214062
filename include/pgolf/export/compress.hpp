// General-purpose compressors for the exported artifact (zlib as the baseline, zstd and brotli as
// the records use), and the CRC-32 that guards the artifact's bytes. Thin wrappers over the
// libraries: every failure becomes a pgolf::Error that names the codec and the reason.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <brotli/decode.h>
#include <brotli/encode.h>
#include <zlib.h>
#include <zstd.h>

#include "pgolf/core/error.hpp"

namespace pgolf {

enum class Codec : std::uint32_t { none = 0, zlib = 1, zstd = 2, brotli = 3 };

constexpr std::string_view to_string(Codec c) {
  switch (c) {
    case Codec::none: return "none";
    case Codec::zlib: return "zlib";
    case Codec::zstd: return "zstd";
    case Codec::brotli: return "brotli";
  }
  return "?";
}

inline Codec parse_codec(std::string_view name) {
  for (Codec c : {Codec::none, Codec::zlib, Codec::zstd, Codec::brotli})
    if (to_string(c) == name) return c;
  PGOLF_FAIL("unknown compressor '", std::string(name), "' (expected none, zlib, zstd or brotli)");
}

// Level ranges of each codec; -1 picks the default (zlib 9 as the baseline, zstd 22, brotli 11).
inline int codec_level(Codec c, int level) {
  switch (c) {
    case Codec::none: return 0;
    case Codec::zlib:
      if (level < 0) return 9;
      PGOLF_CHECK(level <= 9, "zlib level must be 0..9, got ", level);
      return level;
    case Codec::zstd:
      if (level < 0) return 22;
      PGOLF_CHECK(level >= 1 && level <= ZSTD_maxCLevel(), "zstd level must be 1..", ZSTD_maxCLevel(), ", got ", level);
      return level;
    case Codec::brotli:
      if (level < 0) return BROTLI_MAX_QUALITY;
      PGOLF_CHECK(level <= BROTLI_MAX_QUALITY, "brotli quality must be 0..", BROTLI_MAX_QUALITY, ", got ", level);
      return level;
  }
  PGOLF_FAIL("unknown codec id ", std::uint32_t(c));
}

inline std::uint32_t crc32_of(std::span<const std::uint8_t> bytes) {
  uLong crc = ::crc32(0L, Z_NULL, 0);
  for (std::size_t at = 0; at < bytes.size();) {  // zlib takes uInt lengths
    const uInt n = uInt(std::min<std::size_t>(bytes.size() - at, 1u << 30));
    crc = ::crc32(crc, bytes.data() + at, n);
    at += n;
  }
  return std::uint32_t(crc);
}

inline std::vector<std::uint8_t> compress_bytes(std::span<const std::uint8_t> in, Codec codec, int level = -1) {
  level = codec_level(codec, level);
  std::vector<std::uint8_t> out;
  switch (codec) {
    case Codec::none:
      out.assign(in.begin(), in.end());
      break;
    case Codec::zlib: {
      uLongf n = compressBound(uLong(in.size()));
      out.resize(n);
      const int rc = compress2(out.data(), &n, in.data(), uLong(in.size()), level);
      PGOLF_CHECK(rc == Z_OK, "zlib compression failed (code ", rc, ")");
      out.resize(n);
      break;
    }
    case Codec::zstd: {
      out.resize(ZSTD_compressBound(in.size()));
      const std::size_t n = ZSTD_compress(out.data(), out.size(), in.data(), in.size(), level);
      PGOLF_CHECK(!ZSTD_isError(n), "zstd compression failed: ", ZSTD_getErrorName(n));
      out.resize(n);
      break;
    }
    case Codec::brotli: {
      std::size_t n = BrotliEncoderMaxCompressedSize(in.size());
      out.resize(n);
      const int ok = BrotliEncoderCompress(level, BROTLI_MAX_WINDOW_BITS, BROTLI_MODE_GENERIC, in.size(), in.data(), &n,
                                           out.data());
      PGOLF_CHECK(ok == BROTLI_TRUE, "brotli compression failed");
      out.resize(n);
      break;
    }
  }
  return out;
}

// The decompressed size is known from the container, so a mismatch is corruption, not a guess.
inline std::vector<std::uint8_t> decompress_bytes(std::span<const std::uint8_t> in, Codec codec, std::size_t size) {
  std::vector<std::uint8_t> out(size);
  switch (codec) {
    case Codec::none:
      PGOLF_CHECK(in.size() == size, "stored payload holds ", in.size(), " bytes, expected ", size);
      out.assign(in.begin(), in.end());
      break;
    case Codec::zlib: {
      uLongf n = uLongf(size);
      const int rc = uncompress(out.data(), &n, in.data(), uLong(in.size()));
      PGOLF_CHECK(rc == Z_OK && n == size, "zlib payload is corrupt (code ", rc, ", ", n, " of ", size, " bytes)");
      break;
    }
    case Codec::zstd: {
      const std::size_t n = ZSTD_decompress(out.data(), out.size(), in.data(), in.size());
      PGOLF_CHECK(!ZSTD_isError(n), "zstd payload is corrupt: ", ZSTD_getErrorName(n));
      PGOLF_CHECK(n == size, "zstd payload decompressed to ", n, " bytes, expected ", size);
      break;
    }
    case Codec::brotli: {
      std::size_t n = size;
      const auto rc = BrotliDecoderDecompress(in.size(), in.data(), &n, out.data());
      PGOLF_CHECK(rc == BROTLI_DECODER_RESULT_SUCCESS && n == size, "brotli payload is corrupt (", n, " of ", size,
                  " bytes)");
      break;
    }
    default:
      PGOLF_FAIL("unknown codec id ", std::uint32_t(codec));
  }
  return out;
}

}  // namespace pgolf
