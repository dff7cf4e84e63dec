#pragma once

namespace llm42 {
inline constexpr const char* kVersion = "0.1.0";
}  // namespace llm42
