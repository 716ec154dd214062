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
[[noreturn]] inline void throw_error(const std::string& message, const char* file, int line) {
  throw Error(message + " [" + file + ":" + std::to_string(line) + "]");
}

// Arguments by value: a string literal decays to const char*, so the checks share a few
// instantiations instead of one per combination of message lengths (hundreds in a variant binary,
// each a copy of the stream code: compile time). Cold and out of line, off the checked paths.
template <class... Args>
[[noreturn]] [[gnu::cold]] [[gnu::noinline]] void fail(const char* file, int line, Args... args) {
  std::ostringstream os;
  (os << ... << args);
  throw_error(os.str(), file, line);
}
}  // namespace detail

}  // namespace pgolf

// PGOLF_CHECK(cond, "message parts", value, ...): throws pgolf::Error when cond is false.
#define PGOLF_CHECK(cond, ...)                                      \
  do {                                                              \
    if (!(cond)) ::pgolf::detail::fail(__FILE__, __LINE__, __VA_ARGS__); \
  } while (0)

#define PGOLF_FAIL(...) ::pgolf::detail::fail(__FILE__, __LINE__, __VA_ARGS__)
