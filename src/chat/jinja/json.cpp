#include "chat/jinja/json.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "chat/jinja/error.h"
#include "chat/jinja/python.h"
#include "chat/jinja/unicode.h"

namespace llm42::jinja {

namespace {

void append_escaped_unit(std::string& out, uint32_t unit) { out += fmt::format("\\u{:04x}", unit); }

void dump_string(std::string& out, const std::string& s, bool ensure_ascii) {
  out.push_back('"');
  for (char32_t c : unicode::decode(s)) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20) {
          append_escaped_unit(out, c);
        } else if (ensure_ascii && c > 0x7E) {
          if (c >= 0x10000) {
            const uint32_t v = c - 0x10000;
            append_escaped_unit(out, 0xD800 | (v >> 10));
            append_escaped_unit(out, 0xDC00 | (v & 0x3FF));
          } else {
            append_escaped_unit(out, c);
          }
        } else {
          unicode::append(out, c);
        }
    }
  }
  out.push_back('"');
}

void dump_float(std::string& out, double d) {
  if (std::isnan(d)) {
    out += "NaN";
  } else if (std::isinf(d)) {
    out += d > 0 ? "Infinity" : "-Infinity";
  } else {
    out += py::float_repr(d);
  }
}

class Dumper {
 public:
  explicit Dumper(const JsonDumpOptions& o) : o_(o) {}

  void dump(std::string& out, const Value& v, int depth) {
    switch (v.type()) {
      case Value::Type::kNone:
        out += "null";
        return;
      case Value::Type::kBool:
        out += v.as_bool() ? "true" : "false";
        return;
      case Value::Type::kInt:
        out += std::to_string(v.as_int());
        return;
      case Value::Type::kFloat:
        dump_float(out, v.as_double());
        return;
      case Value::Type::kString:
        dump_string(out, v.as_string(), o_.ensure_ascii);
        return;
      case Value::Type::kList: {
        const std::vector<Value>& items = v.items();
        if (items.empty()) {
          out += "[]";
          return;
        }
        out.push_back('[');
        for (size_t i = 0; i < items.size(); ++i) {
          separate(out, i == 0, depth + 1);
          dump(out, items[i], depth + 1);
        }
        close(out, depth);
        out.push_back(']');
        return;
      }
      case Value::Type::kDict: {
        const Object& o = v.as_dict();
        if (o.empty()) {
          out += "{}";
          return;
        }
        std::vector<const std::pair<std::string, Value>*> entries;
        for (const auto& e : o.entries()) entries.push_back(&e);
        if (o_.sort_keys)
          std::stable_sort(entries.begin(), entries.end(),
                           [](const auto* a, const auto* b) { return a->first < b->first; });
        out.push_back('{');
        for (size_t i = 0; i < entries.size(); ++i) {
          separate(out, i == 0, depth + 1);
          dump_string(out, entries[i]->first, o_.ensure_ascii);
          out += o_.key_separator;
          dump(out, entries[i]->second, depth + 1);
        }
        close(out, depth);
        out.push_back('}');
        return;
      }
      default:
        eval_fail("Object of type {} is not JSON serializable", py::type_name(v));
    }
  }

 private:
  // Before an item: the item separator (not before the first), then with an indent a newline
  // and the item's indentation.
  void separate(std::string& out, bool first, int depth) {
    if (!first) out += o_.item_separator;
    newline(out, depth);
  }
  void close(std::string& out, int depth) { newline(out, depth); }
  void newline(std::string& out, int depth) {
    if (!o_.indent) return;
    out.push_back('\n');
    for (int i = 0; i < depth; ++i) out += *o_.indent;
  }

  const JsonDumpOptions& o_;
};

}  // namespace

std::string json_dumps(const Value& v, const JsonDumpOptions& options) {
  std::string out;
  Dumper(options).dump(out, v, 0);
  return out;
}

}  // namespace llm42::jinja
