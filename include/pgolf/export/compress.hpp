// General-purpose compressors for the exported artifact (zlib as the baseline; zstd, brotli, brotli
// after a byte shuffle and LZMA as the records use them), and the CRC-32 that guards the artifact's
// bytes. Thin wrappers over the libraries: every failure becomes a pgolf::Error that names the codec
// and the reason.
//
// brotli-shuffle: the bytes are regrouped by position modulo 2 (every even-offset byte, then every
// odd-offset byte) before brotli, so the high and low bytes of 16-bit values (fp16 scales and
// passthrough tensors) form separate, more regular streams; decompression reverses it.
// lzma: raw LZMA2 (no .xz container: the artifact's header already carries sizes and a CRC), preset
// 0..9 (9 by default, as the records' LZMA-9).
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <brotli/decode.h>
#include <brotli/encode.h>
#include <lzma.h>
#include <zlib.h>
#include <zstd.h>

#include "pgolf/core/error.hpp"

namespace pgolf {

enum class Codec : std::uint32_t { none = 0, zlib = 1, zstd = 2, brotli = 3, brotli_shuffle = 4, lzma = 5 };

inline constexpr Codec kAllCodecs[] = {Codec::none, Codec::zlib, Codec::zstd, Codec::brotli, Codec::brotli_shuffle,
                                       Codec::lzma};

constexpr std::string_view to_string(Codec c) {
  switch (c) {
    case Codec::none: return "none";
    case Codec::zlib: return "zlib";
    case Codec::zstd: return "zstd";
    case Codec::brotli: return "brotli";
    case Codec::brotli_shuffle: return "brotli-shuffle";
    case Codec::lzma: return "lzma";
  }
  return "?";
}

inline Codec parse_codec(std::string_view name) {
  for (Codec c : kAllCodecs)
    if (to_string(c) == name) return c;
  PGOLF_FAIL("unknown compressor '", std::string(name), "' (expected none, zlib, zstd, brotli, brotli-shuffle or lzma)");
}

// Level ranges of each codec; -1 picks the default (zlib 9 as the baseline, zstd 22, brotli 11, lzma 9).
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
    case Codec::brotli_shuffle:
      if (level < 0) return BROTLI_MAX_QUALITY;
      PGOLF_CHECK(level <= BROTLI_MAX_QUALITY, "brotli quality must be 0..", BROTLI_MAX_QUALITY, ", got ", level);
      return level;
    case Codec::lzma:
      if (level < 0) return 9;
      PGOLF_CHECK(level <= 9, "lzma preset must be 0..9, got ", level);
      return level;
  }
  PGOLF_FAIL("unknown codec id ", std::uint32_t(c), " (this build knows ", std::size(kAllCodecs), " codecs)");
}

namespace detail {
// Position modulo `stride`: every byte 0 mod stride first, then 1 mod stride, ...
inline std::vector<std::uint8_t> shuffle_bytes(std::span<const std::uint8_t> in, std::size_t stride = 2) {
  std::vector<std::uint8_t> out;
  out.reserve(in.size());
  for (std::size_t k = 0; k < stride; ++k)
    for (std::size_t i = k; i < in.size(); i += stride) out.push_back(in[i]);
  return out;
}
inline std::vector<std::uint8_t> unshuffle_bytes(std::span<const std::uint8_t> in, std::size_t stride = 2) {
  std::vector<std::uint8_t> out(in.size());
  std::size_t at = 0;
  for (std::size_t k = 0; k < stride; ++k)
    for (std::size_t i = k; i < out.size(); i += stride) out[i] = in[at++];
  return out;
}
// LZMA2's options for a preset; the decoder's dictionary needs to cover no more than the output.
inline lzma_options_lzma lzma_preset(std::uint32_t preset) {
  lzma_options_lzma opt{};
  PGOLF_CHECK(!lzma_lzma_preset(&opt, preset), "lzma: preset ", preset, " is not supported by this liblzma");
  return opt;
}
inline std::vector<std::uint8_t> brotli_encode(std::span<const std::uint8_t> in, int level) {
  std::size_t n = BrotliEncoderMaxCompressedSize(in.size());
  std::vector<std::uint8_t> out(n);
  const int ok = BrotliEncoderCompress(level, BROTLI_MAX_WINDOW_BITS, BROTLI_MODE_GENERIC, in.size(), in.data(), &n,
                                       out.data());
  PGOLF_CHECK(ok == BROTLI_TRUE, "brotli compression failed");
  out.resize(n);
  return out;
}
inline std::vector<std::uint8_t> brotli_decode(std::span<const std::uint8_t> in, std::size_t size) {
  std::vector<std::uint8_t> out(size);
  std::size_t n = size;
  const auto rc = BrotliDecoderDecompress(in.size(), in.data(), &n, out.data());
  PGOLF_CHECK(rc == BROTLI_DECODER_RESULT_SUCCESS && n == size, "brotli payload is corrupt (", n, " of ", size, " bytes)");
  return out;
}
}  // namespace detail

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
    case Codec::brotli:
      out = detail::brotli_encode(in, level);
      break;
    case Codec::brotli_shuffle:
      out = detail::brotli_encode(detail::shuffle_bytes(in), level);
      break;
    case Codec::lzma: {
      lzma_options_lzma opt = detail::lzma_preset(std::uint32_t(level));
      const lzma_filter filters[] = {{LZMA_FILTER_LZMA2, &opt}, {LZMA_VLI_UNKNOWN, nullptr}};
      out.resize(in.size() + in.size() / 16 + 4096);  // LZMA2 stores incompressible chunks raw
      std::size_t n = 0;
      const lzma_ret rc = lzma_raw_buffer_encode(filters, nullptr, in.data(), in.size(), out.data(), &n, out.size());
      PGOLF_CHECK(rc == LZMA_OK, "lzma compression failed (code ", int(rc), ")");
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
    case Codec::brotli:
      out = detail::brotli_decode(in, size);
      break;
    case Codec::brotli_shuffle:
      out = detail::unshuffle_bytes(detail::brotli_decode(in, size));
      break;
    case Codec::lzma: {
      lzma_options_lzma opt = detail::lzma_preset(9);
      opt.dict_size = std::uint32_t(std::clamp<std::size_t>(size, LZMA_DICT_SIZE_MIN, opt.dict_size));
      const lzma_filter filters[] = {{LZMA_FILTER_LZMA2, &opt}, {LZMA_VLI_UNKNOWN, nullptr}};
      std::size_t in_pos = 0, n = 0;
      std::uint8_t none = 0;  // liblzma refuses a null output buffer, even for an empty payload
      const lzma_ret rc = lzma_raw_buffer_decode(filters, nullptr, in.data(), &in_pos, in.size(),
                                                 size ? out.data() : &none, &n, size);
      PGOLF_CHECK(rc == LZMA_OK && n == size && in_pos == in.size(), "lzma payload is corrupt (code ", int(rc), ", ", n,
                  " of ", size, " bytes)");
      break;
    }
    default:
      PGOLF_FAIL("unknown codec id ", std::uint32_t(codec), ": written by a newer build? (this build knows none, zlib, "
                 "zstd, brotli, brotli-shuffle and lzma)");
  }
  return out;
}

}  // namespace pgolf
