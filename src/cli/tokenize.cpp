#include "cli/commands.h"

namespace llm42::cli {

void register_tokenize(CLI::App& app) {
  CLI::App* sub = app.add_subcommand("tokenize", "Encode or decode text with a model's tokenizer");
  bind(*sub, [] { return 0; });
}

}  // namespace llm42::cli
