// Minimal leveled logging to stderr, one line per message with a UTC ISO-8601 timestamp. The
// level is set once at start-up (LLM42_LOG or --log-level), and so is the format: text
// ("[llm42 2026-12-06T07:10:17.123Z info] message") or JSON, one object per line
// ({"time": ..., "level": ..., "message": ...}) for log collectors.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <initializer_list>
#include <string_view>
#include <variant>

namespace llm42 {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3, kOff = 4 };

void set_log_level(LogLevel level);
LogLevel log_level();
LogLevel parse_log_level(std::string_view name);
void log_write(LogLevel level, std::string_view msg);

enum class LogFormat { kText, kJson };
void set_log_format(LogFormat format);
LogFormat parse_log_format(std::string_view name);

// One field of a structured line.
struct LogField {
  std::string_view key;
  std::variant<std::string_view, int64_t, double, bool> value;
};
// A structured line: text "EVENT key=value ..." (strings with spaces or quotes quoted), or JSON
// {"time": ..., "level": ..., "event": EVENT, key: value, ...}.
void log_event(LogLevel level, std::string_view event, std::initializer_list<LogField> fields);

template <typename... Args>
void log(LogLevel level, fmt::format_string<Args...> f, Args&&... args) {
  if (level < log_level()) return;
  log_write(level, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void log_info(fmt::format_string<Args...> f, Args&&... args) {
  log(LogLevel::kInfo, f, std::forward<Args>(args)...);
}
template <typename... Args>
void log_warn(fmt::format_string<Args...> f, Args&&... args) {
  log(LogLevel::kWarn, f, std::forward<Args>(args)...);
}
template <typename... Args>
void log_debug(fmt::format_string<Args...> f, Args&&... args) {
  log(LogLevel::kDebug, f, std::forward<Args>(args)...);
}

}  // namespace llm42
