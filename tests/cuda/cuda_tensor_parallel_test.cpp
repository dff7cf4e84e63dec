// Tensor parallelism on the GPU (DESIGN.md §7): the CUDA leaf tree (Backend::matmul_leaves) is
// batch invariant and gives the same bits when ranks compute subtrees and exchange them; the
// NCCL communicator works at the sizes the machine allows; and deterministic requests give the
// same ids and logprobs at TP 1, 2, 4 and 8 with in-process ranks on one GPU (the Llama-3.1-8B
// shape with a few layers, the tiny Hugging Face models), while the fast lane does not.
// (stories260K's FFN of 172 cannot be split on CUDA: check_cuda_shards refuses it, as
// tests/unit/tensor_parallel_test.cpp shows; the CPU suite covers it.) Skips without a GPU.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <chrono>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <thread>

#include "../unit/engine_harness.h"
#include "../unit/test_util.h"
#include "backend/cuda/kernels.h"
#include "cuda_test_util.h"
#include "model/checkpoint.h"
#include "model/presets.h"
#include "model/sharding.h"
#include "parallel/communicator_group.h"
#include "parallel/model_loader.h"
#include "util/numeric.h"
#ifdef LLM42_HAVE_NCCL
#include "parallel/nccl/nccl_communicator.h"
#endif

namespace llm42::test {
namespace {

struct DeviceBuffer {
  explicit DeviceBuffer(size_t bytes) : b(gpu(), bytes) {}
  Buffer b;
  Tensor view(DType d, std::initializer_list<int64_t> shape) const {
    return Tensor(b.get(), d, Device::kCUDA, shape);
  }
};

std::vector<uint16_t> download_u16(const Tensor& t) {
  std::vector<uint16_t> h(static_cast<size_t>(t.numel()));
  gpu().copy_to_host(h.data(), t.data, t.nbytes());
  return h;
}
std::vector<float> download_f32(const Tensor& t) {
  std::vector<float> h(static_cast<size_t>(t.numel()));
  gpu().copy_to_host(h.data(), t.data, t.nbytes());
  return h;
}

TEST(CudaRowParallel, SubtreesAndExchangeEqualTheWholeTreeAndDoNotDependOnM) {
  LLM42_REQUIRE_GPU();
  CudaBackend& b = gpu();
  for (const auto& [n, k] : {std::pair<int64_t, int64_t>{4096, 4096}, {4096, 14336}, {64, 172}}) {
    const int64_t m_max = 300;
    DeviceBuffer x(static_cast<size_t>(m_max * k) * 2), w(static_cast<size_t>(n * k) * 2);
    b.fill_random(x.view(DType::kBF16, {m_max, k}), 7, RandomInit::kNormal, 1.0f);
    b.fill_random(w.view(DType::kBF16, {n, k}), 8, RandomInit::kNormal,
                  1.0f / std::sqrt(static_cast<float>(k)));
    DeviceBuffer whole(static_cast<size_t>(m_max * n) * 4), out(static_cast<size_t>(m_max * n) * 2);
    const Tensor xw = x.view(DType::kBF16, {m_max, k}), ww = w.view(DType::kBF16, {n, k});
    b.matmul_leaves(xw, ww, shard_leaves(k, {0, 1}), whole.view(DType::kF32, {m_max, n}));
    b.sum_parts(whole.view(DType::kF32, {1, m_max, n}), out.view(DType::kBF16, {m_max, n}));
    const std::vector<uint16_t> ref = download_u16(out.view(DType::kBF16, {m_max, n}));
    // The whole tree rounded to bf16 in the same step (the model at TP 1): the same bits.
    b.matmul_leaves(xw, ww, shard_leaves(k, {0, 1}), out.view(DType::kBF16, {m_max, n}));
    EXPECT_EQ(download_u16(out.view(DType::kBF16, {m_max, n})), ref)
        << "N " << n << " K " << k << ": the tree rounded in one step differs";
    // Batch invariance: the first rows of smaller passes have the same bits.
    for (const int64_t m : {int64_t{1}, int64_t{7}, int64_t{64}}) {
      b.matmul_leaves(xw.rows(0, m), ww, shard_leaves(k, {0, 1}), whole.view(DType::kF32, {m, n}));
      b.sum_parts(whole.view(DType::kF32, {1, m, n}), out.view(DType::kBF16, {m, n}));
      const std::vector<uint16_t> got = download_u16(out.view(DType::kBF16, {m, n}));
      EXPECT_EQ(std::memcmp(got.data(), ref.data(), got.size() * 2), 0)
          << "N " << n << " K " << k << ": M " << m << " differs from M " << m_max;
    }
    // Subtrees over contiguous copies of each rank's K slice, then the tree over ranks.
    for (int tp : {2, 4, 8}) {
      DeviceBuffer parts(static_cast<size_t>(tp * m_max * n) * 4);
      for (int r = 0; r < tp; ++r) {
        const Range s = split_range(k, tp, r);
        DeviceBuffer xs(static_cast<size_t>(m_max * s.size()) * 2),
            ws(static_cast<size_t>(n * s.size()) * 2);
        b.copy_device_2d(xs.b.get(), s.size() * 2, xw.ptr<uint16_t>() + s.begin, k * 2,
                         s.size() * 2, m_max);
        b.copy_device_2d(ws.b.get(), s.size() * 2, ww.ptr<uint16_t>() + s.begin, k * 2,
                         s.size() * 2, n);
        b.matmul_leaves(xs.view(DType::kBF16, {m_max, s.size()}),
                        ws.view(DType::kBF16, {n, s.size()}), shard_leaves(k, {r, tp}),
                        Tensor(static_cast<float*>(parts.b.get()) + r * m_max * n, DType::kF32,
                               Device::kCUDA, {m_max, n}));
        b.synchronize();
      }
      b.sum_parts(parts.view(DType::kF32, {tp, m_max, n}), out.view(DType::kBF16, {m_max, n}));
      const std::vector<uint16_t> got = download_u16(out.view(DType::kBF16, {m_max, n}));
      EXPECT_EQ(std::memcmp(got.data(), ref.data(), got.size() * 2), 0)
          << "N " << n << " K " << k << ": TP " << tp << " differs from TP 1";
    }
  }
}

// The tree kernel on its own (Backend::sum_parts) against the tree computed on the host: the
// fast form (fp32 parts, n a multiple of 4, aligned: four elements a thread) and the general one
// (any n, unaligned), every part count, fp32 and bf16 out. Parts of exponents 2^-20 to 2^20 and
// both signs, so any other order or rounding would change bits.
TEST(CudaRowParallel, TreeSumHasTheBitsOfTheTreeOnTheHost) {
  LLM42_REQUIRE_GPU();
  CudaBackend& b = gpu();
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> mant(-1.0f, 1.0f);
  std::uniform_int_distribution<int> expo(-20, 20);
  for (const int64_t n : {int64_t{4}, int64_t{4096 * 3}, int64_t{4099}, int64_t{1}}) {
    for (const int p : {1, 2, 4, 8}) {
      for (const int64_t skew : {int64_t{0}, int64_t{1}}) {  // 1: parts 4 bytes off 16
        std::vector<float> parts(static_cast<size_t>(p * n + skew));
        for (float& v : parts) v = std::ldexp(mant(rng), expo(rng));
        std::vector<float> want(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) {
          float v[8];
          for (int j = 0; j < p; ++j) v[j] = parts[static_cast<size_t>(skew + j * n + i)];
          for (int width = 1; width < p; width *= 2)
            for (int j = 0; j + width < p; j += 2 * width) v[j] = v[j] + v[j + width];
          want[static_cast<size_t>(i)] = v[0];
        }
        DeviceBuffer d_parts(parts.size() * 4), d_out(static_cast<size_t>(n) * 4);
        b.upload_convert(parts.data(), DType::kF32,
                         d_parts.view(DType::kF32, {static_cast<int64_t>(parts.size())}));
        const Tensor in(static_cast<float*>(d_parts.b.get()) + skew, DType::kF32, Device::kCUDA,
                        {p, n});
        const std::string at = fmt::format("n {} parts {} skew {}", n, p, skew);
        b.sum_parts(in, d_out.view(DType::kF32, {n}));
        const std::vector<float> got = download_f32(d_out.view(DType::kF32, {n}));
        std::vector<uint32_t> got_bits(got.size()), want_bits(want.size());
        std::memcpy(got_bits.data(), got.data(), got.size() * 4);
        std::memcpy(want_bits.data(), want.data(), want.size() * 4);
        EXPECT_EQ(got_bits, want_bits) << at << ", fp32 out";
        b.sum_parts(in, d_out.view(DType::kBF16, {n}));
        const std::vector<uint16_t> got16 = download_u16(d_out.view(DType::kBF16, {n}));
        std::vector<uint16_t> want16(want.size());
        for (size_t i = 0; i < want.size(); ++i) want16[i] = f32_to_bf16(want[i]);
        EXPECT_EQ(got16, want16) << at << ", bf16 out";
      }
    }
  }
}

// Above the skinny range the leaves of one size run as one strided-batched cuBLASLt call: each
// leaf's fp32 partial must have the bits of a call per leaf (the batch count, which differs
// between TP sizes, must not reach the bits), and the batched path must be the one taken.
TEST(CudaRowParallel, BatchedLeavesHaveTheBitsOfOneCallPerLeaf) {
  LLM42_REQUIRE_GPU();
  CudaBackend& b = gpu();
  cuda::GemmRunner& g = b.gemm();
  // o, down, a smaller shape, and one with a partial last weight tile (N 1032) and k 64 a leaf.
  for (const auto& [n, k] : {std::pair<int64_t, int64_t>{4096, 4096}, {4096, 14336}, {1024, 2048},
                             {1032, 512}}) {
    const int64_t m_max = 1024;
    DeviceBuffer x(static_cast<size_t>(m_max * k) * 2), w(static_cast<size_t>(n * k) * 2);
    b.fill_random(x.view(DType::kBF16, {m_max, k}), 11, RandomInit::kNormal, 1.0f);
    b.fill_random(w.view(DType::kBF16, {n, k}), 12, RandomInit::kNormal,
                  1.0f / std::sqrt(static_cast<float>(k)));
    DeviceBuffer batched(static_cast<size_t>(8 * m_max * n) * 4),
        per_leaf(static_cast<size_t>(8 * m_max * n) * 4);
    for (const int64_t m : {int64_t{m_max}, int64_t{17}, int64_t{64}, int64_t{300}}) {
      for (int tp : {1, 2, 4}) {
        // Rank 0's leaves, read in place from the whole matrices (row stride k).
        const std::vector<int64_t> leaves = shard_leaves(k, {0, tp});
        const size_t bytes = static_cast<size_t>((leaves.size() - 1) * m * n) * 4;
        g.set_leaf_batching(true);
        g.run_canonical_leaves(x.b.get(), w.b.get(), static_cast<float*>(batched.b.get()), m, n, k,
                               leaves);
        const auto path = g.last_leaf_path();
        g.set_leaf_batching(false);
        g.run_canonical_leaves(x.b.get(), w.b.get(), static_cast<float*>(per_leaf.b.get()), m, n, k,
                               leaves);
        g.set_leaf_batching(true);
        EXPECT_EQ(g.last_leaf_path(), cuda::GemmRunner::LeafPath::kPerLeaf);
        EXPECT_EQ(path, cuda::GemmRunner::LeafPath::kBatched)
            << "N " << n << " K " << k << " M " << m << " TP " << tp << ": not batched";
        std::vector<uint8_t> a(bytes), c(bytes);
        b.copy_to_host(a.data(), batched.b.get(), bytes);
        b.copy_to_host(c.data(), per_leaf.b.get(), bytes);
        EXPECT_EQ(std::memcmp(a.data(), c.data(), bytes), 0)
            << "N " << n << " K " << k << " M " << m << " TP " << tp
            << ": the batched leaves differ from a call per leaf";
      }
    }
  }
}

// tree_gemm.cu sums the leaves along the tree inside the GEMM: its every output bit must be the
// unfused path's (the leaves' fp32 parts through memory, then the tree kernel), at every M (rows
// past a 128-row tile, a single row, the decode-size variants' 8- and 16-row forms), TP size (8,
// 4, 2 leaves) and output dtype; the runner must give the same bits whichever path its check
// picks; and which it picked is printed for the record (speed decides, so it is not asserted).
TEST(CudaRowParallel, FusedTreeHasTheBitsOfTheLeavesThroughMemory) {
  LLM42_REQUIRE_GPU();
  CudaBackend& b = gpu();
  cuda::GemmRunner& g = b.gemm();
  const char* status_names[] = {"unchecked", "other bits", "slower", "admitted"};
  // The backend is shared by the suite: its fused-tree switch is put back however this ends.
  struct Restore {
    cuda::GemmRunner& g;
    bool on;
    ~Restore() { g.set_fused_tree(on); }
  } restore{g, g.fused_tree()};
  // o, down, a smaller shape, and one whose last weight tile is partial (N 1032) with a k of 64
  // a leaf (a fold, and a stage going back, after every stage).
  for (const auto& [n, k] : {std::pair<int64_t, int64_t>{4096, 4096}, {4096, 14336}, {1024, 2048},
                             {1032, 512}}) {
    const int64_t m_max = 2048;
    DeviceBuffer x(static_cast<size_t>(m_max * k) * 2), w(static_cast<size_t>(n * k) * 2);
    b.fill_random(x.view(DType::kBF16, {m_max, k}), 21, RandomInit::kNormal, 1.0f);
    b.fill_random(w.view(DType::kBF16, {n, k}), 22, RandomInit::kNormal,
                  1.0f / std::sqrt(static_cast<float>(k)));
    DeviceBuffer parts(static_cast<size_t>(8 * m_max * n) * 4),
        ref(static_cast<size_t>(m_max * n) * 4), got(static_cast<size_t>(m_max * n) * 4);
    for (const int64_t m : {int64_t{2048}, int64_t{1}, int64_t{5}, int64_t{16}, int64_t{17},
                            int64_t{64}, int64_t{129}, int64_t{300}, int64_t{1024}}) {
      for (int tp : {1, 2, 4}) {
        // Rank 0's leaves, read in place from the whole matrices (row stride k).
        const std::vector<int64_t> leaves = shard_leaves(k, {0, tp});
        const int p = static_cast<int>(leaves.size()) - 1;
        for (const DType out : {DType::kBF16, DType::kF32}) {
          if (tp > 1 && out == DType::kBF16) continue;  // a rank's subtree stays fp32
          const size_t bytes = static_cast<size_t>(m * n) * dtype_size(out);
          const std::string where = fmt::format("N {} K {} M {} TP {} -> {}", n, k, m, tp,
                                                dtype_name(out));
          g.set_fused_tree(false);
          g.run_canonical_tree(x.b.get(), w.b.get(), ref.b.get(), out, m, n, k, leaves,
                               static_cast<float*>(parts.b.get()));
          g.set_fused_tree(true);
          EXPECT_NE(g.last_leaf_path(), cuda::GemmRunner::LeafPath::kFused) << where;
          std::vector<uint8_t> a(bytes), c(bytes);
          b.copy_to_host(a.data(), ref.b.get(), bytes);
          for (int v = 0; v < cuda::kTreeGemmVariants; ++v) {
            ASSERT_EQ(cudaMemsetAsync(got.b.get(), 0xff, bytes, b.stream()), cudaSuccess);
            const cudaError_t e = cuda::launch_tree_gemm(static_cast<const uint16_t*>(x.b.get()),
                                                         static_cast<const uint16_t*>(w.b.get()),
                                                         got.b.get(), out, m, n, k / 8, k, p,
                                                         b.stream(), v);
            if (!cuda::tree_gemm_variant_takes(v, m)) {  // decode sizes only: refused, cleanly
              EXPECT_EQ(e, cudaErrorInvalidValue) << where << ", variant " << v;
              cudaGetLastError();
              continue;
            }
            ASSERT_EQ(e, cudaSuccess) << where << ", variant " << v;
            b.copy_to_host(c.data(), got.b.get(), bytes);
            EXPECT_EQ(std::memcmp(a.data(), c.data(), bytes), 0)
                << where << ": the fused tree (" << cuda::tree_gemm_variant_name(v)
                << ") differs from the leaves through memory";
          }
          // The runner, checking the kernel on this bucket if it has not yet.
          g.run_canonical_tree(x.b.get(), w.b.get(), got.b.get(), out, m, n, k, leaves,
                               static_cast<float*>(parts.b.get()));
          b.copy_to_host(c.data(), got.b.get(), bytes);
          EXPECT_EQ(std::memcmp(a.data(), c.data(), bytes), 0) << where << ": the runner differs";
          const auto status = g.tree_status(m, n, leaves, out);
          EXPECT_NE(status, cuda::GemmRunner::KernelStatus::kDiffers) << where;
          std::printf("fused tree %s: %s\n", where.c_str(),
                      status_names[static_cast<int>(status)]);
        }
      }
    }
  }
}

TEST(CudaNccl, CommunicatorAtTheSizesThisMachineAllows) {
  LLM42_REQUIRE_GPU();
#ifndef LLM42_HAVE_NCCL
  GTEST_SKIP() << "built without NCCL";
#else
  // N = 1 on any GPU: the collectives run and leave the data as it is.
  auto group = make_communicator_group(CommKind::kNccl, 1, "cuda");
  std::unique_ptr<Communicator> comm = group->join(0, gpu());
  EXPECT_EQ(comm->name(), "nccl");
  DeviceBuffer a(4096 * 4), g(4096 * 4);
  const Tensor t = a.view(DType::kF32, {4096});
  gpu().fill_random(t, 3, RandomInit::kNormal, 1.0f);
  const std::vector<float> before = download_f32(t);
  comm->all_reduce_sum(t);
  comm->all_gather(t, g.view(DType::kF32, {4096}));
  gpu().synchronize();
  EXPECT_EQ(download_f32(t), before);
  EXPECT_EQ(download_f32(g.view(DType::kF32, {4096})), before);

  // Captured into a CUDA graph (as decode passes with --tp-cuda-graphs capture them): nothing
  // runs at capture, and every replay gathers what the source holds then.
  EXPECT_TRUE(comm->capturable());
  const Tensor out = g.view(DType::kF32, {4096});
  gpu().fill_random(out, 4, RandomInit::kNormal, 1.0f);
  gpu().synchronize();
  const std::vector<float> untouched = download_f32(out);
  cudaStream_t s = gpu().stream();
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  comm->all_reduce_sum(t);
  comm->all_gather(t, out);
  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamEndCapture(s, &graph), cudaSuccess);
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  cudaGraphDestroy(graph);
  gpu().synchronize();
  EXPECT_EQ(download_f32(out), untouched) << "the capture ran the exchange";
  for (const uint64_t seed : {uint64_t{5}, uint64_t{6}}) {
    gpu().fill_random(t, seed, RandomInit::kNormal, 1.0f);
    ASSERT_EQ(cudaGraphLaunch(exec, s), cudaSuccess);
    gpu().synchronize();
    EXPECT_EQ(download_f32(out), download_f32(t)) << "replay with seed " << seed;
  }
  cudaGraphExecDestroy(exec);
#endif
}

// N = 2, 4, 8 where this machine has that many GPUs (each size skipped with a message
// otherwise): one thread and one GPU per rank, as the engine runs them. Every rank's all-reduce
// (fp32 and bf16) gives the sum of every rank's data and its all-gather every rank's data in
// rank order; then each rank captures both into its own CUDA graph (as --tp-cuda-graphs does)
// and the ranks replay together, twice, on new data. The data are small integers, so every sum
// is exact whatever order NCCL adds in.
TEST(CudaNccl, RanksOnSeveralGpusReduceGatherAndReplay) {
  LLM42_REQUIRE_GPU();
#ifndef LLM42_HAVE_NCCL
  GTEST_SKIP() << "built without NCCL";
#else
  constexpr int64_t kN = 4096 + 8;  // a decode step's hidden row, and a bit
  // Rank r's value i for round `round` (0: eager, 1 and 2: replays).
  const auto value = [](int r, int64_t i, int round) {
    return static_cast<float>((i * 7 + r * 13 + round * 5) % 61 - 30);
  };
  int ran = 0;
  for (const int size : {2, 4, 8}) {
    if (size > cuda_device_count()) {
      std::printf("[nccl] N = %d: skipped, %d GPU(s) visible\n", size, cuda_device_count());
      continue;
    }
    ++ran;
    auto group = make_communicator_group(CommKind::kNccl, size, "cuda");
    std::barrier sync(size);
    std::atomic<int> done{0};
    std::vector<std::string> errors(static_cast<size_t>(size));
    std::vector<std::thread> ranks;
    for (int r = 0; r < size; ++r) {
      ranks.emplace_back([&, r] {
        std::string& err = errors[static_cast<size_t>(r)];
        try {
          BackendOptions o;
          o.device = group->rank_device("cuda", r);
          o.cuda.memory_fraction = 0.1;
          CudaBackend b(o, r);
          std::unique_ptr<Communicator> comm = group->join(r, b);
          Buffer f32(b, kN * 4), bf(b, kN * 2), gathered(b, kN * 4 * size);
          const Tensor tf(f32.get(), DType::kF32, Device::kCUDA, {kN});
          const Tensor tb(bf.get(), DType::kBF16, Device::kCUDA, {kN});
          const Tensor tg(gathered.get(), DType::kF32, Device::kCUDA, {size * kN});
          const auto fill = [&](int round) {
            std::vector<float> h(static_cast<size_t>(kN));
            std::vector<uint16_t> hb(static_cast<size_t>(kN));
            for (int64_t i = 0; i < kN; ++i) {
              h[static_cast<size_t>(i)] = value(r, i, round);
              hb[static_cast<size_t>(i)] = f32_to_bf16(h[static_cast<size_t>(i)]);
            }
            b.copy_to_device(f32.get(), h.data(), h.size() * 4);
            b.copy_to_device(bf.get(), hb.data(), hb.size() * 2);
            b.synchronize();
          };
          // The sum over ranks (after the all-reduce) and the gathered data, checked on the host.
          const auto check = [&](int round, const char* what) {
            std::vector<float> sum(static_cast<size_t>(kN)),
                gat(static_cast<size_t>(size * kN));
            std::vector<uint16_t> sumb(static_cast<size_t>(kN));
            b.copy_to_host(sum.data(), f32.get(), sum.size() * 4);
            b.copy_to_host(sumb.data(), bf.get(), sumb.size() * 2);
            b.copy_to_host(gat.data(), gathered.get(), gat.size() * 4);
            int bad = 0;
            for (int64_t i = 0; i < kN; ++i) {
              float want = 0.0f;
              for (int q = 0; q < size; ++q) want += value(q, i, round);
              bad += sum[static_cast<size_t>(i)] != want;
              bad += bf16_to_f32(sumb[static_cast<size_t>(i)]) != want;
            }
            // The gather ran on the summed data: every rank's slot holds the same sums.
            for (int q = 0; q < size; ++q)
              for (int64_t i = 0; i < kN; ++i)
                bad += gat[static_cast<size_t>(q * kN + i)] != sum[static_cast<size_t>(i)];
            if (bad > 0 && err.empty())
              err = fmt::format("rank {}, {}: {} values wrong", r, what, bad);
          };
          const auto exchange = [&] {
            comm->all_reduce_sum(tf);
            comm->all_reduce_sum(tb);
            comm->all_gather(tf, tg);
          };
          fill(0);
          sync.arrive_and_wait();
          exchange();
          b.synchronize();
          check(0, "eager");
          // Each rank captures its exchanges into its own graph; nothing runs at capture.
          cudaStream_t s = b.stream();
          cudaGraph_t graph = nullptr;
          cudaGraphExec_t exec = nullptr;
          if (cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) != cudaSuccess)
            throw std::runtime_error("begin capture failed");
          exchange();
          if (cudaStreamEndCapture(s, &graph) != cudaSuccess ||
              cudaGraphInstantiate(&exec, graph, 0) != cudaSuccess)
            throw std::runtime_error("capture failed");
          cudaGraphDestroy(graph);
          for (const int round : {1, 2}) {
            fill(round);
            sync.arrive_and_wait();
            if (cudaGraphLaunch(exec, s) != cudaSuccess)
              throw std::runtime_error("graph launch failed");
            b.synchronize();
            check(round, round == 1 ? "first replay" : "second replay");
          }
          cudaGraphExecDestroy(exec);
          sync.arrive_and_wait();  // no rank destroys its communicator while others use theirs
        } catch (const std::exception& e) {
          if (err.empty()) err = fmt::format("rank {}: {}", r, e.what());
        }
        ++done;
      });
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (done.load() < size && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (done.load() < size) {
      ADD_FAILURE() << "N = " << size << ": a rank was still exchanging after 120 s";
      std::_Exit(1);  // the threads cannot be joined
    }
    for (std::thread& t : ranks) t.join();
    for (const std::string& e : errors) EXPECT_TRUE(e.empty()) << "N = " << size << ": " << e;
    std::printf("[nccl] N = %d: all-reduce (fp32, bf16), all-gather, captured and replayed\n",
                size);
  }
  if (ran == 0) GTEST_SKIP() << "one GPU: N = 2, 4, 8 need as many (N = 1 is tested above)";
#endif
}

// A rank that joins a group of 2 whose other rank never comes (it failed before joining) waits,
// then gives up when the group is told (CommunicatorGroup::abort_joins), instead of waiting in
// NCCL's init for good. One GPU suffices: only rank 0 joins.
TEST(CudaNccl, AJoinWaitingForAFailedRankGivesUp) {
  LLM42_REQUIRE_GPU();
#ifndef LLM42_HAVE_NCCL
  GTEST_SKIP() << "built without NCCL";
#else
  auto group = make_nccl_group({0, 1});
  std::atomic<bool> returned{false};
  std::string error;
  std::thread rank0([&] {
    try {
      group->join(0, gpu());
      error = "joined a group whose other rank never came";
    } catch (const ExchangeAborted& e) {
      error = e.what();
    } catch (const std::exception& e) {
      error = std::string("other error: ") + e.what();
    }
    returned = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_FALSE(returned.load()) << "the join returned before the group was complete: " << error;
  group->abort_joins();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!returned.load() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (!returned.load()) {
    ADD_FAILURE() << "the join did not give up within 30 s of abort_joins";
    std::_Exit(1);  // the thread cannot be joined
  }
  rank0.join();
  EXPECT_NE(error.find("stopped waiting for the group"), std::string::npos) << error;
  // A later join gives up at once.
  EXPECT_THROW(group->join(1, gpu()), ExchangeAborted);
#endif
}

// A rank whose init fails inside NCCL does not leave the others waiting for it: the last rank
// to come initializes them all in one NCCL group, which gives the others up when one fails, and
// every join returns. One GPU suffices: rank 1's init is refused (the test hook gives it a
// network no plugin provides) before its bootstrap, where rank 0 waits for it; initialized rank
// by rank, as before, rank 0 would wait there for good. The rank that ran the init throws
// NCCL's error, the other ExchangeAborted.
TEST(CudaNccl, AnInitThatFailsInsideNcclReachesEveryRank) {
  LLM42_REQUIRE_GPU();
#ifndef LLM42_HAVE_NCCL
  GTEST_SKIP() << "built without NCCL";
#else
  auto group = make_nccl_group({0, 0}, /*broken_rank=*/1);
  std::atomic<int> returned{0};
  std::string errors[2];
  bool aborted[2] = {false, false};
  std::vector<std::thread> ranks;
  for (int r = 0; r < 2; ++r) {
    ranks.emplace_back([&, r] {
      try {
        group->join(r, gpu());
        errors[r] = "joined a group whose rank 1 cannot init";
      } catch (const ExchangeAborted& e) {
        errors[r] = e.what();
        aborted[r] = true;
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
      ++returned;
    });
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (returned.load() < 2 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (returned.load() < 2) {
    ADD_FAILURE() << "a rank was still in NCCL's init after 60 s";
    std::_Exit(1);  // the threads cannot be joined
  }
  for (std::thread& t : ranks) t.join();
  ASSERT_NE(aborted[0], aborted[1]) << errors[0] << " | " << errors[1];
  const int init = aborted[0] ? 1 : 0;
  EXPECT_NE(errors[init].find("NCCL: initializing the group of 2 ranks on GPUs 0,0 failed"),
            std::string::npos)
      << errors[init];
  EXPECT_NE(errors[1 - init].find("the group's init failed"), std::string::npos)
      << errors[1 - init];
#endif
}

// ---- the engine across TP sizes, in-process ranks on one GPU ----------------------------------

struct GpuTpCase {
  const char* name;
  const char* shared_path;  // "" = dummy weights of the config below
  std::vector<int> sizes;
};

void PrintTo(const GpuTpCase& c, std::ostream* os) { *os << c.name; }

ModelConfig llama8b_layers(int layers) {
  ModelConfig c = preset_config("llama-3.1-8b");
  c.n_layers = layers;
  c.max_seq_len = 2048;
  return c;
}

class CudaTensorParallel : public ::testing::TestWithParam<GpuTpCase> {
 protected:
  void SetUp() override {
    LLM42_REQUIRE_GPU();
    const std::string rel = GetParam().shared_path;
    if (!rel.empty()) {
      if (shared_dir().empty()) GTEST_SKIP() << "shared test data not found";
      ckpt_ = std::make_unique<Checkpoint>(load_checkpoint(shared_dir() + "/" + rel));
      source_.checkpoint = ckpt_.get();
      source_.config = ckpt_->config;
    } else {
      source_.config = llama8b_layers(4);
      source_.dummy_seed = 5;
    }
    requests_ = make_requests(16, source_.config.vocab_size, 31, 8, 48);
  }

  TestModel model(int tp) const {
    BackendOptions o;
    o.device = "cuda";
    o.cuda.memory_fraction = 0.9;
    TestModel m;
    m.parallel = load_parallel_model(o, "bf16", source_, {tp, CommKind::kInProcess}, 512, 256);
    return m;
  }

  static EngineConfig config(DeterminismMode mode) {
    EngineConfig c = small_engine_config(mode);
    c.num_blocks = 256;
    return c;
  }

  std::unique_ptr<Checkpoint> ckpt_;
  ModelSource source_;
  std::vector<Request> requests_;
};

TEST_P(CudaTensorParallel, DeterministicAnswersAreTheSameAtEveryTpSize) {
  std::vector<Outcome> reference;
  {
    TestModel one = model(1);
    EngineConfig alone = config(DeterminismMode::kGlobal);
    alone.max_num_seqs = 1;
    reference = run_workload(one, alone, requests_, Load{.alone = true});
  }
  for (int tp : GetParam().sizes) {
    TestModel m = model(tp);
    const std::vector<std::pair<const char*, std::vector<Outcome>>> runs = {
        {"dvr under load", run_workload(m, config(DeterminismMode::kDvr), requests_,
                                        Load{.background = 16, .seed = 2, .arrivals_per_step = 4})},
        {"global shuffled", run_workload(m, config(DeterminismMode::kGlobal), requests_,
                                         Load{.background = 8, .seed = 3, .shuffle = true})}};
    for (const auto& [name, got] : runs) {
      std::string first;
      const int bad = count_differing(got, reference, &first);
      EXPECT_EQ(bad, 0) << GetParam().name << " TP " << tp << ", " << name << ": " << bad << " of "
                        << got.size() << " differ from TP 1; " << first;
    }
  }
}

TEST_P(CudaTensorParallel, FastLaneChangesWithTheTpSize) {
  std::vector<Outcome> base;
  {
    TestModel one = model(1);
    base = run_workload(one, config(DeterminismMode::kOff), requests_, Load{.alone = true});
  }
  int differ = 0;
  for (int tp : GetParam().sizes) {
    TestModel m = model(tp);
    const std::vector<Outcome> got =
        run_workload(m, config(DeterminismMode::kOff), requests_, Load{.alone = true});
    differ += count_differing(got, base, nullptr);
  }
  EXPECT_GT(differ, 0) << GetParam().name;
}

INSTANTIATE_TEST_SUITE_P(Models, CudaTensorParallel,
                         ::testing::Values(GpuTpCase{"Llama31_8B_4Layers", "", {2, 4, 8}},
                                           GpuTpCase{"TinyLlama3", "models/tiny-llama3", {2, 4}},
                                           GpuTpCase{"TinyQwen2", "models/tiny-qwen2", {2, 4}},
                                           GpuTpCase{"TinyQwen3", "models/tiny-qwen3", {2, 4}}),
                         [](const ::testing::TestParamInfo<GpuTpCase>& i) {
                           return std::string(i.param.name);
                         });

}  // namespace
}  // namespace llm42::test
