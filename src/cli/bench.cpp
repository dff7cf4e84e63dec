#include "cli/commands.h"

namespace llm42::cli {

void register_bench(CLI::App& app) {
  CLI::App* sub = app.add_subcommand("bench", "Benchmark the engine in-process");
  register_bench_serve(*sub);
  bind(*sub, [] { return 1; });
}

}  // namespace llm42::cli
