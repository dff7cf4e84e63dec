// Kernel lab: what tensor-parallel invariance costs (DESIGN.md §2, §7) for the Llama-3.1-8B
// row-parallel shapes (o: N 4096, K 4096; down: N 4096, K 14336), over M:
//   plain     the canonical lane's GEMM before the tree (one split-K-free cuBLASLt algorithm
//             per M bucket, bf16 out): what a canonical o/down cost at TP 1 until now
//   leaves    Backend::matmul_leaves with 8 leaves into bf16 as by default (a fused tree
//             kernel where the autotune admitted one for the bucket, else as `unfused`); `path`
//             says which ran
//   fused     the fused tree kernels alone, launched directly (admitted or not), the fastest
//             variant (the JSON has each)
//   unfused   the same without the fused kernel (--no-cuda-fused-tree): fp32 parts
//             (above the skinny range one strided-batched cuBLASLt call over the leaves), then
//             the tree kernel rounding once
//   per-leaf  unfused with one cuBLASLt call per leaf (GemmRunner::set_leaf_batching(false)):
//             the canonical lane at TP 1 before the leaves were batched
//   tree      unfused's second kernel alone: the 8 fp32 parts summed into bf16
//             (Backend::sum_parts), and the rate it moves their bytes at (GB/s; compare with
//             the copy column's rate, 2 x its bytes over its time)
//   subtree   the same at TP 2, 4, 8 on one rank's K slice (8/tp leaves), + the sum of the tp
//             subtrees (the exchange itself excluded: measured below)
// and the exchange: bytes a rank sends per row-parallel layer in the canonical lane (all-gather of
// fp32 subtree sums) and in the fast lane (all-reduce of bf16 partials), with the time of a
// device-to-device copy of those bytes here and the NVLink time predicted from a bus bandwidth
// (--bus-gbs, default 330 GB/s: NCCL all-reduce of 1 GiB on 2-8 H100s measured 329-361).
// Prints a table and writes JSON (--json FILE; `fused_variants` names the entries of each row's
// `fused_kernel_us`, null where a variant does not take that M).
//
// --profile WHAT runs nothing but one kernel for a profiler: for each shape and M, WHAT (a fused
// tree variant's number, `plain` or `unfused`) once to warm up, then once between
// cudaProfilerStart and cudaProfilerStop, so `ncu --profile-from-start off` sees exactly that
// launch (scripts/gpu-tp.sh PART=profile).
//
//   ./build/bin/cuda_tp_lab [--ms 1,8,...] [--bus-gbs 330] [--json out.json] [--profile WHAT]
#ifdef LLM42_HAVE_CUDA
#include <cuda_profiler_api.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/kernels.h"
#include "cuda_lab_util.h"
#include "model/sharding.h"

namespace {

using namespace llm42;
using lab::make;
using lab::parse_list;
using lab::time_us;

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> ms = {1, 8, 64, 256, 1024, 2048, 4096};
  double bus_gbs = 330.0;
  std::string json_path, profile;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--ms" && i + 1 < argc) {
      ms = parse_list(argv[++i]);
    } else if (a == "--bus-gbs" && i + 1 < argc) {
      bus_gbs = std::atof(argv[++i]);
    } else if (a == "--json" && i + 1 < argc) {
      json_path = argv[++i];
    } else if (a == "--profile" && i + 1 < argc) {
      profile = argv[++i];
    } else {
      std::fprintf(stderr,
                   "usage: cuda_tp_lab [--ms M,...] [--bus-gbs G] [--json FILE] "
                   "[--profile VARIANT|plain|unfused]\n");
      return 2;
    }
  }
  const bool profile_plain = profile == "plain", profile_unfused = profile == "unfused";
  int profile_variant = -1;  // a fused tree variant's number, else -1
  for (int v = 0; v < cuda::kTreeGemmVariants; ++v)
    if (profile == std::to_string(v)) profile_variant = v;
  if (!profile.empty() && !profile_plain && !profile_unfused && profile_variant < 0) {
    std::fprintf(stderr, "cuda_tp_lab: --profile takes plain, unfused or a variant 0..%d, not %s\n",
                 cuda::kTreeGemmVariants - 1, profile.c_str());
    return 2;
  }
  if (cuda_device_count() == 0) {
    std::printf("cuda_tp_lab: no CUDA GPU\n");
    return 0;
  }
  BackendOptions opts;
  opts.device = "cuda";
  CudaBackend b(opts, 0);
  const int m_max = *std::max_element(ms.begin(), ms.end());
  nlohmann::json rows = nlohmann::json::array();
  std::printf("%s, %d SMs; times in us (median of 20)\n", b.device_name().c_str(), b.sm_count());
  std::printf("%-5s %5s %9s %9s %6s %6s %9s %9s %9s %9s %7s %9s %9s %9s %10s %10s %9s %7s %9s\n",
              "shape", "M", "plain", "leaves", "ratio", "path", "fused", "unfused", "per-leaf",
              "tree", "GB/s", "sub tp2", "sub tp4", "sub tp8", "gather MB", "reduce MB", "copy",
              "GB/s", "nvlink");
  for (const auto& [name, n, k] : {std::tuple{"o", 4096, 4096}, std::tuple{"down", 4096, 14336}}) {
    auto x = make(b, DType::kBF16, {m_max, k});
    auto w = make(b, DType::kBF16, {n, k});
    b.fill_random(x.t, 1, RandomInit::kNormal, 1.0f);
    b.fill_random(w.t, 2, RandomInit::kNormal, 1.0f / std::sqrt(static_cast<float>(k)));
    auto out = make(b, DType::kBF16, {m_max, n});
    auto f32 = make(b, DType::kF32, {m_max, n});
    auto parts = make(b, DType::kF32, {8, m_max, n});
    b.fill_random(parts.t, 3, RandomInit::kNormal, 1.0f);  // the tree column's input
    auto copy_dst = make(b, DType::kF32, {8, m_max, n});
    for (int m : ms) {
      const Tensor xm = x.t.rows(0, m), om = out.t.rows(0, m), fm = f32.t.rows(0, m);
      // Fused tree variant v alone, 8 leaves into bf16.
      const auto fused_kernel = [&](int v) {
        LLM42_ASSERT(
            cuda::launch_tree_gemm(static_cast<const uint16_t*>(xm.data),
                                   static_cast<const uint16_t*>(w.t.data), om.data, DType::kBF16, m,
                                   n, k / 8, k, 8, b.stream(), v) == cudaSuccess,
            "fused tree GEMM launch");
      };
      if (!profile.empty()) {
        const auto once = [&] {
          if (profile_plain) {
            b.matmul(xm, w.t, nullptr, om, Schedule::kCanonical);
          } else if (profile_unfused) {
            b.matmul_leaves(xm, w.t, shard_leaves(k, {0, 1}), om);
          } else {
            fused_kernel(profile_variant);
          }
        };
        once();  // tunes the bucket, loads the module, sets the kernel's attributes
        b.synchronize();
        cudaProfilerStart();
        once();
        b.synchronize();
        cudaProfilerStop();
        std::printf("profiled %s: %s M %d\n", profile.c_str(), name, m);
        continue;
      }
      // Tune the buckets at their largest M first, as the engine's warm-up does.
      b.matmul(xm, w.t, nullptr, om, Schedule::kCanonical);
      const double plain =
          time_us(b, 20, [&](int) { b.matmul(xm, w.t, nullptr, om, Schedule::kCanonical); });
      b.gemm().set_fused_tree(true);
      const double leaves = time_us(b, 20, [&](int) {
        b.matmul_leaves(xm, w.t, shard_leaves(k, {0, 1}), om);
      });
      const bool fused = b.gemm().last_leaf_path() == cuda::GemmRunner::LeafPath::kFused;
      double fused_v[cuda::kTreeGemmVariants];
      for (int v = 0; v < cuda::kTreeGemmVariants; ++v)  // infinite (JSON null): not at this M
        fused_v[v] = cuda::tree_gemm_variant_takes(v, m)
                         ? time_us(b, 20, [&](int) { fused_kernel(v); })
                         : std::numeric_limits<double>::infinity();
      const double fused_only = *std::min_element(fused_v, fused_v + cuda::kTreeGemmVariants);
      b.gemm().set_fused_tree(false);
      const double unfused = time_us(b, 20, [&](int) {
        b.matmul_leaves(xm, w.t, shard_leaves(k, {0, 1}), om);
      });
      b.gemm().set_leaf_batching(false);
      const double per_leaf = time_us(b, 20, [&](int) {
        b.matmul_leaves(xm, w.t, shard_leaves(k, {0, 1}), om);
      });
      b.gemm().set_leaf_batching(true);
      const Tensor parts8(parts.t.data, DType::kF32, Device::kCUDA, {8, m, n});
      const double tree = time_us(b, 20, [&](int) { b.sum_parts(parts8, om); });
      const double tree_gbs = (8.0 * 4 + 2) * m * n / tree / 1e3;
      double sub[3] = {0, 0, 0};
      for (int j = 0; j < 3; ++j) {
        const int tp = 2 << j;
        const Range s = split_range(k, tp, 0);
        // Rank 0's slice of x and w as contiguous tensors, as a rank holds them.
        auto xs = make(b, DType::kBF16, {m, s.size()});
        auto ws = make(b, DType::kBF16, {n, s.size()});
        b.copy_device_2d(xs.t.data, s.size() * 2, x.t.data, k * 2, s.size() * 2, m);
        b.copy_device_2d(ws.t.data, s.size() * 2, w.t.data, k * 2, s.size() * 2, n);
        const Tensor pt(parts.t.data, DType::kF32, Device::kCUDA, {tp, m, n});
        sub[j] = time_us(b, 20, [&](int) {
          b.matmul_leaves(xs.t, ws.t, shard_leaves(k, {0, tp}), fm);
          b.sum_parts(pt, om);
        });
      }
      // Per rank and layer: the canonical all-gather receives (tp-1) subtrees of M x N fp32;
      // the fast all-reduce moves 2 (tp-1)/tp of M x N bf16. Shown for TP 8.
      const double gather_mb = 7.0 * m * n * 4 / 1e6, reduce_mb = 2.0 * 7 / 8 * m * n * 2 / 1e6;
      const double copy = time_us(b, 20, [&](int) {
        b.copy_device(copy_dst.t.data, parts.t.data, static_cast<size_t>(7) * m * n * 4);
      });
      const double copy_gbs = 2.0 * 7 * m * n * 4 / copy / 1e3;
      const double nvlink = gather_mb * 1e6 / (bus_gbs * 1e9) * 1e6;
      std::printf(
          "%-5s %5d %9.1f %9.1f %6.2f %6s %9.1f %9.1f %9.1f %9.1f %7.0f %9.1f %9.1f %9.1f %10.2f "
          "%10.2f %9.1f %7.0f %9.1f\n",
          name, m, plain, leaves, leaves / plain, fused ? "fused" : "parts", fused_only, unfused,
          per_leaf, tree, tree_gbs, sub[0], sub[1], sub[2], gather_mb, reduce_mb, copy, copy_gbs,
          nvlink);
      rows.push_back(
          {{"shape", name},
           {"n", n},
           {"k", k},
           {"m", m},
           {"plain_us", plain},
           {"leaves_us", leaves},
           {"leaves_fused", fused},
           {"fused_kernel_us", std::vector<double>(fused_v, fused_v + cuda::kTreeGemmVariants)},
           {"unfused_us", unfused},
           {"per_leaf_us", per_leaf},
           {"tree_us", tree},
           {"tree_gbs", tree_gbs},
           {"subtree_us", {sub[0], sub[1], sub[2]}},
           {"tp8_gather_mb", gather_mb},
           {"tp8_reduce_mb", reduce_mb},
           {"copy_us", copy},
           {"copy_gbs", copy_gbs},
           {"nvlink_pred_us", nvlink}});
    }
  }
  if (!profile.empty()) return 0;
  std::printf("nvlink: the TP 8 canonical gather's bytes at %.0f GB/s (latency not included)\n",
              bus_gbs);
  if (!json_path.empty()) {
    std::vector<std::string> variants;
    for (int v = 0; v < cuda::kTreeGemmVariants; ++v)
      variants.push_back(cuda::tree_gemm_variant_name(v));
    std::ofstream f(json_path);
    f << nlohmann::json{{"device", b.device_name()},
                        {"bus_gbs", bus_gbs},
                        {"fused_variants", variants},
                        {"rows", rows}}
             .dump(1)
      << "\n";
  }
  return 0;
}
#else
#include <cstdio>
int main() {
  std::printf("cuda_tp_lab: this build has no CUDA backend\n");
  return 0;
}
#endif
