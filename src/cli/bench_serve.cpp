#include "cli/commands.h"

namespace llm42::cli {

void register_bench_serve(CLI::App& bench) {
  CLI::App* sub = bench.add_subcommand("serve", "Load-test a running server");
  bind(*sub, [] { return 1; });
}

}  // namespace llm42::cli
