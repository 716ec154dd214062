// A fixed-capacity string usable in constant expressions, so parameter tables with names such as
// "blocks.3.attn.c_q.weight" are built at compile time.
#pragma once

#include <cstddef>
#include <string_view>

namespace pgolf {

template <std::size_t N>
struct FixedString {
  char data[N]{};
  std::size_t size = 0;

  constexpr FixedString() = default;
  constexpr FixedString(const char* s) { append(s); }  // NOLINT: implicit on purpose

  constexpr FixedString& append(std::string_view s) {
    for (char c : s) {
      if (size + 1 >= N) throw "FixedString capacity exceeded";  // a compile error in constexpr
      data[size++] = c;
    }
    data[size] = '\0';
    return *this;
  }
  constexpr FixedString& append(long long value) {
    char digits[24]{};
    int n = 0;
    const bool negative = value < 0;
    unsigned long long u = negative ? 0ull - static_cast<unsigned long long>(value) : value;
    do {
      digits[n++] = char('0' + u % 10);
      u /= 10;
    } while (u != 0);
    if (negative) append("-");
    while (n > 0) {
      const char c[2] = {digits[--n], '\0'};
      append(std::string_view(c, 1));
    }
    return *this;
  }
  constexpr FixedString& append(int value) { return append(static_cast<long long>(value)); }
  constexpr std::string_view view() const { return {data, size}; }
  constexpr const char* c_str() const { return data; }
};

// A string literal as a template argument (Linear<"mlp.fc.weight", ...>).
template <std::size_t N>
struct FixedName {
  char data[N]{};
  constexpr FixedName(const char (&s)[N]) {  // NOLINT: implicit, from a literal
    for (std::size_t i = 0; i < N; ++i) data[i] = s[i];
  }
  constexpr std::string_view view() const { return {data, N - 1}; }
};

}  // namespace pgolf
