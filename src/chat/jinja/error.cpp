#include "chat/jinja/error.h"

#include <algorithm>

#include "chat/jinja/unicode.h"
#include "util/error.h"

namespace llm42::jinja {

std::string describe_position(const std::string& source, uint32_t offset) {
  const size_t end = std::min<size_t>(offset, source.size());
  const size_t line = 1 + static_cast<size_t>(std::count(source.begin(), source.begin() + end, '\n'));
  const size_t line_start = source.rfind('\n', end == 0 ? 0 : end - 1);
  const size_t begin = (line_start == std::string::npos || end == 0) ? 0 : line_start + 1;
  const size_t column = 1 + unicode::length(std::string_view(source).substr(begin, end - begin));
  return fmt::format("line {}, column {}", line, column);
}

void fail_at(const std::string& origin, const std::string& source, uint32_t offset,
             const std::string& message) {
  fail("chat template '{}', {}: {}", origin, describe_position(source, offset), message);
}

}  // namespace llm42::jinja
