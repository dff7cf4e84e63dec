// Registration of the subcommands. Each subcommand lives in its own file and adds itself to the
// CLI11 app with a callback that runs it.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <vector>

#include "core/version.h"

namespace llm42::cli {

using Register = std::function<void(CLI::App&)>;
using Run = std::function<int()>;

// Every subcommand's registration function, in the order they appear in --help.
std::vector<Register> all_commands();

// Binds `run` to the subcommand `sub`; run_selected calls it after parsing.
void bind(CLI::App& sub, Run run);
int run_selected(CLI::App& sub);

void register_generate(CLI::App& app);
void register_tokenize(CLI::App& app);
void register_serve(CLI::App& app);
void register_check(CLI::App& app);
void register_bench(CLI::App& app);
// `llm42 bench serve`, `llm42 bench plot` and `llm42 bench work`: subcommands of bench,
// registered by register_bench.
void register_bench_serve(CLI::App& bench);
void register_bench_plot(CLI::App& bench);
void register_bench_work(CLI::App& bench);

}  // namespace llm42::cli
