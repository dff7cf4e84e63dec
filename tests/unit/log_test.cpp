// The logger's two formats: text lines with a readable UTC timestamp, and one JSON object per
// line, for plain messages and for structured events such as the server's access log.
#include "util/log.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <regex>
#include <string>

#include "util/error.h"

namespace llm42 {
namespace {

// Runs `f` with the given format and returns what it wrote to stderr.
template <typename F>
std::string captured(LogFormat format, F f) {
  const LogLevel level = log_level();
  set_log_level(LogLevel::kInfo);
  set_log_format(format);
  testing::internal::CaptureStderr();
  f();
  std::string out = testing::internal::GetCapturedStderr();
  set_log_format(LogFormat::kText);
  set_log_level(level);
  return out;
}

void access_event() {
  log_event(LogLevel::kInfo, "access",
            {{"method", std::string_view("POST")},
             {"path", std::string_view("/v1/a b")},
             {"status", int64_t{200}},
             {"duration_ms", 12.5},
             {"deterministic", true}});
}

TEST(Log, TextLinesHaveAReadableTimestamp) {
  const std::string out = captured(LogFormat::kText, [] { log_info("hello {}", 42); });
  EXPECT_TRUE(std::regex_match(
      out, std::regex(R"(\[llm42 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z info\] hello 42\n)")))
      << out;
  const std::string event = captured(LogFormat::kText, access_event);
  EXPECT_NE(event.find(" info] access method=POST path=\"/v1/a b\" status=200 duration_ms=12.5 "
                       "deterministic=true\n"),
            std::string::npos)
      << event;
}

TEST(Log, JsonLinesAreObjects) {
  const std::string out = captured(LogFormat::kJson, [] { log_warn("bad \"byte\" \xff"); });
  const nlohmann::json j = nlohmann::json::parse(out);
  EXPECT_EQ(j["level"], "warn");
  EXPECT_EQ(j["message"], "bad \"byte\" \xef\xbf\xbd");  // invalid UTF-8 replaced
  EXPECT_TRUE(std::regex_match(j["time"].get<std::string>(),
                               std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")));
  const nlohmann::json e = nlohmann::json::parse(captured(LogFormat::kJson, access_event));
  EXPECT_EQ(e["event"], "access");
  EXPECT_EQ(e["path"], "/v1/a b");
  EXPECT_EQ(e["status"], 200);
  EXPECT_EQ(e["duration_ms"], 12.5);
  EXPECT_EQ(e["deterministic"], true);
  EXPECT_THROW(parse_log_format("xml"), Error);
}

}  // namespace
}  // namespace llm42
