#include "server/json_body.h"

#include <fmt/format.h>

#include <cmath>

#include "server/api_error.h"
#include "tokenizer/utf8.h"

namespace llm42::server {
namespace {

using json = nlohmann::json;

std::string_view kind_of(const json& v) {
  if (v.is_null()) return "null";
  if (v.is_boolean()) return "a boolean";
  if (v.is_string()) return "a string";
  if (v.is_array()) return "an array";
  if (v.is_object()) return "an object";
  if (v.is_number_integer()) return "an integer";
  return "a number";
}

[[noreturn]] void wrong_type(const std::string& name, std::string_view expected, const json& v) {
  throw invalid_request(name, fmt::format("'{}' must be {}, not {}", name, expected, kind_of(v)));
}

// Depth of [ and { outside strings, before the parser sees the text.
void refuse_deep_nesting(std::string_view body, int max_depth) {
  int depth = 0;
  bool quoted = false;
  for (size_t i = 0; i < body.size(); ++i) {
    const char c = body[i];
    if (quoted) {
      if (c == '\\') ++i;
      quoted = c != '"';
      continue;
    }
    if (c == '"') quoted = true;
    if ((c == '[' || c == '{') && ++depth > max_depth)
      throw invalid_request(
          "", fmt::format("the request body is nested deeper than {} levels", max_depth));
    if (c == ']' || c == '}') --depth;
  }
}

}  // namespace

json parse_json_object(std::string_view body, int max_depth) {
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos)
    throw invalid_request("", "the request body is empty: expected a JSON object");
  for (size_t i = 0; i < body.size();) {
    const size_t len = utf8::char_length(body, i);
    if (len == 0)
      throw invalid_request("", fmt::format("the request body is not valid UTF-8 (byte {})", i));
    i += len;
  }
  refuse_deep_nesting(body, max_depth);
  json v;
  try {
    v = json::parse(body);
  } catch (const json::exception& e) {
    // A syntax error, or a number too large for a double. Drop the library's
    // "[json.exception.parse_error.101] " prefix.
    std::string_view why = e.what();
    if (const size_t at = why.find("] "); at != std::string_view::npos) why.remove_prefix(at + 2);
    throw invalid_request("", fmt::format("the request body is not valid JSON: {}", why));
  }
  if (!v.is_object())
    throw invalid_request(
        "", fmt::format("the request body must be a JSON object, not {}", kind_of(v)));
  return v;
}

const json* json_field(const json& obj, const char* key) {
  const auto it = obj.find(key);
  return it == obj.end() || it->is_null() ? nullptr : &*it;
}

bool json_bool(const json& v, const std::string& name) {
  if (!v.is_boolean()) wrong_type(name, "a boolean", v);
  return v.get<bool>();
}

const std::string& json_string(const json& v, const std::string& name) {
  if (!v.is_string()) wrong_type(name, "a string", v);
  return v.get_ref<const std::string&>();
}

int64_t json_integer(const json& v, const std::string& name, int64_t lo, int64_t hi) {
  const bool integral =
      v.is_number_integer() || (v.is_number_float() && std::isfinite(v.get<double>()) &&
                                v.get<double>() == std::floor(v.get<double>()));
  if (!integral) wrong_type(name, "an integer", v);
  // Compared as doubles too, so that huge values (unsigned, 1e300) are out of range, not wrapped.
  const double d = v.get<double>();
  const bool in_range = v.is_number_float() || v.is_number_unsigned()
                            ? d >= static_cast<double>(lo) && d <= static_cast<double>(hi)
                            : v.get<int64_t>() >= lo && v.get<int64_t>() <= hi;
  if (!in_range)
    throw invalid_request(name, fmt::format("'{}' = {} is out of range: must be in [{}, {}]", name,
                                            v.dump(), lo, hi));
  return v.is_number_float() ? static_cast<int64_t>(d) : v.get<int64_t>();
}

}  // namespace llm42::server
