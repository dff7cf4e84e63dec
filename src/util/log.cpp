#include "util/log.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>

#include "util/error.h"

namespace llm42 {
namespace {

LogLevel initial_level() {
  const char* env = std::getenv("LLM42_LOG");
  if (env == nullptr) return LogLevel::kInfo;
  try {
    return parse_log_level(env);
  } catch (const Error&) {
    return LogLevel::kInfo;
  }
}

std::atomic<LogLevel>& level_ref() {
  static std::atomic<LogLevel> level{initial_level()};
  return level;
}

}  // namespace

void set_log_level(LogLevel level) { level_ref().store(level); }
LogLevel log_level() { return level_ref().load(std::memory_order_relaxed); }

LogLevel parse_log_level(std::string_view name) {
  if (name == "debug") return LogLevel::kDebug;
  if (name == "info") return LogLevel::kInfo;
  if (name == "warn" || name == "warning") return LogLevel::kWarn;
  if (name == "error") return LogLevel::kError;
  if (name == "off") return LogLevel::kOff;
  fail("unknown log level '{}' (expected debug, info, warn, error or off)", name);
}

void log_write(LogLevel level, std::string_view msg) {
  static std::mutex mu;
  static const char* names[] = {"debug", "info", "warn", "error"};
  // A readable UTC time, to the millisecond (ISO 8601).
  const auto now = std::chrono::system_clock::now();
  const std::time_t secs = std::chrono::system_clock::to_time_t(now);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch());
  std::tm utc{};
  gmtime_r(&secs, &utc);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &utc);
  std::lock_guard<std::mutex> lock(mu);
  std::fprintf(stderr, "[llm42 %s.%03dZ %s] %.*s\n", stamp, static_cast<int>(ms.count() % 1000),
               names[static_cast<int>(level)], static_cast<int>(msg.size()), msg.data());
}

}  // namespace llm42
