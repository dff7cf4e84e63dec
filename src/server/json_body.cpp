#include "server/json_body.h"

#include <fmt/format.h>

#include <cmath>
#include <limits>

#include "server/api_error.h"
#include "tokenizer/utf8.h"

namespace llm42::server {
namespace {

using json = nlohmann::ordered_json;

std::string_view type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::string:
      return "a string";
    case json::value_t::array:
      return "an array";
    case json::value_t::object:
      return "an object";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return "an integer";
    case json::value_t::number_float:
      return "a number";
    default:
      return "an unsupported value";
  }
}

// Offset of the first byte that does not start a well-formed UTF-8 character, or npos.
size_t find_invalid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const size_t len = utf8::char_length(s, i);
    if (len == 0) return i;
    i += len;
  }
  return std::string_view::npos;
}

// Depth of [ and { outside strings, before the parser sees the text.
void check_depth(std::string_view body, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < body.size(); ++i) {
    const char c = body[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth)
        throw invalid_request(
            "", fmt::format("the request body is nested deeper than {} levels", max_depth));
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
}

}  // namespace

json parse_json_object(std::string_view body, int max_depth) {
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos)
    throw invalid_request("", "the request body is empty: expected a JSON object");
  if (const size_t bad = find_invalid_utf8(body); bad != std::string_view::npos)
    throw invalid_request("", fmt::format("the request body is not valid UTF-8 (byte {})", bad));
  check_depth(body, max_depth);
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
        "", fmt::format("the request body must be a JSON object, not {}", type_name(v)));
  return v;
}

const json* json_field(const json& obj, const char* key) {
  const auto it = obj.find(key);
  return it == obj.end() || it->is_null() ? nullptr : &*it;
}

void json_type_error(const std::string& name, std::string_view expected, const json& v) {
  throw invalid_request(name, fmt::format("'{}' must be {}, not {}", name, expected, type_name(v)));
}

bool json_bool(const json& v, const std::string& name) {
  if (!v.is_boolean()) json_type_error(name, "a boolean", v);
  return v.get<bool>();
}

const std::string& json_string(const json& v, const std::string& name) {
  if (!v.is_string()) json_type_error(name, "a string", v);
  return v.get_ref<const std::string&>();
}

double json_number(const json& v, const std::string& name, double lo, double hi,
                   std::string_view range) {
  if (!v.is_number()) json_type_error(name, "a number", v);
  const double x = v.get<double>();
  if (!(x >= lo && x <= hi))
    throw invalid_request(
        name, fmt::format("'{}' = {} is out of range: must be in {}", name, v.dump(), range));
  return x;
}

int64_t json_integer(const json& v, const std::string& name, int64_t lo, int64_t hi) {
  const auto out_of_range = [&] {
    return invalid_request(name, fmt::format("'{}' = {} is out of range: must be in [{}, {}]", name,
                                             v.dump(), lo, hi));
  };
  int64_t x = 0;
  if (v.is_number_unsigned()) {
    // The parser reads every non-negative integer as unsigned; past int64 none is in range.
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) throw out_of_range();
    x = static_cast<int64_t>(u);
  } else if (v.is_number_integer()) {
    x = v.get<int64_t>();
  } else if (v.is_number_float()) {
    const double d = v.get<double>();
    if (!std::isfinite(d) || d != std::floor(d)) json_type_error(name, "an integer", v);
    // Inside int64 with room to spare, so the cast below is defined.
    if (d < -9.2e18 || d > 9.2e18) throw out_of_range();
    x = static_cast<int64_t>(d);
  } else {
    json_type_error(name, "an integer", v);
  }
  if (x < lo || x > hi) throw out_of_range();
  return x;
}

}  // namespace llm42::server
