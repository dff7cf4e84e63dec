// Errors of the template interpreter. Pieces that do not know where in the template they are
// (filters, Python operations) throw EvalError; the interpreter catches it at the innermost
// template node being evaluated and rethrows it located, as llm42::Error naming the template's
// origin, line and column — the form every syntax and runtime error of a template takes.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace llm42::jinja {

class EvalError : public std::runtime_error {
 public:
  explicit EvalError(const std::string& what) : std::runtime_error(what) {}
};

template <typename... Args>
[[noreturn]] void eval_fail(fmt::format_string<Args...> f, Args&&... args) {
  throw EvalError(fmt::format(f, std::forward<Args>(args)...));
}

// "line L, column C" of an offset into a (normalized) template source; both count from 1 and
// columns count code points.
std::string describe_position(const std::string& source, uint32_t offset);

// Throws llm42::Error: "chat template '<origin>', line L, column C: <message>".
[[noreturn]] void fail_at(const std::string& origin, const std::string& source, uint32_t offset,
                          const std::string& message);

}  // namespace llm42::jinja
