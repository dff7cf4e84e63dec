// Stands in for src/chat/chat_template.cpp in the fuzz build (see fuzz/CMakeLists.txt): the
// fuzz targets give build_engine_requests no chat template, so rendering is unreachable and
// traps if ever reached.
#include "chat/chat_template.h"

namespace llm42 {

std::string ChatTemplate::render(const nlohmann::json&, bool, const nlohmann::json&) const {
  __builtin_trap();
}
std::string ChatTemplate::render(const nlohmann::ordered_json&, bool,
                                 const nlohmann::ordered_json&) const {
  __builtin_trap();
}

}  // namespace llm42
