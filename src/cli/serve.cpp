#include "cli/commands.h"

namespace llm42::cli {

void register_serve(CLI::App& app) {
  CLI::App* sub = app.add_subcommand("serve", "OpenAI-compatible HTTP server");
  bind(*sub, [] { return 1; });
}

}  // namespace llm42::cli
