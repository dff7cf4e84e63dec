// The process's own resource use, as Prometheus client libraries export it (process_* metrics):
// CPU time, memory, file descriptors and start time, read from /proc on Linux.
#pragma once

#include <cstdint>

namespace llm42::server {

struct ProcessStats {
  double cpu_seconds = 0;      // user + system
  int64_t resident_bytes = 0;  // resident set size
  int64_t virtual_bytes = 0;   // virtual memory size
  int64_t open_fds = 0;
  int64_t max_fds = 0;            // the soft RLIMIT_NOFILE
  double start_time_seconds = 0;  // since the Unix epoch
};

// What the kernel reports now; fields it cannot read stay 0.
ProcessStats read_process_stats();

}  // namespace llm42::server
