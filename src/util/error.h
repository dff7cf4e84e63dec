// Errors. User-facing failures (a bad file, a bad request, a bad flag) throw llm42::Error with a
// message that names the thing; broken internal invariants are LLM42_ASSERT, which aborts with
// file:line, because continuing would corrupt another request's state.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace llm42 {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

[[noreturn]] void assertion_failed(const char* expr, const char* file, int line,
                                   const std::string& msg);

}  // namespace llm42

#define LLM42_ASSERT(cond, ...)                                                          \
  do {                                                                                   \
    if (!(cond)) [[unlikely]]                                                            \
      ::llm42::assertion_failed(#cond, __FILE__, __LINE__, ::fmt::format("" __VA_ARGS__)); \
  } while (0)
