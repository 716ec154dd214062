// Reads one string field from a JSON-lines record (the `text` field of FineWeb's docs.jsonl).
// A small strict parser: the line must be one JSON object; other fields of any type are skipped;
// string escapes, \uXXXX and surrogate pairs are decoded to UTF-8, exactly as json.loads does.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "pgolf/core/error.hpp"

namespace pgolf::data {

namespace detail {

class JsonScanner {
 public:
  explicit JsonScanner(std::string_view s) : s_(s) {}

  std::optional<std::string> object_field(std::string_view want) {
    std::optional<std::string> found;
    ws();
    expect('{');
    ws();
    if (peek() == '}') {
      ++i_;
    } else {
      for (;;) {
        ws();
        const std::string key = string();
        ws();
        expect(':');
        ws();
        if (key == want && peek() == '"' && !found) found = string();
        else skip_value();
        ws();
        if (peek() == ',') {
          ++i_;
          continue;
        }
        expect('}');
        break;
      }
    }
    ws();
    if (i_ != s_.size()) fail("unexpected characters after the object");
    return found;
  }

 private:
  [[noreturn]] void fail(const char* what) const { PGOLF_FAIL("invalid JSON at column ", i_ + 1, ": ", what); }
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void expect(char c) {
    if (peek() != c) fail((std::string("expected '") + c + "'").c_str());
    ++i_;
  }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\r' || s_[i_] == '\n')) ++i_;
  }
  unsigned hex4() {
    if (i_ + 4 > s_.size()) fail("truncated \\u escape");
    unsigned v = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = s_[i_++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= unsigned(c - '0');
      else if (c >= 'a' && c <= 'f') v |= unsigned(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= unsigned(c - 'A' + 10);
      else fail("bad hex digit in \\u escape");
    }
    return v;
  }
  static void utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
      out += char(cp);
    } else if (cp < 0x800) {
      out += char(0xC0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += char(0xE0 | (cp >> 12));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    } else {
      out += char(0xF0 | (cp >> 18));
      out += char(0x80 | ((cp >> 12) & 0x3F));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    }
  }
  std::string string() {
    expect('"');
    std::string out;
    for (;;) {
      if (i_ >= s_.size()) fail("unterminated string");
      const char c = s_[i_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) fail("control character inside a string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i_ >= s_.size()) fail("unterminated escape");
      switch (const char e = s_[i_++]) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          std::uint32_t cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00 && i_ + 6 <= s_.size() && s_[i_] == '\\' && s_[i_ + 1] == 'u') {
            const std::size_t save = i_;
            i_ += 2;
            const unsigned lo = hex4();
            if (lo >= 0xDC00 && lo < 0xE000) cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            else i_ = save;  // a lone high surrogate, kept as is (json.loads does the same)
          }
          utf8(out, cp);
          break;
        }
        default:
          (void)e;
          fail("unknown escape");
      }
    }
  }
  // Values nest by recursion; the depth is capped so a line of a million '[' is an error, not a stack
  // overflow (Python's json.loads gives up near 1000 levels too).
  static constexpr int kMaxDepth = 512;
  void skip_value(int depth = 1) {
    const char c = peek();
    if (c == '"') {
      string();
    } else if (c == '{' || c == '[') {
      if (depth > kMaxDepth) fail("arrays and objects nested deeper than 512 levels");
      const char close = c == '{' ? '}' : ']';
      ++i_;
      ws();
      if (peek() == close) {
        ++i_;
        return;
      }
      for (;;) {
        ws();
        if (c == '{') {
          string();
          ws();
          expect(':');
          ws();
        }
        skip_value(depth + 1);
        ws();
        if (peek() == ',') {
          ++i_;
          continue;
        }
        expect(close);
        return;
      }
    } else {
      const std::size_t start = i_;
      while (i_ < s_.size() && std::string_view("+-.0123456789eEtruefalsn").find(s_[i_]) != std::string_view::npos) ++i_;
      const std::string_view tok = s_.substr(start, i_ - start);
      if (tok.empty()) fail("expected a value");
      if ((tok[0] >= 'a' && tok[0] <= 'z') && tok != "true" && tok != "false" && tok != "null")
        fail("unknown literal");
    }
  }

  std::string_view s_;
  std::size_t i_ = 0;
};

}  // namespace detail

// The string value of `field` in the JSON object on `line`; nullopt when the object lacks it or it
// is not a string. Malformed JSON is an error naming the column.
inline std::optional<std::string> json_string_field(std::string_view line, std::string_view field) {
  return detail::JsonScanner(line).object_field(field);
}

}  // namespace pgolf::data
