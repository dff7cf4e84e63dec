// `llm42 bench`'s progress line: it advances with output tokens, before any request finishes,
// and is drawn on a terminal only.
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

#include "bench/progress_bar.h"

namespace llm42::bench {
namespace {

TEST(BenchProgress, AdvancesWithTokens) {
  Progress p;
  p.tokens_total = 1000;
  p.requests_total = 4;
  p.seconds = 1.25;
  EXPECT_EQ(progress_line(p, 10), "[..........] 0/1000 tokens  0/4 requests  1.2 s");
  p.tokens_done = 500;  // half the tokens, no request finished yet
  EXPECT_EQ(progress_line(p, 10), "[#####.....] 500/1000 tokens  0/4 requests  1.2 s");
  p.tokens_done = 1000;
  p.requests_done = 4;
  EXPECT_EQ(progress_line(p, 10), "[##########] 1000/1000 tokens  4/4 requests  1.2 s");
  p.tokens_done = 1200;  // more than expected (never past the bar's end)
  EXPECT_EQ(progress_line(p, 4).substr(0, 6), "[####]");
}

TEST(BenchProgress, OnlyOnATerminal) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  EXPECT_FALSE(progress_on_terminal(true, fds[1])) << "a pipe is not a terminal";
  EXPECT_FALSE(progress_on_terminal(false, fds[1]));
  close(fds[0]);
  close(fds[1]);
}

}  // namespace
}  // namespace llm42::bench
