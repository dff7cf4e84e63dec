#include "cli/commands.h"

namespace llm42::cli {

void register_generate(CLI::App& app) {
  CLI::App* sub = app.add_subcommand("generate", "Generate text from a prompt");
  bind(*sub, [] { return 0; });
}

}  // namespace llm42::cli
