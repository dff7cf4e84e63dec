// json_body: the body checks and typed field reads every endpoint shares, with their exact
// messages and params (clients and the Python tests read both).
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <functional>
#include <limits>
#include <string>

#include "server/api_error.h"
#include "server/json_body.h"

namespace llm42::server {
namespace {

using json = nlohmann::ordered_json;

// "param|message" of the ApiError `f` throws ("<null>" for no param), or "<ok>".
std::string error_of(const std::function<void()>& f) {
  try {
    f();
    return "<ok>";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), 400);
    EXPECT_EQ(e.type(), "invalid_request_error");
    return (e.param() ? *e.param() : "<null>") + "|" + e.what();
  }
}

std::string body_error(const std::string& body, int max_depth = 64) {
  return error_of([&] { parse_json_object(body, max_depth); });
}

TEST(ServerJsonBody, BodyErrors) {
  EXPECT_EQ(body_error(" \r\n\t"), "<null>|the request body is empty: expected a JSON object");
  EXPECT_EQ(body_error("{\"a\": \"x\xff\"}"),
            "<null>|the request body is not valid UTF-8 (byte 8)");
  EXPECT_EQ(body_error("[[[]]]", 2), "<null>|the request body is nested deeper than 2 levels");
  // Brackets inside strings, escaped quotes included, do not count.
  EXPECT_EQ(body_error("{\"a\": \"[[[\\\"[[\"}", 1), "<ok>");
  EXPECT_EQ(body_error("[1, 2]"), "<null>|the request body must be a JSON object, not an array");
  EXPECT_EQ(body_error("7"), "<null>|the request body must be a JSON object, not an integer");
  const std::string syntax = body_error("{\"a\": 1,}");
  EXPECT_EQ(syntax,
            "<null>|the request body is not valid JSON: parse error at line 1, column 9: syntax "
            "error while parsing object key - unexpected '}'; expected string literal");
}

TEST(ServerJsonBody, KeepsKeyOrder) {
  const json body = parse_json_object("{\"z\": 1, \"a\": {\"y\": 2, \"b\": 3}}", 64);
  EXPECT_EQ(body.dump(), "{\"z\":1,\"a\":{\"y\":2,\"b\":3}}");
}

TEST(ServerJsonBody, Field) {
  const json body = json::parse("{\"a\": null, \"b\": 0}");
  EXPECT_EQ(json_field(body, "a"), nullptr);  // null means "not given"
  EXPECT_EQ(json_field(body, "c"), nullptr);
  ASSERT_NE(json_field(body, "b"), nullptr);
  EXPECT_EQ(*json_field(body, "b"), 0);
}

TEST(ServerJsonBody, TypedReads) {
  EXPECT_TRUE(json_bool(json(true), "x"));
  EXPECT_EQ(json_string(json("s"), "x"), "s");
  EXPECT_EQ(error_of([] { json_bool(json("yes"), "flag"); }),
            "flag|'flag' must be a boolean, not a string");
  EXPECT_EQ(error_of([] { json_string(json(1.5), "model"); }),
            "model|'model' must be a string, not a number");
  EXPECT_EQ(error_of([] { json_type_error("tools", "an array", json::object()); }),
            "tools|'tools' must be an array, not an object");
  EXPECT_EQ(json_number(json(1), "top_p", 0.0, 1.0, "(0, 1]"), 1.0);
  EXPECT_EQ(error_of([] { json_number(json(1.5), "top_p", 0.0, 1.0, "(0, 1]"); }),
            "top_p|'top_p' = 1.5 is out of range: must be in (0, 1]");
  EXPECT_EQ(error_of([] { json_number(json(nullptr), "top_p", 0.0, 1.0, "(0, 1]"); }),
            "top_p|'top_p' must be a number, not null");
}

TEST(ServerJsonBody, Integer) {
  const auto read = [](const char* text, int64_t lo, int64_t hi) {
    return json_integer(json::parse(text), "n", lo, hi);
  };
  EXPECT_EQ(read("3", 0, 5), 3);
  EXPECT_EQ(read("-3", -5, 5), -3);
  EXPECT_EQ(read("2.0", 0, 5), 2);  // integral floats count
  EXPECT_EQ(error_of([&] { read("2.5", 0, 5); }), "n|'n' must be an integer, not a number");
  EXPECT_EQ(error_of([&] { read("true", 0, 5); }), "n|'n' must be an integer, not a boolean");
  EXPECT_EQ(error_of([&] { read("6", 0, 5); }), "n|'n' = 6 is out of range: must be in [0, 5]");
  // Past int64, as unsigned or as float: out of range, never wrapped, even where the range is
  // all of int64.
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  EXPECT_EQ(read("9223372036854775807", kMin, kMax), kMax);
  for (const char* huge : {"18446744073709551615", "9223372036854775808", "9.3e18", "-1e19"})
    EXPECT_EQ(error_of([&] { read(huge, kMin, kMax); }),
              fmt::format("n|'n' = {} is out of range: must be in [{}, {}]",
                          json::parse(huge).dump(), kMin, kMax));
  EXPECT_EQ(error_of([&] { read("1e300", 0, 5); }),
            "n|'n' = 1e+300 is out of range: must be in [0, 5]");
}

}  // namespace
}  // namespace llm42::server
