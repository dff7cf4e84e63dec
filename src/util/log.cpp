#include "util/log.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

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

std::atomic<LogFormat>& format_ref() {
  static std::atomic<LogFormat> format{LogFormat::kText};
  return format;
}

const char* level_name(LogLevel level) {
  static const char* names[] = {"debug", "info", "warn", "error"};
  return names[static_cast<int>(level)];
}

// 2026-12-06T07:10:17.123Z
std::string timestamp() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  const size_t n = std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:03d}Z", std::string_view(buf, n), ms);
}

void write_line(std::string_view line) {
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  std::fprintf(stderr, "%.*s\n", static_cast<int>(line.size()), line.data());
}

std::string dump(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// A text field value: as is when it is one plain word, else a JSON string.
std::string text_value(const LogField& f) {
  return std::visit(
      [](const auto& v) -> std::string {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string_view>) {
          const bool plain = !v.empty() && std::all_of(v.begin(), v.end(), [](char c) {
            return static_cast<unsigned char>(c) > 0x20 && c != '"' && c != '\\' && c != 0x7f;
          });
          return plain ? std::string(v) : dump(nlohmann::json(v));
        } else if constexpr (std::is_same_v<T, bool>) {
          return v ? "true" : "false";
        } else {
          return fmt::format("{}", v);
        }
      },
      f.value);
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

void set_log_format(LogFormat format) { format_ref().store(format); }

LogFormat parse_log_format(std::string_view name) {
  if (name == "text") return LogFormat::kText;
  if (name == "json") return LogFormat::kJson;
  fail("unknown log format '{}' (expected text or json)", name);
}

void log_write(LogLevel level, std::string_view msg) {
  if (format_ref().load() == LogFormat::kJson) {
    write_line(dump(
        nlohmann::json{{"time", timestamp()}, {"level", level_name(level)}, {"message", msg}}));
  } else {
    write_line(fmt::format("[llm42 {} {}] {}", timestamp(), level_name(level), msg));
  }
}

void log_event(LogLevel level, std::string_view event, std::initializer_list<LogField> fields) {
  if (level < log_level()) return;
  if (format_ref().load() == LogFormat::kJson) {
    nlohmann::json j{{"time", timestamp()}, {"level", level_name(level)}, {"event", event}};
    for (const LogField& f : fields)
      std::visit([&](const auto& v) { j[std::string(f.key)] = v; }, f.value);
    write_line(dump(j));
    return;
  }
  std::string line = fmt::format("[llm42 {} {}] {}", timestamp(), level_name(level), event);
  for (const LogField& f : fields)
    fmt::format_to(std::back_inserter(line), " {}={}", f.key, text_value(f));
  write_line(line);
}

}  // namespace llm42
