// A request body as JSON, checked the way every endpoint checks it, and typed reads of its
// fields that name the field when it is wrong ("'add_special_tokens' must be a boolean, not a
// string", param "add_special_tokens"). The one body parser of the completions, chat and
// tokenizer endpoints (openai_request.cpp, tokenize_api.cpp).
//
// Ordered JSON, so that what a body holds (tool schemas) keeps the key order it was sent in when
// a chat template writes it back with tojson.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace llm42::server {

// The body as a JSON object. Throws ApiError 400 (no param) for an empty body, invalid UTF-8,
// nesting deeper than `max_depth` (checked before parsing, so no input makes parsing or
// destroying the document recurse without bound), invalid JSON, or a value that is not an object.
nlohmann::ordered_json parse_json_object(std::string_view body, int max_depth);

// The value of `key`, or null when it is absent or JSON null (OpenAI treats both as "not given").
const nlohmann::ordered_json* json_field(const nlohmann::ordered_json& obj, const char* key);

// Throws ApiError 400 naming `name`: "'<name>' must be <expected>, not <v's type>".
[[noreturn]] void json_type_error(const std::string& name, std::string_view expected,
                                  const nlohmann::ordered_json& v);

// Typed reads; each throws ApiError 400 naming `name`.
bool json_bool(const nlohmann::ordered_json& v, const std::string& name);
const std::string& json_string(const nlohmann::ordered_json& v, const std::string& name);
// A number in [lo, hi]; `range` is how the message writes the bounds ("(0, 1]" where the caller
// refuses lo itself).
double json_number(const nlohmann::ordered_json& v, const std::string& name, double lo, double hi,
                   std::string_view range);
// An integer in [lo, hi]; integral floats (2.0) count, as OpenAI's own validation accepts them.
int64_t json_integer(const nlohmann::ordered_json& v, const std::string& name, int64_t lo,
                     int64_t hi);

}  // namespace llm42::server
