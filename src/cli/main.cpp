// llm42: one binary, one subcommand per job (generate, serve, bench, check).
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <string_view>
#include <vector>

#include "cli/commands.h"
#include "util/error.h"
#include "util/log.h"

int main(int argc, char** argv) {
  CLI::App app{"llm42: fast deterministic LLM inference"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("llm42 ") + llm42::kVersion);
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "debug, info, warn, error or off")
      ->capture_default_str();
  for (const auto& register_command : llm42::cli::all_commands()) register_command(app);
  // vLLM's `-tp N`: CLI11 takes one-letter short names only.
  std::vector<char*> args(argv, argv + argc);
  static char kTensorParallel[] = "--tensor-parallel-size";
  for (char*& a : args)
    if (std::string_view(a) == "-tp") a = kTensorParallel;
  try {
    app.parse(argc, args.data());
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    llm42::set_log_level(llm42::parse_log_level(log_level));
    // Run the deepest subcommand given (`bench serve` is `serve` under `bench`).
    CLI::App* selected = &app;
    for (bool deeper = true; deeper;) {
      deeper = false;
      for (CLI::App* sub : selected->get_subcommands()) {
        if (sub->parsed()) {
          selected = sub;
          deeper = true;
          break;
        }
      }
    }
    if (selected != &app) return llm42::cli::run_selected(*selected);
  } catch (const llm42::Error& e) {
    std::fprintf(stderr, "llm42: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "llm42: unexpected error: %s\n", e.what());
    return 2;
  }
  return 0;
}
