// The `tojson` filter as transformers defines it: Python's json.dumps with ensure_ascii=False by
// default and indent, separators and sort_keys passed through. Byte-for-byte Python's output:
// its separators (", " and ": ", or "," and ": " once indented), float repr, and escapes.
#pragma once

#include <optional>
#include <string>

#include "chat/jinja/value.h"

namespace llm42::jinja {

struct JsonDumpOptions {
  bool ensure_ascii = false;
  std::optional<std::string> indent;  // the text of one level; unset: everything on one line
  std::string item_separator = ", ";
  std::string key_separator = ": ";
  bool sort_keys = false;
};

// Throws EvalError for values JSON cannot hold (Undefined, a namespace, a function), as
// Python's "Object of type Undefined is not JSON serializable".
std::string json_dumps(const Value& v, const JsonDumpOptions& options);

}  // namespace llm42::jinja
