#include "cli/commands.h"

namespace llm42::cli {

void register_check(CLI::App& app) {
  CLI::App* sub = app.add_subcommand("check", "Check a server's determinism");
  bind(*sub, [] { return 1; });
}

}  // namespace llm42::cli
