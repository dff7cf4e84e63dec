// The progress line of a `llm42 bench` run: a bar that advances with output tokens (not only
// with finished requests, so that a run of long requests shows it moves), drawn on a terminal
// only: redirected output (a file, a pipe, CI logs) gets no carriage-return lines.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace llm42::bench {

struct Progress {
  int64_t tokens_done = 0, tokens_total = 0;  // output tokens
  size_t requests_done = 0, requests_total = 0;
  double seconds = 0;
};

// "[#####.....] 1234/5678 tokens  3/16 requests  2.5 s", the bar `width` characters wide.
std::string progress_line(const Progress& p, int width = 30);

// Whether to draw it: asked for, and `fd` is a terminal.
bool progress_on_terminal(bool wanted, int fd);

}  // namespace llm42::bench
