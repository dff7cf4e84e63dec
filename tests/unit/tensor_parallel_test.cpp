// Tensor parallelism on the CPU (DESIGN.md §2, §7): the leaf tree of the row-parallel layers
// gives the same bits whether one rank computes all of it or 2, 4 or 8 ranks compute subtrees
// and exchange them; every rank's shard holds exactly its slice of the whole model; and a
// deterministic request's ids and logprobs are the same at TP 1, 2, 4 and 8 under load, in dvr
// and global mode, with preemption and prefix caching - on a dummy GQA model, stories260K and the
// tiny Hugging Face models. The fast lane (and the plain GEMM without the tree) is shown to
// change with the TP size, or the tests would prove nothing.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <random>

#include "engine_harness.h"
#include "model/checkpoint.h"
#include "model/sharding.h"
#include "parallel/communicator_group.h"
#include "parallel/model_loader.h"
#include "parallel/parallel_model.h"
#include "test_util.h"
#include "util/error.h"

namespace llm42::test {
namespace {

// ---- sharding --------------------------------------------------------------------------------

TEST(Sharding, LeavesAreAFunctionOfKAndEveryRankHoldsConsecutiveOnes) {
  // stories260K's FFN: 172 = leaves of 21 or 22, floor(i * 172 / 8).
  const std::vector<int64_t> whole = shard_leaves(172, {0, 1});
  EXPECT_EQ(whole, (std::vector<int64_t>{0, 21, 43, 64, 86, 107, 129, 150, 172}));
  for (int tp : {2, 4, 8}) {
    for (int r = 0; r < tp; ++r) {
      const Range slice = split_range(172, tp, r);
      const std::vector<int64_t> leaves = shard_leaves(172, {r, tp});
      ASSERT_EQ(static_cast<int>(leaves.size()), kTreeLeaves / tp + 1);
      EXPECT_EQ(leaves.back(), slice.size()) << "tp " << tp << " rank " << r;
      for (size_t i = 0; i < leaves.size(); ++i)
        EXPECT_EQ(leaves[i] + slice.begin, whole[static_cast<size_t>(r * 8 / tp) + i]);
    }
  }
}

TEST(Sharding, KvHeadsSplitOrReplicated) {
  ModelConfig c = tiny_test_config();  // 4 query heads, 2 KV heads
  const ShardDims two = shard_dims(c, {1, 2});
  EXPECT_EQ(two.heads.begin, 2);
  EXPECT_EQ(two.kv_heads.begin, 1);
  EXPECT_EQ(two.n_kv_heads(), 1);
  // TP 4 > 2 KV heads: ranks 0, 1 hold KV head 0; ranks 2, 3 KV head 1.
  for (int r = 0; r < 4; ++r) {
    const ShardDims d = shard_dims(c, {r, 4});
    EXPECT_EQ(d.n_heads(), 1);
    EXPECT_EQ(d.kv_heads.begin, r / 2) << "rank " << r;
    EXPECT_EQ(d.n_kv_heads(), 1);
  }
}

TEST(Sharding, RefusesSizesThatDoNotFitNamingTheNumbers) {
  ModelConfig c = tiny_test_config();
  auto message = [&](int tp) {
    try {
      check_tp_size(c, tp);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(message(3).find("1, 2, 4 or 8"), std::string::npos) << message(3);
  EXPECT_NE(message(8).find("does not divide the model's 4 query heads"), std::string::npos)
      << message(8);
  c.n_heads = 9;  // SmolLM2: 9 query heads, 3 KV heads
  c.n_kv_heads = 3;
  EXPECT_NE(message(2).find("9 query heads"), std::string::npos) << message(2);
  EXPECT_TRUE(message(1).empty());
  c.n_heads = 12;
  c.n_kv_heads = 6;
  EXPECT_NE(message(4).find("6 KV heads"), std::string::npos) << message(4);
}

TEST(Sharding, CudaRefusesShardsThatWouldLeaveTheTensorCoreGemm) {
  // stories260K's FFN of 172: gate/up has 344 rows at TP 1 (tensor cores), 172 at TP 2 (not a
  // multiple of 8: the CUDA-core fallback, another order). Refused on CUDA, naming the numbers.
  ModelConfig c = tiny_test_config();
  c.n_heads = 8;
  c.n_kv_heads = 4;
  c.head_dim = 8;
  c.ffn_dim = 172;
  c.vocab_size = 512;
  try {
    check_cuda_shards(c, 2);
    ADD_FAILURE() << "TP 2 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("gate/up GEMM would have 172 rows"), std::string::npos)
        << e.what();
  }
  EXPECT_NO_THROW(check_cuda_shards(tiny_test_config(), 2));
  EXPECT_NO_THROW(check_cuda_shards(tiny_test_config(), 4));
  c.ffn_dim = 176;  // 2 x 88 and 4 x 44 rows: fine
  EXPECT_NO_THROW(check_cuda_shards(c, 4));
  c.vocab_size = 300;  // 300 % 8 != 0: the fallback at every size, the same order
  EXPECT_NO_THROW(check_cuda_shards(c, 2));
}

// ---- the row-parallel GEMM ------------------------------------------------------------------

std::vector<float> random_values(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

Tensor host(std::vector<float>& v, std::initializer_list<int64_t> shape) {
  return Tensor(v.data(), DType::kF32, Device::kCPU, shape);
}

// The columns [k0, k1) of a row-major (rows, k) matrix.
std::vector<float> columns(const std::vector<float>& m, int64_t rows, int64_t k, int64_t k0,
                           int64_t k1) {
  std::vector<float> out;
  for (int64_t r = 0; r < rows; ++r)
    out.insert(out.end(), m.begin() + r * k + k0, m.begin() + r * k + k1);
  return out;
}

TEST(RowParallelGemm, SubtreesAndExchangeEqualTheWholeTreeBitwise) {
  BackendOptions o;
  o.threads = 1;
  const std::unique_ptr<Backend> b = make_backend(o);
  int plain_differs = 0;
  for (const int64_t k : {int64_t{64}, int64_t{172}, int64_t{1000}}) {
    for (const int64_t m : {int64_t{1}, int64_t{3}, int64_t{17}}) {
      const int64_t n = 24;
      std::vector<float> x = random_values(static_cast<size_t>(m * k), 1 + static_cast<uint32_t>(k));
      std::vector<float> w = random_values(static_cast<size_t>(n * k), 2 + static_cast<uint32_t>(m));
      // TP 1: the whole tree on one rank, rounded once.
      std::vector<float> sub(static_cast<size_t>(m * n)), whole(sub.size());
      b->matmul_leaves(host(x, {m, k}), host(w, {n, k}), shard_leaves(k, {0, 1}),
                       host(sub, {m, n}));
      b->sum_parts(host(sub, {1, m, n}), host(whole, {m, n}));
      std::vector<float> plain_whole(sub.size());
      b->matmul(host(x, {m, k}), host(w, {n, k}), nullptr, host(plain_whole, {m, n}),
                Schedule::kCanonical);
      for (int tp : {2, 4, 8}) {
        // Each rank's subtree over its K slice, gathered in rank order, summed along the tree.
        std::vector<float> parts(static_cast<size_t>(tp * m * n)), plain_parts(parts.size());
        for (int r = 0; r < tp; ++r) {
          const Range s = split_range(k, tp, r);
          std::vector<float> xs = columns(x, m, k, s.begin, s.end);
          std::vector<float> ws = columns(w, n, k, s.begin, s.end);
          b->matmul_leaves(host(xs, {m, s.size()}), host(ws, {n, s.size()}),
                           shard_leaves(k, {r, tp}),
                           Tensor(parts.data() + r * m * n, DType::kF32, Device::kCPU, {m, n}));
          b->matmul(host(xs, {m, s.size()}), host(ws, {n, s.size()}), nullptr,
                    Tensor(plain_parts.data() + r * m * n, DType::kF32, Device::kCPU, {m, n}),
                    Schedule::kCanonical);
        }
        std::vector<float> got(sub.size()), plain(sub.size());
        b->sum_parts(host(parts, {tp, m, n}), host(got, {m, n}));
        EXPECT_EQ(std::memcmp(got.data(), whole.data(), got.size() * 4), 0)
            << "K " << k << " M " << m << " TP " << tp;
        b->sum_parts(host(plain_parts, {tp, m, n}), host(plain, {m, n}));
        plain_differs += std::memcmp(plain.data(), plain_whole.data(), plain.size() * 4) != 0;
      }
    }
  }
  // Without the leaves, summing each rank's plain GEMM changes the bits with the TP size.
  EXPECT_GT(plain_differs, 0);
}

// ---- sharded weights ------------------------------------------------------------------------

// A dummy GQA model that exercises every sharding rule: 8 query heads over 2 KV heads
// (replicated at TP 4 and 8), q/k/v biases, an FFN of 172 (uneven leaves and slices), a
// vocabulary of 301 (uneven slices), untied LM head.
ModelConfig gqa_test_config() {
  ModelConfig c = tiny_test_config();
  c.arch = Architecture::kQwen2;
  c.qkv_bias = true;
  c.n_heads = 8;
  c.n_kv_heads = 2;
  c.head_dim = 8;
  c.ffn_dim = 172;
  c.vocab_size = 301;
  return c;
}

std::vector<float> to_vector(const Tensor& t) {
  const float* p = t.ptr<float>();
  return std::vector<float>(p, p + t.numel());
}

// Checks every tensor of rank r's weights against its slice of the whole model's.
void expect_slices(const ModelWeights& whole, const ModelWeights& part) {
  const ModelConfig& c = whole.config;
  const ShardDims& d = part.dims;
  const int64_t hd = c.head_dim, q = c.q_dim(), kv = c.kv_dim(), dim = c.dim, f = c.ffn_dim;
  const int64_t qr0 = d.heads.begin * hd, qr1 = d.heads.end * hd;
  const int64_t kr0 = d.kv_heads.begin * hd, kr1 = d.kv_heads.end * hd;
  const std::string where = fmt::format("rank {} of {}", d.shard.rank, d.shard.size);
  auto same = [&](const Tensor& a, const std::vector<float>& b, const char* what) {
    const std::vector<float> av = to_vector(a);
    ASSERT_EQ(av.size(), b.size()) << what << " " << where;
    EXPECT_EQ(std::memcmp(av.data(), b.data(), b.size() * 4), 0) << what << " " << where;
  };
  auto rows = [](const Tensor& t, int64_t r0, int64_t r1) { return to_vector(t.rows(r0, r1)); };
  same(part.embedding, rows(whole.embedding, d.vocab.begin, d.vocab.end), "embedding");
  same(part.lm_head, rows(whole.lm_head, d.vocab.begin, d.vocab.end), "lm_head");
  for (size_t l = 0; l < whole.layers.size(); ++l) {
    const LayerWeights& a = part.layers[l];
    const LayerWeights& w = whole.layers[l];
    const int64_t pq = qr1 - qr0, pkv = kr1 - kr0;
    same(a.wqkv.rows(0, pq), rows(w.wqkv, qr0, qr1), "q");
    same(a.wqkv.rows(pq, pq + pkv), rows(w.wqkv, q + kr0, q + kr1), "k");
    same(a.wqkv.rows(pq + pkv, pq + 2 * pkv), rows(w.wqkv, q + kv + kr0, q + kv + kr1), "v");
    if (c.qkv_bias) {
      std::vector<float> bias = rows(w.bqkv, qr0, qr1);
      for (const auto& [r0, r1] :
           {std::pair{q + kr0, q + kr1}, std::pair{q + kv + kr0, q + kv + kr1}}) {
        const std::vector<float> more = rows(w.bqkv, r0, r1);
        bias.insert(bias.end(), more.begin(), more.end());
      }
      same(a.bqkv, bias, "qkv bias");
    }
    same(a.wo, columns(to_vector(w.wo), dim, q, qr0, qr1), "o");
    same(a.w_gate_up.rows(0, d.ffn_dim()), rows(w.w_gate_up, d.ffn.begin, d.ffn.end), "gate");
    same(a.w_gate_up.rows(d.ffn_dim(), 2 * d.ffn_dim()),
         rows(w.w_gate_up, f + d.ffn.begin, f + d.ffn.end), "up");
    same(a.w_down, columns(to_vector(w.w_down), dim, f, d.ffn.begin, d.ffn.end), "down");
    same(a.attn_norm, to_vector(w.attn_norm), "attn_norm");
  }
}

TEST(ShardedWeights, DummyShardsAreSlicesOfTheSameModel) {
  BackendOptions o;
  o.threads = 1;
  const std::unique_ptr<Backend> b = make_backend(o);
  const ModelConfig c = gqa_test_config();
  const ModelWeights whole = dummy_weights(*b, c, DType::kF32, 5);
  for (int tp : {2, 4, 8})
    for (int r = 0; r < tp; ++r) expect_slices(whole, dummy_weights(*b, c, DType::kF32, 5, {r, tp}));
}

TEST(ShardedWeights, CheckpointShardsAreSlicesOfTheFile) {
  LLM42_SHARED_OR_SKIP(dir, "models/tiny-qwen2");  // q/k/v biases, tied embeddings
  BackendOptions o;
  o.threads = 1;
  const std::unique_ptr<Backend> b = make_backend(o);
  const Checkpoint ckpt = load_checkpoint(dir);
  const ModelWeights whole = load_weights(*b, ckpt, DType::kF32);
  for (int tp : {2, 4})
    for (int r = 0; r < tp; ++r) {
      const ModelWeights part = load_weights(*b, ckpt, DType::kF32, {r, tp});
      expect_slices(whole, part);
      EXPECT_EQ(part.content_hash, whole.content_hash) << "the fingerprint names the model";
    }
}

// ---- the engine across TP sizes -------------------------------------------------------------

enum class Source { kDummyGqa, kStories, kTinyLlama3, kTinyQwen2, kTinyQwen3, kTinyMistral };

struct TpParam {
  Source source;
  std::vector<int> sizes;  // besides 1
  bool bf16 = false;       // CPU activations rounded to bf16, as on the GPU
};

void PrintTo(const TpParam& p, std::ostream* os) {
  *os << "source " << static_cast<int>(p.source) << (p.bf16 ? ", bf16 activations" : "");
}

std::string source_path(Source s) {
  switch (s) {
    case Source::kStories:
      return "models/stories260K/stories260K.bin";
    case Source::kTinyLlama3:
      return "models/tiny-llama3";
    case Source::kTinyQwen2:
      return "models/tiny-qwen2";
    case Source::kTinyQwen3:
      return "models/tiny-qwen3";
    case Source::kTinyMistral:
      return "models/tiny-mistral";
    default:
      return "";
  }
}

class TensorParallel : public ::testing::TestWithParam<TpParam> {
 protected:
  void SetUp() override {
    const std::string rel = source_path(GetParam().source);
    if (!rel.empty()) {
      if (shared_dir().empty()) GTEST_SKIP() << "shared test data not found (set LLM42_SHARED_DIR)";
      ckpt_ = std::make_unique<Checkpoint>(load_checkpoint(shared_dir() + "/" + rel));
      source_.checkpoint = ckpt_.get();
      source_.config = ckpt_->config;
    } else {
      source_.config = gqa_test_config();
      source_.dummy_seed = 13;
    }
    requests_ = make_requests(24, source_.config.vocab_size, 91, 6, 40);
  }

  TestModel model(int tp, CommKind comm = CommKind::kInProcess) const {
    BackendOptions o;
    o.threads = tp;  // one core per rank
    o.round_activations_bf16 = GetParam().bf16;
    TestModel m;
    m.parallel = load_parallel_model(o, "f32", source_, {tp, comm}, 2048, 2048);
    return m;
  }

  static EngineConfig config(DeterminismMode mode) { return small_engine_config(mode); }

  // The workloads every TP size must answer identically: dvr under background load with a KV
  // pool small enough to preempt, global under load, and a warm prefix cache (the requests
  // twice on one engine; the second round's outcomes).
  std::vector<std::vector<Outcome>> run_all(TestModel& m, int64_t* preemptions,
                                            int64_t* cache_hits) const {
    std::vector<std::vector<Outcome>> out;
    EngineConfig dvr = config(DeterminismMode::kDvr);
    dvr.num_blocks = 40;
    dvr.admission_reserve = 0;
    EngineStats st;
    out.push_back(run_workload(m, dvr, requests_, Load{.background = 24, .seed = 3,
                                                       .arrivals_per_step = 6}, &st));
    *preemptions += st.preemptions;
    out.push_back(run_workload(m, config(DeterminismMode::kGlobal), requests_,
                               Load{.background = 16, .seed = 4, .shuffle = true,
                                    .arrivals_per_step = 3}));
    const std::unique_ptr<Engine> engine = m.engine(config(DeterminismMode::kDvr));
    std::vector<Outcome> second(requests_.size());
    for (int round = 0; round < 2; ++round) {
      for (size_t i = 0; i < requests_.size(); ++i)
        engine->add_request(requests_[i], [&, i, round](RequestOutput&& o) {
          if (round == 1) append_output(second[i], o);
        });
      engine->run_until_idle();
    }
    *cache_hits += engine->stats().prefix_cache_hits;
    out.push_back(std::move(second));
    return out;
  }

  std::unique_ptr<Checkpoint> ckpt_;
  ModelSource source_;
  std::vector<Request> requests_;
};

TEST_P(TensorParallel, DeterministicAnswersAreTheSameAtEveryTpSize) {
  // The reference: each request alone, canonical, on one rank.
  TestModel one = model(1);
  EngineConfig alone = config(DeterminismMode::kGlobal);
  alone.max_num_seqs = 1;
  const std::vector<Outcome> reference = run_workload(one, alone, requests_, Load{.alone = true});
  const char* names[] = {"dvr, background, preemption", "global, shuffled", "prefix cache warm"};
  for (int tp : GetParam().sizes) {
    TestModel m = model(tp);
    int64_t preemptions = 0, cache_hits = 0;
    const std::vector<std::vector<Outcome>> runs = run_all(m, &preemptions, &cache_hits);
    for (size_t w = 0; w < runs.size(); ++w) {
      std::string first;
      const int bad = count_differing(runs[w], reference, &first);
      EXPECT_EQ(bad, 0) << "TP " << tp << ", " << names[w] << ": " << bad << " of "
                        << requests_.size() << " differ from TP 1; " << first;
    }
    EXPECT_GT(preemptions, 0) << "TP " << tp << ": nothing was preempted";
    EXPECT_GT(cache_hits, 0) << "TP " << tp << ": the prefix cache was never hit";
  }
}

TEST_P(TensorParallel, PromptLogprobsAreTheSameAtEveryTpSize) {
  // Echo / prompt_logprobs of deterministic requests come from the canonical prefill: the same
  // bits at every TP size, with the prompts chunked and sharing passes.
  constexpr size_t kScored = 8;  // requests scored together
  auto scored = [&](int tp) {
    TestModel m = model(tp);
    EngineConfig c = config(DeterminismMode::kDvr);
    c.prefill_chunk = 16;
    c.max_prompt_logprobs_rows = 9;
    const std::unique_ptr<Engine> engine = m.engine(c);
    std::vector<std::vector<TokenLogprob>> out(kScored);
    for (size_t i = 0; i < kScored; ++i) {
      Request r = requests_[i];
      r.deterministic = true;
      r.prompt_logprobs = 2;
      engine->add_request(r, [&out, i](RequestOutput&& o) {
        if (!o.prompt_logprobs.empty()) out[i] = std::move(o.prompt_logprobs);
      });
    }
    engine->run_until_idle();
    return out;
  };
  const std::vector<std::vector<TokenLogprob>> reference = scored(1);
  for (int tp : GetParam().sizes) {
    const std::vector<std::vector<TokenLogprob>> got = scored(tp);
    int bad = 0;
    for (size_t i = 0; i < reference.size(); ++i) {
      ASSERT_EQ(got[i].size(), requests_[i].prompt.size() - 1) << "request " << i;
      ASSERT_EQ(got[i].size(), reference[i].size());
      for (size_t j = 0; j < got[i].size(); ++j) {
        const TokenLogprob &a = got[i][j], &b = reference[i][j];
        bad += a.id != b.id || a.rank != b.rank || a.top != b.top ||
               std::memcmp(&a.logprob, &b.logprob, sizeof(float)) != 0;
      }
    }
    EXPECT_EQ(bad, 0) << "TP " << tp << ": prompt logprobs differing from TP 1";
  }
}

TEST_P(TensorParallel, FastLaneChangesWithTheTpSize) {
  // off: every pass fast (plain GEMMs and an all-reduce of the ranks' partial sums). The same
  // requests must come out different at some TP size, or the test above proves nothing.
  const EngineConfig off = config(DeterminismMode::kOff);
  TestModel one = model(1);
  const std::vector<Outcome> base = run_workload(one, off, requests_, Load{.alone = true});
  int differ = 0;
  for (int tp : GetParam().sizes) {
    TestModel m = model(tp);
    const std::vector<Outcome> got = run_workload(m, off, requests_, Load{.alone = true});
    differ += count_differing(got, base, nullptr);
  }
  EXPECT_GT(differ, 0);
}

std::string param_name(const ::testing::TestParamInfo<TpParam>& i) {
  static const char* const kNames[] = {"DummyGqa",  "Stories260K", "TinyLlama3",
                                       "TinyQwen2", "TinyQwen3",   "TinyMistral"};
  return std::string(kNames[static_cast<int>(i.param.source)]) +
         (i.param.bf16 ? "Bf16Activations" : "");
}

INSTANTIATE_TEST_SUITE_P(
    Models, TensorParallel,
    ::testing::Values(TpParam{Source::kDummyGqa, {2, 4, 8}},
                      TpParam{Source::kDummyGqa, {2, 8}, true},
                      TpParam{Source::kStories, {2, 4, 8}},
                      TpParam{Source::kTinyLlama3, {2, 4}},
                      TpParam{Source::kTinyQwen2, {2, 4}},
                      TpParam{Source::kTinyQwen3, {2, 4}},
                      TpParam{Source::kTinyMistral, {4}}),
    param_name);

// ---- a rank that fails mid-pass ----------------------------------------------------------------

// Rank `fail_rank`'s exchanges throw once armed, before reaching the others: the other ranks are
// then waiting for it at that exchange.
struct Injection {
  std::atomic<int> fail_rank{-1};
};

class FailingCommunicator final : public Communicator {
 public:
  FailingCommunicator(std::unique_ptr<Communicator> inner, const Injection& inj)
      : inner_(std::move(inner)), inj_(inj) {}
  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  std::string name() const override { return inner_->name(); }
  void all_reduce_sum(const Tensor& t) override {
    maybe_fail();
    inner_->all_reduce_sum(t);
  }
  void all_gather(const Tensor& in, const Tensor& out) override {
    maybe_fail();
    inner_->all_gather(in, out);
  }
  void abort() override { inner_->abort(); }
  bool recover() override { return inner_->recover(); }

 private:
  void maybe_fail() const {
    if (inj_.fail_rank.load() == rank()) fail("injected failure on rank {}", rank());
  }
  std::unique_ptr<Communicator> inner_;
  const Injection& inj_;
};

// An exchange that says it can be captured into a CUDA graph (as NCCL's does), over another.
class CapturableCommunicator final : public Communicator {
 public:
  explicit CapturableCommunicator(std::unique_ptr<Communicator> inner) : inner_(std::move(inner)) {}
  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  std::string name() const override { return inner_->name(); }
  void all_reduce_sum(const Tensor& t) override { inner_->all_reduce_sum(t); }
  void all_gather(const Tensor& in, const Tensor& out) override { inner_->all_gather(in, out); }
  void abort() override { inner_->abort(); }
  bool recover() override { return inner_->recover(); }
  bool capturable() const override { return true; }

 private:
  std::unique_ptr<Communicator> inner_;
};

// Decode passes at TP > 1 may run as graphs (--tp-cuda-graphs) only where every rank's exchanges
// can be captured; the in-process exchange meets on the host, so it never can.
TEST(TensorParallelGraphs, OnlyWhereEveryRanksExchangesCanBeCaptured) {
  const ModelConfig c = gqa_test_config();
  const int tp = 2;
  for (int capturable_ranks = 0; capturable_ranks <= tp; ++capturable_ranks) {
    const std::unique_ptr<CommunicatorGroup> group =
        make_communicator_group(CommKind::kInProcess, tp, "cpu");
    ParallelModel m(tp, tp, [&](int r) {
      Rank rank;
      BackendOptions o;
      o.threads = 1;
      rank.backend = make_backend(o);
      std::unique_ptr<Communicator> comm = group->join(r, *rank.backend);
      EXPECT_FALSE(comm->capturable()) << comm->name();
      if (r < capturable_ranks) comm = std::make_unique<CapturableCommunicator>(std::move(comm));
      rank.comm = std::move(comm);
      rank.model = std::make_unique<Transformer>(
          *rank.backend, dummy_weights(*rank.backend, c, DType::kF32, 13, {r, tp}), 64, 64,
          rank.comm.get());
      return rank;
    });
    EXPECT_EQ(m.exchanges_capturable(), capturable_ranks == tp)
        << capturable_ranks << " of " << tp << " ranks capturable";
  }
}

TEST(TensorParallelFailure, ARankThatFailsMidPassFailsThePassNotTheEngine) {
  const ModelConfig c = gqa_test_config();
  const int tp = 4;
  Injection inj;
  const std::unique_ptr<CommunicatorGroup> group =
      make_communicator_group(CommKind::kInProcess, tp, "cpu");
  TestModel m;
  m.parallel = std::make_unique<ParallelModel>(tp, tp, [&](int r) {
    Rank rank;
    BackendOptions o;
    o.threads = 1;
    rank.backend = make_backend(o);
    rank.comm = std::make_unique<FailingCommunicator>(group->join(r, *rank.backend), inj);
    rank.model = std::make_unique<Transformer>(
        *rank.backend, dummy_weights(*rank.backend, c, DType::kF32, 13, {r, tp}), 512, 512,
        rank.comm.get());
    return rank;
  });
  const std::vector<Request> requests = make_requests(6, c.vocab_size, 17, 8, 16);
  const EngineConfig config = small_engine_config(DeterminismMode::kDvr);
  const std::vector<Outcome> before = run_workload(m, config, requests, Load{});

  // Rank 2 fails at its first exchange of the next pass; the others wait there for it. Without
  // the abort they would wait forever: the engine's own thread runs it, under a deadline.
  const std::unique_ptr<Engine> engine = m.engine(config);
  std::vector<Outcome> failed(requests.size());
  std::vector<std::string> errors(requests.size());
  std::atomic<int> finished{0};
  inj.fail_rank = 2;
  engine->start();
  for (size_t i = 0; i < requests.size(); ++i)
    engine->add_request(requests[i], [&, i](RequestOutput&& o) {
      append_output(failed[i], o);
      if (o.finished) {
        errors[i] = o.error;
        ++finished;
      }
    });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (finished.load() < static_cast<int>(requests.size())) {
    if (std::chrono::steady_clock::now() > deadline) {
      ADD_FAILURE() << "the engine hung after a rank failed";
      std::_Exit(1);  // the rank threads cannot be joined
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  engine->stop(true);
  for (size_t i = 0; i < requests.size(); ++i) {
    EXPECT_EQ(failed[i].reason, FinishReason::kError) << "request " << i;
    EXPECT_NE(errors[i].find("tensor-parallel rank 2 failed: injected failure on rank 2"),
              std::string::npos)
        << "request " << i << ": " << errors[i];
  }

  // The exchanges are mended: the same requests get the same answers as before the failure.
  inj.fail_rank = -1;
  const std::vector<Outcome> after = run_workload(m, config, requests, Load{});
  for (size_t i = 0; i < requests.size(); ++i)
    EXPECT_EQ(first_mismatch(before[i], after[i]), -1) << "request " << i;
}

// A rank that fails while the ranks are being built (here before it joins its group) must not
// leave the others waiting to join it: ParallelModel tells the group (abort_joins), whose joins
// give up, and the constructor throws the failing rank's own error. The others wait as an NCCL
// join does (until released, under a deadline that would fail the test).
TEST(TensorParallelFailure, ARankThatFailsBeforeJoiningReleasesTheOthers) {
  const int tp = 4;
  std::mutex mu;
  std::condition_variable cv;
  bool released = false;
  std::atomic<int> timed_out{0}, gave_up{0};
  const auto build = [&](int r) -> Rank {
    if (r == 2) fail("no memory for rank 2's weights");
    std::unique_lock lock(mu);
    if (!cv.wait_for(lock, std::chrono::seconds(30), [&] { return released; })) {
      ++timed_out;
      fail("rank {} waited 30 s to join", r);
    }
    ++gave_up;
    throw ExchangeAborted(fmt::format("rank {} stopped waiting for the group", r));
  };
  const auto abort_joins = [&] {
    {
      std::lock_guard lock(mu);
      released = true;
    }
    cv.notify_all();
  };
  try {
    ParallelModel m(tp, tp, build, abort_joins);
    ADD_FAILURE() << "a rank failed, yet the model was built";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor-parallel rank 2 failed: no memory for rank 2"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(timed_out.load(), 0);
  EXPECT_EQ(gave_up.load(), tp - 1);
}

}  // namespace
}  // namespace llm42::test
