// Run-time contracts: a failed check throws pgolf::Error carrying file:line and a sentence that
// names the problem, so bad input never turns into a crash or silent garbage.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace pgolf {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
template <class... Args>
[[noreturn]] inline void fail(const char* file, int line, const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  os << " [" << file << ":" << line << "]";
  throw Error(os.str());
}
}  // namespace detail

}  // namespace pgolf

// PGOLF_CHECK(cond, "message parts", value, ...): throws pgolf::Error when cond is false.
#define PGOLF_CHECK(cond, ...)                                      \
  do {                                                              \
    if (!(cond)) ::pgolf::detail::fail(__FILE__, __LINE__, __VA_ARGS__); \
  } while (0)

#define PGOLF_FAIL(...) ::pgolf::detail::fail(__FILE__, __LINE__, __VA_ARGS__)
