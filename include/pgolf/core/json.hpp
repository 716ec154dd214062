// A one-line JSON object writer for the metrics files (flat objects of numbers, strings, booleans).
#pragma once

#include <cmath>
#include <cstdio>
#include <string>
#include <string_view>
#include <type_traits>

namespace pgolf {

class JsonLine {
 public:
  JsonLine& add(std::string_view key, std::string_view value) {
    field(key);
    quote(value);
    return *this;
  }
  JsonLine& add(std::string_view key, const char* value) { return add(key, std::string_view(value)); }
  JsonLine& add(std::string_view key, const std::string& value) { return add(key, std::string_view(value)); }
  JsonLine& add(std::string_view key, bool value) {
    field(key);
    s_ += value ? "true" : "false";
    return *this;
  }
  JsonLine& add(std::string_view key, double value) {
    field(key);
    if (!std::isfinite(value)) {
      s_ += "null";  // JSON has no NaN/inf
    } else {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.17g", value);
      s_ += buf;
    }
    return *this;
  }
  template <class I>
    requires std::is_integral_v<I>
  JsonLine& add(std::string_view key, I value) {
    field(key);
    s_ += std::to_string(value);
    return *this;
  }
  std::string str() const { return s_.empty() ? "{}" : s_ + "}"; }

 private:
  void field(std::string_view key) {
    s_ += s_.empty() ? "{" : ",";
    quote(key);
    s_ += ':';
  }
  void quote(std::string_view v) {
    s_ += '"';
    for (char c : v) {
      switch (c) {
        case '"': s_ += "\\\""; break;
        case '\\': s_ += "\\\\"; break;
        case '\n': s_ += "\\n"; break;
        case '\r': s_ += "\\r"; break;
        case '\t': s_ += "\\t"; break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            s_ += buf;
          } else {
            s_ += c;
          }
      }
    }
    s_ += '"';
  }
  std::string s_;
};

}  // namespace pgolf
