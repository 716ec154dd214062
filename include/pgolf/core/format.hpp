// printf-style formatting into a std::string, for log lines in the reference trainer's format.
#pragma once

#include <cstdio>
#include <string>

namespace pgolf {

template <class... A>
std::string format(const char* f, A... a) {
  const int n = std::snprintf(nullptr, 0, f, a...);
  std::string s(std::size_t(n > 0 ? n : 0), '\0');
  std::snprintf(s.data(), s.size() + 1, f, a...);
  return s;
}

}  // namespace pgolf
