// A request body as JSON, checked the way every endpoint checks it, and typed reads of its
// fields that name the field when it is wrong ("'add_special_tokens' must be a boolean, not a
// string", param "add_special_tokens").
//
// The completions parser (openai_request.cpp) has its own copies of these checks; they are meant
// to move here, so that one body parser serves every endpoint.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace llm42::server {

// The body as a JSON object. Throws ApiError 400 (no param) for an empty body, invalid UTF-8,
// nesting deeper than `max_depth` (checked before parsing, so no input makes the parser
// recurse without bound), invalid JSON, or a value that is not an object.
nlohmann::json parse_json_object(std::string_view body, int max_depth);

// The value of `key`, or null when it is absent or JSON null (both mean "not given").
const nlohmann::json* json_field(const nlohmann::json& obj, const char* key);

// Typed reads; each throws ApiError 400 naming `name`.
bool json_bool(const nlohmann::json& v, const std::string& name);
const std::string& json_string(const nlohmann::json& v, const std::string& name);
// An integer in [lo, hi]; integral floats (2.0) count, as OpenAI's validation accepts them.
int64_t json_integer(const nlohmann::json& v, const std::string& name, int64_t lo, int64_t hi);

}  // namespace llm42::server
