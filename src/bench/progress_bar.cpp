#include "bench/progress_bar.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>

namespace llm42::bench {

std::string progress_line(const Progress& p, int width) {
  const double share =
      p.tokens_total > 0
          ? std::clamp(static_cast<double>(p.tokens_done) / static_cast<double>(p.tokens_total),
                       0.0, 1.0)
          : 0.0;
  const int filled = static_cast<int>(share * width);
  return fmt::format("[{}{}] {}/{} tokens  {}/{} requests  {:.1f} s", std::string(filled, '#'),
                     std::string(width - filled, '.'), p.tokens_done, p.tokens_total,
                     p.requests_done, p.requests_total, p.seconds);
}

bool progress_on_terminal(bool wanted, int fd) { return wanted && isatty(fd) == 1; }

}  // namespace llm42::bench
