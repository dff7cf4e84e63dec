// Lab: the tensor-parallel exchanges' ceilings on this machine's GPUs (DESIGN.md §7, issue 25),
// through the engine's own NCCL communicator (one thread and one GPU per rank, as the engine
// runs them), for the Llama-3.1-8B shape (hidden 4096) at the sizes its passes exchange:
//   all-reduce bf16   the fast lane's row-parallel exchange: M x 4096 bf16 partials a layer
//   all-gather fp32   the canonical lane's: every rank's fp32 subtree sums, M x 4096 a rank
//   all-reduce 1 GiB  fp32, the bus bandwidth NCCL reaches on large messages
// at M = 1, 8, 64, 256 (decode steps) and 2048 (a prefill pass), for every group size N in
// {2, 4, 8} this machine has GPUs for (--sizes to choose; N = 1 only runs the path: NCCL then
// copies locally). Times are the slowest rank's median of --reps calls, each timed alone on its
// stream (latency included); algbw = bytes a rank ends with / time; busbw as nccl-tests defines
// it: algbw x 2 (N - 1) / N for an all-reduce, algbw x (N - 1) / N for an all-gather.
// NVLink multicast stays off (NCCL_NVLS_ENABLE=0 unless set). Prints a table and writes JSON.
//
//   ./build/bin/cuda_nccl_lab [--sizes 2,4,8] [--ms 1,8,64,256,2048] [--reps 20] [--json FILE]
#if defined(LLM42_HAVE_CUDA) && defined(LLM42_HAVE_NCCL)
#include <cuda_runtime.h>

#include <algorithm>
#include <barrier>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "cuda_lab_util.h"
#include "parallel/communicator_group.h"

namespace {

using namespace llm42;
using lab::parse_list;

constexpr int64_t kHidden = 4096;

struct Case {
  std::string op;    // "all-reduce" or "all-gather"
  std::string what;  // the exchange it stands for
  DType dtype;
  int64_t m;         // rows of kHidden (0: the 1 GiB message)
  int64_t elements;  // a rank's input
};

std::vector<Case> cases(const std::vector<int>& ms) {
  std::vector<Case> c;
  for (const int m : ms)
    c.push_back({"all-reduce", "fast lane, row-parallel", DType::kBF16, m, m * kHidden});
  for (const int m : ms)
    c.push_back({"all-gather", "canonical lane, subtree sums", DType::kF32, m, m * kHidden});
  c.push_back({"all-reduce", "1 GiB fp32 (bus bandwidth)", DType::kF32, 0, int64_t{1} << 28});
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> sizes, ms = {1, 8, 64, 256, 2048};
  int reps = 20;
  std::string json_path;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--sizes" && i + 1 < argc) {
      sizes = parse_list(argv[++i]);
    } else if (a == "--ms" && i + 1 < argc) {
      ms = parse_list(argv[++i]);
    } else if (a == "--reps" && i + 1 < argc) {
      reps = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--json" && i + 1 < argc) {
      json_path = argv[++i];
    } else {
      std::fprintf(stderr,
                   "usage: cuda_nccl_lab [--sizes N,...] [--ms M,...] [--reps R] [--json FILE]\n");
      return 2;
    }
  }
  const int gpus = cuda_device_count();
  if (gpus == 0) {
    std::printf("cuda_nccl_lab: no CUDA GPU\n");
    return 0;
  }
  if (sizes.empty()) {
    for (const int n : {2, 4, 8})
      if (n <= gpus) sizes.push_back(n);
    if (sizes.empty()) {
      std::printf("one GPU: N = 1 only (NCCL copies locally; the numbers check the path, not "
                  "NVLink)\n");
      sizes.push_back(1);
    }
  }
  const std::vector<Case> all = cases(ms);
  nlohmann::json rows = nlohmann::json::array();
  std::printf("%3s  %-10s  %-31s  %5s  %10s  %9s  %9s  %9s\n", "N", "op", "exchange", "M",
              "MB a rank", "us", "algbw", "busbw");
  for (const int n : sizes) {
    if (n < 1 || n > gpus) {
      std::printf("N = %d: skipped, %d GPU(s)\n", n, gpus);
      continue;
    }
    auto group = make_communicator_group(CommKind::kNccl, n, "cuda");
    std::barrier sync(n);
    std::mutex mu;  // guards worst and error
    std::vector<double> worst(all.size(), 0.0);
    std::string error;
    std::vector<std::thread> ranks;
    for (int r = 0; r < n; ++r) {
      ranks.emplace_back([&, r] {
        try {
          BackendOptions o;
          o.device = group->rank_device("cuda", r);
          o.cuda.memory_fraction = 0.1;
          CudaBackend b(o, r);
          std::unique_ptr<Communicator> comm = group->join(r, b);
          for (size_t i = 0; i < all.size(); ++i) {
            const Case& c = all[i];
            const size_t in_bytes = static_cast<size_t>(c.elements) * dtype_size(c.dtype);
            const size_t out_bytes = c.op == "all-gather" ? in_bytes * n : in_bytes;
            Buffer in(b, in_bytes), out(b, out_bytes);
            LLM42_CUDA_CHECK(cudaMemsetAsync(in.get(), 0, in_bytes, b.stream()));
            const Tensor ti(in.get(), c.dtype, Device::kCUDA, {c.elements});
            const Tensor to(out.get(), c.dtype, Device::kCUDA,
                            {static_cast<int64_t>(out_bytes / dtype_size(c.dtype))});
            sync.arrive_and_wait();
            const int case_reps = c.m == 0 ? std::min(reps, 5) : reps;
            const double us = lab::time_us(b, case_reps, [&](int) {
              if (c.op == "all-gather") {
                comm->all_gather(ti, to);
              } else {
                comm->all_reduce_sum(ti);
              }
            });
            std::lock_guard lock(mu);
            worst[i] = std::max(worst[i], us);
          }
          sync.arrive_and_wait();  // no rank leaves while another still exchanges
        } catch (const std::exception& e) {
          std::lock_guard lock(mu);
          if (error.empty()) error = "rank " + std::to_string(r) + ": " + e.what();
        }
      });
    }
    for (std::thread& t : ranks) t.join();
    if (!error.empty()) {
      std::fprintf(stderr, "N = %d: %s\n", n, error.c_str());
      return 1;
    }
    for (size_t i = 0; i < all.size(); ++i) {
      const Case& c = all[i];
      const double in_bytes = static_cast<double>(c.elements) * dtype_size(c.dtype);
      const bool gather = c.op == "all-gather";
      const double algbw = (gather ? in_bytes * n : in_bytes) / (worst[i] * 1e3);  // GB/s
      const double busbw = algbw * (gather ? (n - 1.0) / n : 2.0 * (n - 1.0) / n);
      std::printf("%3d  %-10s  %-31s  %5s  %10.3f  %9.1f  %9.1f  %9.1f\n", n, c.op.c_str(),
                  c.what.c_str(), c.m ? std::to_string(c.m).c_str() : "-", in_bytes / 1e6,
                  worst[i], algbw, busbw);
      rows.push_back({{"n", n},
                      {"op", c.op},
                      {"exchange", c.what},
                      {"dtype", dtype_name(c.dtype)},
                      {"m", c.m},
                      {"bytes_per_rank", in_bytes},
                      {"us", worst[i]},
                      {"algbw_gbs", algbw},
                      {"busbw_gbs", busbw}});
    }
  }
  if (!json_path.empty()) {
    std::ofstream f(json_path);
    f << nlohmann::json{{"gpus", gpus}, {"reps", reps}, {"rows", rows}}.dump(1) << "\n";
  }
  return 0;
}
#else
#include <cstdio>
int main() {
  std::printf("cuda_nccl_lab: this build has no CUDA backend with NCCL\n");
  return 0;
}
#endif
