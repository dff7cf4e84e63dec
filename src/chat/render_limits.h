// Bounds on one render of a chat template, so that a runaway template (a huge range, deep macro
// recursion, a string doubled in a loop) fails with a clear error instead of exhausting the
// server. The defaults are far above what any real chat template needs for a long conversation.
#pragma once

#include <cstddef>
#include <cstdint>

namespace llm42::jinja {

struct RenderLimits {
  size_t max_output_bytes = size_t{16} << 20;  // the rendered text, and any one string value
  uint64_t max_iterations = 1'000'000;  // loop iterations and macro calls, over the whole render
  int max_call_depth = 64;              // nested macro calls
  // Statements, expressions and macro calls nested at run time (each a few stack frames): the
  // parser bounds one template's nesting, but macro calls stack it.
  int max_depth = 1000;
};

}  // namespace llm42::jinja
