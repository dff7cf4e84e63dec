// The forward pass on the CPU backend: canonical schedule is batch-invariant (a row's logits are
// bitwise equal whatever else is in the pass, wherever it sits, however its prompt was chunked,
// prefill or decode), and the fast schedule is not.
#include "model/transformer.h"

#include <gtest/gtest.h>

#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "backend/backend.h"
#include "model/device_state.h"
#include "model/weights.h"
#include "test_util.h"

namespace llm42 {
namespace {

constexpr int kBlock = 16;

// Owns a model, a KV cache and a trivial block allocator, and runs hand-built passes.
class Harness {
 public:
  explicit Harness(const ModelConfig& c, bool bf16 = false, int threads = 2) {
    BackendOptions o;
    o.threads = threads;
    o.round_activations_bf16 = bf16;
    backend_ = make_backend(o);
    model_ = std::make_unique<Transformer>(*backend_, dummy_weights(*backend_, c, DType::kF32, 7),
                                           1024, 1024);
    kv_ = allocate_kv_cache(*backend_, c, 512, kBlock, storage_);
  }

  struct Seq {
    std::vector<int32_t> tokens;
    std::vector<int32_t> blocks;
  };

  Seq new_seq(std::vector<int32_t> tokens) {
    Seq s;
    s.tokens = std::move(tokens);
    const int n = (static_cast<int>(s.tokens.size()) + kBlock) / kBlock + 1;
    for (int i = 0; i < n; ++i) s.blocks.push_back(next_block_++);
    return s;
  }

  struct Chunk {
    Seq* seq;
    int begin;
    int n;
  };

  // Runs one pass over the chunks and returns the logits of every token row, in row order.
  std::vector<std::vector<float>> run(const std::vector<Chunk>& chunks, Schedule sched) {
    PassInput in;
    in.schedule = sched;
    for (const Chunk& c : chunks) {
      PassSeq ps{in.n_tokens(), c.n, c.begin, static_cast<int32_t>(in.block_tables.size()),
                 static_cast<int32_t>(c.seq->blocks.size())};
      in.block_tables.insert(in.block_tables.end(), c.seq->blocks.begin(), c.seq->blocks.end());
      for (int i = 0; i < c.n; ++i) {
        const int pos = c.begin + i;
        in.logit_rows.push_back(in.n_tokens());
        in.tokens.push_back(c.seq->tokens[pos]);
        in.positions.push_back(pos);
        in.slots.push_back(c.seq->blocks[pos / kBlock] * kBlock + pos % kBlock);
      }
      in.seqs.push_back(ps);
    }
    const Tensor logits = model_->forward(in, kv_);
    const int v = model_->config().vocab_size;
    std::vector<float> host(static_cast<size_t>(logits.numel()));
    backend_->copy_to_host(host.data(), logits.data, logits.nbytes());
    std::vector<std::vector<float>> rows;
    for (int r = 0; r < logits.dim(0); ++r)
      rows.emplace_back(host.begin() + static_cast<ptrdiff_t>(r) * v,
                        host.begin() + static_cast<ptrdiff_t>(r + 1) * v);
    return rows;
  }

 private:
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Transformer> model_;
  std::vector<Buffer> storage_;
  KvCache kv_;
  int next_block_ = 0;
};

std::vector<int32_t> random_tokens(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& x : t) x = static_cast<int32_t>(rng() % 300);
  return t;
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

class CanonicalInvariance : public ::testing::TestWithParam<bool> {};

TEST_P(CanonicalInvariance, RowLogitsIgnoreBatchChunkingAndLane) {
  const bool bf16 = GetParam();
  Harness h(test::tiny_test_config(), bf16);
  const std::vector<int32_t> prompt = random_tokens(150, 1);

  // Reference: the whole prompt alone in one canonical prefill.
  Harness::Seq a = h.new_seq(prompt);
  const auto ref = h.run({{&a, 0, 150}}, Schedule::kCanonical);

  // The same prompt chunked 37 + 64 + 49, each chunk batched with different neighbours placed
  // before and after it.
  Harness::Seq b = h.new_seq(prompt);
  Harness::Seq n1 = h.new_seq(random_tokens(90, 2));
  Harness::Seq n2 = h.new_seq(random_tokens(70, 3));
  std::vector<std::vector<float>> got;
  auto r1 = h.run({{&n1, 0, 90}, {&b, 0, 37}}, Schedule::kCanonical);
  got.insert(got.end(), r1.begin() + 90, r1.end());
  auto r2 = h.run({{&b, 37, 64}, {&n2, 0, 70}}, Schedule::kCanonical);
  got.insert(got.end(), r2.begin(), r2.begin() + 64);
  // The last 49 tokens one at a time, like decode steps, each with a different batch.
  for (int pos = 101; pos < 150; ++pos) {
    Harness::Seq other = h.new_seq(random_tokens(pos % 7 + 1, 100 + pos));
    std::vector<Harness::Chunk> chunks;
    if (pos % 2 == 0) chunks.push_back({&other, 0, pos % 7 + 1});
    chunks.push_back({&b, pos, 1});
    if (pos % 2 == 1) chunks.push_back({&other, 0, pos % 7 + 1});
    auto r = h.run(chunks, Schedule::kCanonical);
    got.push_back(r[pos % 2 == 0 ? static_cast<size_t>(pos % 7 + 1) : 0]);
  }
  ASSERT_EQ(got.size(), ref.size());
  for (size_t i = 0; i < ref.size(); ++i)
    ASSERT_TRUE(bitwise_equal(got[i], ref[i])) << "position " << i << " differs";
}

INSTANTIATE_TEST_SUITE_P(Fp32AndBf16Activations, CanonicalInvariance, ::testing::Bool());

TEST(FastSchedule, DiffersWithBatchShape) {
  Harness h(test::tiny_test_config());
  const std::vector<int32_t> prompt = random_tokens(80, 5);
  Harness::Seq a = h.new_seq(prompt);
  h.run({{&a, 0, 79}}, Schedule::kCanonical);
  const auto canon = h.run({{&a, 79, 1}}, Schedule::kCanonical)[0];
  // Decode the same row alone and beside 1, 3 and 15 other decode rows.
  std::vector<std::vector<float>> fast;
  for (int others : {0, 1, 3, 15}) {
    std::vector<Harness::Seq> neigh;
    for (int i = 0; i < others; ++i) neigh.push_back(h.new_seq(random_tokens(40, 50 + i)));
    std::vector<Harness::Chunk> chunks{{&a, 79, 1}};
    for (auto& n : neigh) {
      h.run({{&n, 0, 39}}, Schedule::kCanonical);
      chunks.push_back({&n, 39, 1});
    }
    fast.push_back(h.run(chunks, Schedule::kFast)[0]);
  }
  int differing = 0;
  for (const auto& f : fast) differing += bitwise_equal(f, canon) ? 0 : 1;
  EXPECT_GT(differing, 0) << "the fast schedule never differed from the canonical one";
  bool varies = false;
  for (size_t i = 1; i < fast.size(); ++i) varies |= !bitwise_equal(fast[i], fast[0]);
  EXPECT_TRUE(varies) << "the fast schedule gave the same bits at every batch size";
  // Still the same function: close to the canonical values.
  for (const auto& f : fast)
    for (size_t i = 0; i < f.size(); ++i) ASSERT_NEAR(f[i], canon[i], 1e-3);
}

}  // namespace
}  // namespace llm42
