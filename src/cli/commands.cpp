#include "cli/commands.h"

#include <map>

namespace llm42::cli {
namespace {
std::map<const CLI::App*, Run>& runs() {
  static std::map<const CLI::App*, Run> m;
  return m;
}
}  // namespace

std::vector<Register> all_commands() { return {register_generate, register_serve, register_bench, register_check, register_tokenize}; }

void bind(CLI::App& sub, Run run) { runs()[&sub] = std::move(run); }

int run_selected(CLI::App& sub) {
  auto it = runs().find(&sub);
  return it == runs().end() ? 1 : it->second();
}

}  // namespace llm42::cli
