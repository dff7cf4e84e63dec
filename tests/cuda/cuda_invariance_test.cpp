// The canonical lane on the GPU is batch-invariant (DESIGN.md §2), checked bit for bit:
//   - GEMM: one row's result is the same for every M from 1 to 2048 and at any position in the
//     batch, for every GEMM shape of Llama-3.1-8B;
//   - attention: a query's output is the same whether it arrives in a prefill chunk, a
//     verification window or alone in a decode step, alone or in a large batch, whether the
//     planner splits its keys or not, for contexts from 1 to 8K.
// The fast lane is run through the same checks and must be seen to vary somewhere; how much
// it varies is printed and recorded as a test property.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <numeric>

#include "backend/cuda/check.h"
#include "cuda_test_util.h"

namespace llm42::test {
namespace {

class CudaInvariance : public ::testing::Test {
 protected:
  void SetUp() override { LLM42_REQUIRE_GPU(); }
};

struct GemmShape {
  const char* name;
  int n, k;
  DType out;
};

TEST_F(CudaInvariance, GemmRowIndependentOfBatch) {
  const std::vector<GemmShape> shapes = {{"qkv", 6144, 4096, DType::kBF16},
                                         {"o", 4096, 4096, DType::kBF16},
                                         {"gate_up", 28672, 4096, DType::kBF16},
                                         {"down", 4096, 14336, DType::kBF16},
                                         {"lm_head", 128256, 4096, DType::kF32}};
  // Several in each kind of canonical M bucket: graph sizes, then multiples of 128.
  const std::vector<int> ms = {1,   2,   3,   4,   5,    7,    8,    13,   16,
                               31,  32,  64,  100, 128,  136,  200,  255,  256,
                               300, 512, 520, 777, 1000, 1024, 1300, 1800, 2048};
  constexpr int kMaxM = 2048;
  CudaBackend& b = gpu();
  int fast_varied_shapes = 0;
  for (const GemmShape& sh : shapes) {
    DevTensor w = dev_tensor(DType::kBF16, {sh.n, sh.k});
    b.fill_random(w.t, 100 + sh.n, RandomInit::kNormal, 1.0f / std::sqrt(float(sh.k)));
    DevTensor x = dev_tensor(DType::kBF16, {kMaxM, sh.k});
    b.fill_random(x.t, 200 + sh.k, RandomInit::kNormal, 1.0f);
    DevTensor probe = dev_tensor(DType::kBF16, {1, sh.k});
    b.fill_random(probe.t, 300, RandomInit::kNormal, 1.0f);
    DevTensor out = dev_tensor(sh.out, {kMaxM, sh.n});
    const size_t row_bytes = static_cast<size_t>(sh.n) * dtype_size(sh.out);
    const size_t x_row = static_cast<size_t>(sh.k) * 2;
    std::vector<unsigned char> ref[2];  // per schedule: the probe's row at M = 1
    int fast_mismatches = 0, canonical_mismatches = 0;
    std::string fast_first;
    for (int m : ms) {
      // The probe row at the first, middle and last position of the batch.
      const std::vector<int> at = {0, m / 2, m - 1};
      for (int p : at)
        LLM42_CUDA_CHECK(cudaMemcpyAsync(static_cast<unsigned char*>(x.t.data) + p * x_row,
                                         probe.t.data, x_row, cudaMemcpyDeviceToDevice,
                                         b.stream()));
      for (Schedule s : {Schedule::kCanonical, Schedule::kFast}) {
        const Tensor xm = x.t.rows(0, m), om = out.t.rows(0, m);
        poison(om);
        b.matmul(xm, w.t, nullptr, om, s);
        std::vector<unsigned char>& r = ref[s == Schedule::kFast];
        std::vector<unsigned char> host(row_bytes);
        for (int p : at) {
          b.copy_to_host(host.data(), static_cast<const unsigned char*>(om.data) + p * row_bytes,
                         row_bytes);
          if (m == 1) r = host;
          const bool same = host == r;
          if (s == Schedule::kCanonical) {
            canonical_mismatches += !same;
            EXPECT_TRUE(same) << sh.name << ": canonical row at position " << p << " of M = " << m
                              << " differs from M = 1 ("
                              << b.gemm().describe(xm.data, w.t.data, om.data, m, sh.n, sh.k,
                                                   sh.out, s)
                              << ")";
          } else if (!same && fast_mismatches++ == 0) {
            fast_first = fmt::format(
                "first at M = {} position {} ({})", m, p,
                b.gemm().describe(xm.data, w.t.data, om.data, m, sh.n, sh.k, sh.out, s));
          }
        }
      }
    }
    const std::string note = fmt::format(
        "{} (N {}, K {}): canonical {} of {} probe rows differ; fast {} of {} differ{}{}", sh.name,
        sh.n, sh.k, canonical_mismatches, 3 * ms.size(), fast_mismatches, 3 * ms.size(),
        fast_mismatches ? "; " : "", fast_first);
    std::printf("[gemm invariance] %s\n", note.c_str());
    RecordProperty(std::string("gemm_") + sh.name, note);
    fast_varied_shapes += fast_mismatches > 0;
  }
  std::printf("[gemm invariance] fast lane varied with M in %d of %zu shapes\n", fast_varied_shapes,
              shapes.size());
  RecordProperty("gemm_fast_varied_shapes", fast_varied_shapes);
}

// The attention scenarios of one query at absolute position p of a sequence with random KV.
struct AttnGeo {
  int heads, kv_heads, head_dim;
};

class AttentionInvariance : public ::testing::TestWithParam<AttnGeo> {
 protected:
  void SetUp() override { LLM42_REQUIRE_GPU(); }
};

constexpr int kBlockSize = 16;

struct Probe {
  std::vector<int32_t> table;  // the probe sequence's blocks
};

// Builds a pass of sequences; sequence 0 is the probe sequence with (pos_begin, q_len); the
// others are background sequences (one block table each from `others`): decode rows at
// other_pos, or with other_len > 1 prefill chunks of that many tokens from position 0. With
// others_fast they ask for fast attention (in a canonical pass: a mixed pass).
PassInput build_pass(const Probe& probe, int pos_begin, int q_len,
                     const std::vector<std::vector<int32_t>>& others,
                     const std::vector<int>& other_pos, bool probe_first, Schedule s,
                     int other_len = 1, bool others_fast = false) {
  PassInput p;
  p.schedule = s;
  auto add = [&](const std::vector<int32_t>& table, int pb, int n, bool fast = false) {
    PassSeq q;
    q.fast_attention = fast;
    q.q_begin = p.n_tokens();
    q.q_len = n;
    q.pos_begin = pb;
    q.block_begin = static_cast<int32_t>(p.block_tables.size());
    q.n_blocks = (pb + n + kBlockSize - 1) / kBlockSize;
    p.block_tables.insert(p.block_tables.end(), table.begin(), table.begin() + q.n_blocks);
    for (int i = 0; i < n; ++i) {
      const int pos = pb + i;
      p.tokens.push_back(0);
      p.positions.push_back(pos);
      p.slots.push_back(table[pos / kBlockSize] * kBlockSize + pos % kBlockSize);
    }
    p.seqs.push_back(q);
  };
  if (probe_first) add(probe.table, pos_begin, q_len);
  for (size_t i = 0; i < others.size(); ++i)
    add(others[i], other_len > 1 ? 0 : other_pos[i], other_len, others_fast);
  if (!probe_first) add(probe.table, pos_begin, q_len);
  return p;
}

TEST_P(AttentionInvariance, QueryOutputIndependentOfPassShape) {
  const AttnGeo g = GetParam();
  const QkvLayout ql{g.heads, g.kv_heads, g.head_dim};
  CudaBackend& b = gpu();
  constexpr int kMaxCtx = 8192 + 64;
  constexpr int kOthers = 63;
  const int probe_blocks = kMaxCtx / kBlockSize;
  const int other_blocks = 160 / kBlockSize;
  const int n_blocks = probe_blocks + kOthers * other_blocks;
  DevTensor k = dev_tensor(DType::kBF16, {n_blocks, kBlockSize, g.kv_heads, g.head_dim});
  DevTensor v = dev_tensor(DType::kBF16, {n_blocks, kBlockSize, g.kv_heads, g.head_dim});
  b.fill_random(k.t, 11, RandomInit::kNormal, 1.0f);
  b.fill_random(v.t, 12, RandomInit::kNormal, 1.0f);
  KvCache cache;
  cache.n_layers = 1;
  cache.n_blocks = n_blocks;
  cache.block_size = kBlockSize;
  cache.n_kv_heads = g.kv_heads;
  cache.head_dim = g.head_dim;
  cache.dtype = DType::kBF16;
  cache.k = {k.t};
  cache.v = {v.t};

  std::mt19937 rng(5);
  std::vector<int32_t> pool(static_cast<size_t>(n_blocks));
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), rng);
  Probe probe;
  probe.table.assign(pool.begin(), pool.begin() + probe_blocks);
  std::vector<std::vector<int32_t>> others;
  std::vector<int> other_pos;
  for (int i = 0; i < kOthers; ++i) {
    const auto first = pool.begin() + probe_blocks + i * other_blocks;
    others.emplace_back(first, first + other_blocks);
    other_pos.push_back(static_cast<int>(rng() % 150));
  }

  // The probe query (all heads) and the filler for every other row.
  constexpr int kOtherChunk = 150;  // background prefill chunks of mixed passes
  const int max_rows = kOthers * kOtherChunk + 256;
  DevTensor qkv = dev_tensor(DType::kBF16, {max_rows, ql.row()});
  b.fill_random(qkv.t, 13, RandomInit::kNormal, 1.0f);
  DevTensor q_probe = dev_tensor(DType::kBF16, {1, ql.q_dim()});
  b.fill_random(q_probe.t, 14, RandomInit::kNormal, 1.0f);
  DevTensor out = dev_tensor(DType::kBF16, {max_rows, ql.q_dim()});
  const size_t q_bytes = static_cast<size_t>(ql.q_dim()) * 2;

  // Runs one pass with the probe query at row `row`; returns its output bits.
  auto run = [&](const PassInput& pass, int row, Schedule s, cuda::SplitPolicy policy,
                 CudaBackend::AttnPlanStats* stats) {
    LLM42_CUDA_CHECK(cudaMemcpyAsync(
        static_cast<unsigned char*>(qkv.t.data) + static_cast<size_t>(row) * ql.row() * 2,
        q_probe.t.data, q_bytes, cudaMemcpyDeviceToDevice, b.stream()));
    b.set_attention_split_policy(policy);
    b.begin_pass(pass, cache, ql);
    const Tensor o = out.t.rows(0, pass.n_tokens());
    poison(o);
    b.attention(qkv.t.rows(0, pass.n_tokens()), ql, cache, 0, o, s);
    if (stats != nullptr) *stats = b.last_attention_plan();
    std::vector<uint16_t> bits(static_cast<size_t>(ql.q_dim()));
    b.copy_to_host(bits.data(),
                   static_cast<const unsigned char*>(o.data) + static_cast<size_t>(row) * q_bytes,
                   q_bytes);
    return bits;
  };

  int fast_differs = 0, fast_checked = 0;
  for (int ctx : {1, 2, 63, 64, 65, 255, 256, 257, 1000, 2048, 4097, 8192}) {
    const int p = ctx - 1;  // the probe's position: it attends to ctx keys
    for (Schedule s : {Schedule::kCanonical, Schedule::kFast}) {
      CudaBackend::AttnPlanStats split_stats, batch_stats;
      // Decode alone (the planner splits the keys when the pass is small).
      const std::vector<uint16_t> ref = run(build_pass(probe, p, 1, {}, {}, true, s), 0, s,
                                            cuda::SplitPolicy::kAuto, &split_stats);
      struct Case {
        std::string name;
        PassInput pass;
        int row;
        cuda::SplitPolicy policy;
      };
      std::vector<Case> cases;
      const int chunk_begin = std::max(0, p - 199);  // a prefill chunk of up to 200 tokens
      cases.push_back(
          {"prefill chunk",
           build_pass(probe, chunk_begin, p - chunk_begin + 1, {others.begin(), others.begin() + 3},
                      {other_pos.begin(), other_pos.begin() + 3}, true, s),
           p - chunk_begin, cuda::SplitPolicy::kAuto});
      const int w_begin = std::max(0, p - 5);  // a window of 16 with the probe 6th
      cases.push_back({"verification window",
                       build_pass(probe, w_begin, 16, {others.begin(), others.begin() + 7},
                                  {other_pos.begin(), other_pos.begin() + 7}, false, s),
                       7 + (p - w_begin), cuda::SplitPolicy::kAuto});
      cases.push_back({"decode in a batch of 64",
                       build_pass(probe, p, 1, others, other_pos, false, s), kOthers,
                       cuda::SplitPolicy::kAuto});
      cases.push_back({"decode alone, never split", build_pass(probe, p, 1, {}, {}, true, s), 0,
                       cuda::SplitPolicy::kNever});
      cases.push_back({"decode alone, always split", build_pass(probe, p, 1, {}, {}, true, s), 0,
                       cuda::SplitPolicy::kAlways});
      if (s == Schedule::kCanonical) {
        // Mixed passes: the background's attention in the fast lane (wide and narrow items,
        // and tall ones in the kernel of their own where the pass is all prefill chunks).
        cases.push_back({"decode in a batch of 64, the others fast",
                         build_pass(probe, p, 1, others, other_pos, false, s, 1, true), kOthers,
                         cuda::SplitPolicy::kAuto});
        cases.push_back({"prefill chunk beside 63 fast prefill chunks",
                         build_pass(probe, chunk_begin, p - chunk_begin + 1, others, other_pos,
                                    false, s, kOtherChunk, true),
                         kOthers * kOtherChunk + (p - chunk_begin), cuda::SplitPolicy::kAuto});
      }
      for (const Case& c : cases) {
        const std::vector<uint16_t> got = run(c.pass, c.row, s, c.policy, &batch_stats);
        const bool same = got == ref;
        if (s == Schedule::kCanonical) {
          EXPECT_TRUE(same) << "context " << ctx << ": canonical output in '" << c.name
                            << "' differs from decode alone (" << split_stats.items << " items, "
                            << split_stats.combines << " combines vs " << batch_stats.items
                            << " items, " << batch_stats.combines << " combines)";
        } else {
          ++fast_checked;
          fast_differs += !same;
        }
      }
    }
  }
  b.set_attention_split_policy(cuda::SplitPolicy::kAuto);
  std::printf(
      "[attention invariance] heads %d/%d head_dim %d: fast lane differed from its own "
      "decode-alone output in %d of %d cases\n",
      g.heads, g.kv_heads, g.head_dim, fast_differs, fast_checked);
  RecordProperty("fast_cases_differing", fast_differs);
  EXPECT_GT(fast_differs, 0) << "the fast lane never varied: this test would not see a "
                                "batch-dependent reduction";
}

INSTANTIATE_TEST_SUITE_P(Geometries, AttentionInvariance,
                         ::testing::Values(AttnGeo{32, 8, 128}, AttnGeo{8, 4, 8},
                                           AttnGeo{16, 2, 64}),
                         [](const ::testing::TestParamInfo<AttnGeo>& i) {
                           return fmt::format("h{}_kv{}_d{}", i.param.heads, i.param.kv_heads,
                                              i.param.head_dim);
                         });

}  // namespace
}  // namespace llm42::test
