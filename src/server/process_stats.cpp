#include "server/process_stats.h"

#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace llm42::server {
namespace {

// /proc/stat's btime: the boot time in seconds since the epoch, or 0.
double boot_time() {
  std::ifstream in("/proc/stat");
  std::string key;
  while (in >> key) {
    if (key == "btime") {
      double t = 0;
      in >> t;
      return t;
    }
    in.ignore(1 << 20, '\n');
  }
  return 0;
}

}  // namespace

ProcessStats read_process_stats() {
  ProcessStats p;
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const int64_t page = sysconf(_SC_PAGESIZE);
  std::ifstream stat_file("/proc/self/stat");
  std::string stat;
  std::getline(stat_file, stat);
  // Fields after the command name (which may hold spaces), from field 3 (state) on.
  const size_t paren = stat.rfind(')');
  if (paren != std::string::npos && ticks > 0) {
    std::istringstream fields(stat.substr(paren + 2));
    std::string f[23];
    for (std::string& x : f) fields >> x;
    // man 5 proc: utime 14, stime 15, starttime 22, vsize 23, rss 24 (1-based field numbers).
    try {
      p.cpu_seconds = (std::stod(f[11]) + std::stod(f[12])) / ticks;
      p.start_time_seconds = boot_time() + std::stod(f[19]) / ticks;
      p.virtual_bytes = std::stoll(f[20]);
      p.resident_bytes = std::stoll(f[21]) * page;
    } catch (const std::exception&) {
      p = ProcessStats{};
    }
  }
  std::error_code ec;
  for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end;
       it.increment(ec))
    ++p.open_fds;
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY)
    p.max_fds = static_cast<int64_t>(lim.rlim_cur);
  return p;
}

}  // namespace llm42::server
