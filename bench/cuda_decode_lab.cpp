// Kernel lab: one whole decode step (Transformer::forward, sampling excluded) of Llama-3.1-8B
// with dummy weights on the CUDA backend, in both lanes, launched eagerly and replayed as a
// captured graph, against the HBM roofline: a decode step must read every weight but the
// embedding table once, plus each sequence's KV, so its floor is (those bytes) / bandwidth,
// with the bandwidth of a device-to-device copy measured in the same run. Also checks that the
// canonical lane gives the same logits for a row alone and inside the batch, and a graph the
// same logits as the eager pass (first: where a step's time goes at batch 1 and at batch 256,
// kernel by kernel; each of a layer's kernels captured once per layer's weights in a graph and
// replayed, which is what that kernel costs inside a graph, its launch gap included). Last, the
// cost of a verification pass against its token count.
//
// --arxiv instead breaks down one eager pass of the offline ArXiv-like workload's shape (about
// 1,800 tokens: prefill chunks at long prefixes next to 56 decode rows at contexts of 4K-8K),
// op by op, with the attention's tall tiles by load and also beside the decode rows
// (--cuda-attention-tall mixed).
//
//   ./build/bin/cuda_decode_lab [--quick | --arxiv] [--no-canonical-skinny]
#ifdef LLM42_HAVE_CUDA
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "backend/cuda/check.h"
#include "backend/cuda/cuda_backend.h"
#include "cuda_lab_util.h"
#include "model/device_state.h"
#include "model/sharding.h"
#include "model/transformer.h"
#include "model/weights.h"

namespace {

using namespace llm42;

ModelConfig llama31_8b() {
  ModelConfig c;
  c.arch = Architecture::kLlama;
  c.vocab_size = 128256;
  c.dim = 4096;
  c.n_layers = 32;
  c.n_heads = 32;
  c.n_kv_heads = 8;
  c.head_dim = 128;
  c.ffn_dim = 14336;
  c.max_seq_len = 8192;
  c.rope_theta = 500000.0;
  c.rope_layout = RopeLayout::kHalf;
  c.weights_dtype = DType::kBF16;
  return c;
}

// Blocks a sequence of ctx positions takes.
int blocks_for(int ctx, int bs) { return (ctx + bs - 1) / bs; }

// B sequences of q_len tokens each, ending at position ctx - 1, each over its own blocks; a
// logits row for every token (q_len 1: a decode step; more: verification windows).
PassInput window_pass(int b, int q_len, int ctx, int bs, int blocks_per_seq, Schedule s) {
  PassInput p = lab::pass_of(std::vector<std::pair<int, int>>(b, {ctx - q_len, q_len}), bs,
                             blocks_per_seq, s);
  for (int i = 0; i < p.n_tokens(); ++i) p.logit_rows.push_back(i);
  return p;
}

// A KV cache of n_blocks blocks holding random keys and values.
KvCache random_kv_cache(CudaBackend& b, const ModelConfig& c, int n_blocks, int bs,
                        std::vector<Buffer>& storage) {
  const KvCache cache = allocate_kv_cache(b, c, n_blocks, bs, storage);
  for (int l = 0; l < c.n_layers; ++l) {
    b.fill_random(cache.k[l], 100 + l, RandomInit::kNormal, 1.0f);
    b.fill_random(cache.v[l], 200 + l, RandomInit::kNormal, 1.0f);
  }
  return cache;
}

// One layer's activations for n rows (the residual stream, its update, the normed input, qkv,
// attention output, gate_up, SwiGLU output), random.
struct LayerActs {
  lab::Owned x, delta, h, qkv, attn, gu, act;
  LayerActs(CudaBackend& b, const ModelConfig& c, int64_t n)
      : x(lab::make(b, DType::kBF16, {n, c.dim})),
        delta(lab::make(b, DType::kBF16, {n, c.dim})),
        h(lab::make(b, DType::kBF16, {n, c.dim})),
        qkv(lab::make(b, DType::kBF16, {n, (c.n_heads + 2LL * c.n_kv_heads) * c.head_dim})),
        attn(lab::make(b, DType::kBF16, {n, c.q_dim()})),
        gu(lab::make(b, DType::kBF16, {n, 2LL * c.ffn_dim})),
        act(lab::make(b, DType::kBF16, {n, c.ffn_dim})) {
    for (const Tensor* t : {&x.t, &delta.t, &h.t, &qkv.t, &attn.t, &gu.t, &act.t})
      b.fill_random(*t, 11, RandomInit::kNormal, 0.5f);
  }
};

// A kernel to time: once per layer (each layer's weights) or once per step.
struct Op {
  const char* name;
  bool per_layer;
  double flops;  // per launch, for the GEMMs (0: not counted)
  std::function<void()> run;
};

// What a layer's ops read, set before each run: the layer's weights, its index, the lane.
struct OpState {
  const LayerWeights* lw = nullptr;
  int layer = 0;
  Schedule s = Schedule::kFast;
};

// A row-parallel GEMM as Transformer::row_parallel runs it at TP 1: the plain GEMM in the fast
// lane, the whole leaf tree rounded once to bf16 (matmul_leaves; fused or through memory, as the
// runner's check decided) in the canonical lane.
void row_parallel(CudaBackend& b, const Tensor& x, const Tensor& w, LayerActs& a, Schedule s) {
  if (s == Schedule::kFast) {
    b.matmul(x, w, nullptr, a.delta.t, s);
    return;
  }
  b.matmul_leaves(x, w, shard_leaves(x.dim(1), {0, 1}), a.delta.t);
}

// The nine kernels of a layer over n rows of `a`, as Transformer::forward launches them.
std::vector<Op> layer_ops(CudaBackend& b, const ModelConfig& c, LayerActs& a, const RopeTable& rope,
                          const KvCache& cache, OpState& st, int64_t n) {
  const QkvLayout layout{c.n_heads, c.n_kv_heads, c.head_dim};
  const double m = static_cast<double>(n);
  return {
      {"add_rmsnorm", true, 0,
       [&, layout] { b.add_rmsnorm(a.x.t, a.delta.t, st.lw->attn_norm, 1e-5f, a.h.t, st.s); }},
      {"qkv gemm", true, 2 * m * c.dim * layout.row(),
       [&] { b.matmul(a.h.t, st.lw->wqkv, nullptr, a.qkv.t, st.s); }},
      {"rope + kv write", true, 0,
       [&, layout] { b.rope_kv_write(a.qkv.t, layout, rope, cache, st.layer); }},
      {"attention", true, 0,
       [&, layout] { b.attention(a.qkv.t, layout, cache, st.layer, a.attn.t, st.s); }},
      {"o gemm", true, 2 * m * c.q_dim() * c.dim,
       [&] { row_parallel(b, a.attn.t, st.lw->wo, a, st.s); }},
      {"add_rmsnorm", true, 0,
       [&] { b.add_rmsnorm(a.x.t, a.delta.t, st.lw->ffn_norm, 1e-5f, a.h.t, st.s); }},
      {"gate_up gemm", true, 2 * m * c.dim * 2.0 * c.ffn_dim,
       [&] { b.matmul(a.h.t, st.lw->w_gate_up, nullptr, a.gu.t, st.s); }},
      {"swiglu", true, 0, [&] { b.swiglu(a.gu.t, a.act.t); }},
      {"down gemm", true, 2 * m * c.ffn_dim * c.dim,
       [&] { row_parallel(b, a.act.t, st.lw->w_down, a, st.s); }},
  };
}

// A decode step of `bsz` sequences at context `ctx`, in both lanes: each kernel of a layer
// launched once per layer (each layer's own weights, as a step reads them) inside one captured
// graph, replayed; microseconds per launch. The sum over a step (32 of each, plus the head)
// against the step itself shows what the kernels cost alone and what their sequence adds.
void breakdown(CudaBackend& b, Transformer& model, const KvCache& cache, int bs, int bsz, int ctx) {
  const ModelConfig& c = model.config();
  const ModelWeights& mw = model.weights();
  const QkvLayout layout{c.n_heads, c.n_kv_heads, c.head_dim};
  std::vector<Buffer> storage;
  const RopeTable rope = make_rope_table(b, c, c.max_seq_len, storage);
  const int64_t n = bsz;
  LayerActs a(b, c, n);
  lab::Owned logits = lab::make(b, DType::kF32, {n, c.vocab_size});
  OpState st;
  std::vector<Op> ops = layer_ops(b, c, a, rope, cache, st, n);
  ops.push_back({"embedding", false, 0, [&] { b.embedding(mw.embedding, 0, a.x.t); }});
  ops.push_back(
      {"final rmsnorm", false, 0, [&] { b.rmsnorm(a.x.t, mw.final_norm, 1e-5f, a.h.t, st.s); }});
  ops.push_back(
      {"lm_head gemm", false, 0, [&] { b.matmul(a.h.t, mw.lm_head, nullptr, logits.t, st.s); }});
  // us[lane][op]: microseconds of all of an op's launches in a step; then the steps themselves.
  std::vector<double> us[2];
  double total[2] = {0, 0}, step_us[2] = {0, 0};
  for (int lane = 0; lane < 2; ++lane) {
    st.s = lane == 0 ? Schedule::kFast : Schedule::kCanonical;
    PassInput pass = window_pass(bsz, 1, ctx, bs, blocks_for(ctx, bs), st.s);
    pass.graph = true;
    b.begin_graph_pass(pass, cache, layout);
    for (const Op& op : ops) {
      const int count = op.per_layer ? c.n_layers : 1;
      st.lw = &mw.layers[0];
      st.layer = 0;
      op.run();  // picks the lane's kernel for the shape outside the capture
      b.synchronize();
      cudaGraph_t graph = nullptr;
      LLM42_CUDA_CHECK(cudaStreamBeginCapture(b.stream(), cudaStreamCaptureModeThreadLocal));
      for (int l = 0; l < count; ++l) {
        st.lw = &mw.layers[l];
        st.layer = l;
        op.run();
      }
      LLM42_CUDA_CHECK(cudaStreamEndCapture(b.stream(), &graph));
      cudaGraphExec_t exec = nullptr;
      LLM42_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
      const double t =
          lab::time_us(b, 7, [&](int) { LLM42_CUDA_CHECK(cudaGraphLaunch(exec, b.stream())); });
      cudaGraphExecDestroy(exec);
      cudaGraphDestroy(graph);
      us[lane].push_back(t);
      total[lane] += t;
    }
    // The step itself, as a graph: the same pass through the model.
    model.forward(pass, cache);
    b.synchronize();
    step_us[lane] = lab::time_us(b, 9, [&](int) { model.forward(pass, cache); });
  }
  std::printf(
      "\nB %d step at context %d, kernel by kernel (each kernel launched once per layer in "
      "one graph, replayed; us each, and us in a step)\n%-16s %5s %9s %9s %10s %10s\n",
      bsz, ctx, "kernel", "count", "fast", "canonical", "fast step", "canon step");
  for (size_t i = 0; i < ops.size(); ++i) {
    const int count = ops[i].per_layer ? c.n_layers : 1;
    std::printf("%-16s %5d %9.2f %9.2f %10.1f %10.1f\n", ops[i].name, count, us[0][i] / count,
                us[1][i] / count, us[0][i], us[1][i]);
  }
  std::printf("%-16s %5s %9s %9s %10.1f %10.1f\n%-16s %5s %9s %9s %10.1f %10.1f\n",
              "sum of kernels", "", "", "", total[0], total[1], "the step (graph)", "", "", "",
              step_us[0], step_us[1]);
}

// One eager pass of the ArXiv-like step, op by op: each op launched once per layer (each
// layer's weights), eagerly, timed together; TFLOP/s for the GEMMs; then the whole pass
// (Transformer::forward). Attention with the tall tiles by load (auto) and with `mixed`.
int arxiv_breakdown(CudaBackend& b, Transformer& model, int bs) {
  const ModelConfig& c = model.config();
  const ModelWeights& mw = model.weights();
  const QkvLayout layout{c.n_heads, c.n_kv_heads, c.head_dim};
  // Logits for the decode rows (the chunks end short of their prompts).
  PassInput pass = lab::pass_of(lab::arxiv_step(), bs, 0, Schedule::kFast);
  for (const PassSeq& q : pass.seqs)
    if (q.q_len == 1) pass.logit_rows.push_back(q.q_begin);
  int n_blocks = 0;
  for (const PassSeq& q : pass.seqs) n_blocks += q.n_blocks;
  std::vector<Buffer> storage;
  const KvCache cache = random_kv_cache(b, c, n_blocks, bs, storage);
  const RopeTable rope = make_rope_table(b, c, c.max_seq_len, storage);
  const int64_t n = pass.n_tokens(), r = static_cast<int64_t>(pass.logit_rows.size());
  LayerActs a(b, c, n);
  lab::Owned last = lab::make(b, DType::kBF16, {r, c.dim}),
             logits = lab::make(b, DType::kF32, {r, c.vocab_size});
  b.fill_random(last.t, 12, RandomInit::kNormal, 0.5f);
  OpState st;  // the fast lane
  std::vector<Op> ops = layer_ops(b, c, a, rope, cache, st, n);
  ops.push_back({"embedding", false, 0, [&] { b.embedding(mw.embedding, 0, a.x.t); }});
  ops.push_back({"gather logit rows", false, 0, [&] { b.gather_logit_rows(a.x.t, last.t); }});
  ops.push_back({"lm_head gemm", false, 2.0 * static_cast<double>(r) * c.dim * c.vocab_size,
                 [&] { b.matmul(last.t, mw.lm_head, nullptr, logits.t, st.s); }});
  std::printf(
      "\nArXiv-like pass: %lld tokens (chunks of 512 at prefixes 1024, 3072, 5120 and of 200 at "
      "0; 56 decode rows at contexts 4000-7929), %lld logit rows, fast lane, eager\n%-18s %5s "
      "%10s %10s %9s\n",
      static_cast<long long>(n), static_cast<long long>(r), "op", "count", "us each", "us a pass",
      "TFLOP/s");
  double total = 0;
  for (const Op& op : ops) {
    const int count = op.per_layer ? c.n_layers : 1;
    b.begin_pass(pass, cache, layout);
    const double us = lab::time_us(b, 5, [&](int) {
      for (int l = 0; l < count; ++l) {
        st.lw = &mw.layers[l];
        st.layer = l;
        op.run();
      }
    });
    total += us;
    std::printf("%-18s %5d %10.1f %10.1f", op.name, count, us / count, us);
    if (op.flops > 0) std::printf(" %9.1f", op.flops * count / (us * 1e-6) / 1e12);
    std::printf("\n");
  }
  std::printf("%-18s %5s %10s %10.1f\n", "sum of ops", "", "", total);
  for (cuda::TallPolicy tall : {cuda::TallPolicy::kAuto, cuda::TallPolicy::kMixed}) {
    b.set_attention_tall_policy(tall);
    b.begin_pass(pass, cache, layout);
    const double att = lab::time_us(b, 5, [&](int) {
      for (int l = 0; l < c.n_layers; ++l) b.attention(a.qkv.t, layout, cache, l, a.attn.t, st.s);
    });
    const CudaBackend::AttnPlanStats st = b.last_attention_plan();
    model.forward(pass, cache);
    b.synchronize();
    const double step = lab::time_us(b, 5, [&](int) { model.forward(pass, cache); });
    std::printf(
        "tall tiles %-6s: attention %8.1f us a pass (%d items, %d tall, %d narrow); the pass "
        "(Transformer::forward) %8.1f us = %.0f tok/s\n",
        tall == cuda::TallPolicy::kAuto ? "auto" : "mixed", att, st.items, st.tall, st.narrow, step,
        static_cast<double>(n) / (step * 1e-6));
  }
  b.set_attention_tall_policy(cuda::TallPolicy::kAuto);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, skinny = true, arxiv = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") {
      quick = true;
    } else if (a == "--arxiv") {
      arxiv = true;
    } else if (a == "--no-canonical-skinny") {
      skinny = false;
    } else {
      std::fprintf(stderr, "usage: cuda_decode_lab [--quick | --arxiv] [--no-canonical-skinny]\n");
      return 2;
    }
  }
  if (cuda_device_count() == 0) {
    std::printf("cuda_decode_lab: no CUDA GPU, nothing to measure\n");
    return 0;
  }
  BackendOptions opts;
  opts.device = "cuda";
  opts.cuda.canonical_skinny = skinny;  // where the canonical autotune admits it (the default)
  CudaBackend b(opts, 0);
  ModelConfig c = llama31_8b();
  if (quick) c.n_layers = 4;
  ModelWeights w = dummy_weights(b, c, DType::kBF16, 7);
  w.config = c;
  const double weight_bytes = static_cast<double>(w.bytes_per_decode_step());
  Transformer model(b, std::move(w), 2048, 2048);
  if (arxiv) {
    std::printf("device: %s; model llama-3.1-8b shape, %d layers\n", b.device_name().c_str(),
                c.n_layers);
    return arxiv_breakdown(b, model, 16);
  }
  // KV for 64 sequences of 4096 positions (or more sequences of fewer: blocks are taken
  // sequence by sequence).
  const int bs = 16, kv_positions = 64 * 4096;
  std::vector<Buffer> storage;
  const KvCache cache = random_kv_cache(b, c, kv_positions / bs, bs, storage);
  const double bandwidth = lab::copy_bandwidth(b);
  std::printf(
      "device: %s; model llama-3.1-8b shape, %d layers, %.2f GB of weights read per step; "
      "copy bandwidth %.0f GB/s\n",
      b.device_name().c_str(), c.n_layers, weight_bytes / 1e9, bandwidth / 1e9);

  // Batch 1 (the latency case) and a full batch at a ShareGPT-like context (the throughput case,
  // where the offline benchmark's deterministic traffic runs the canonical lane).
  breakdown(b, model, cache, bs, 1, 1024);
  breakdown(b, model, cache, bs, quick ? 8 : 256, 512);

  cudaEvent_t start, stop;
  LLM42_CUDA_CHECK(cudaEventCreate(&start));
  LLM42_CUDA_CHECK(cudaEventCreate(&stop));
  std::printf("%-10s %4s %6s %9s %9s %9s %9s %7s %7s\n", "lane", "B", "ctx", "eager ms", "graph ms",
              "floor ms", "tok/s", "eager%", "graph%");
  // Median milliseconds of forward passes after one untimed (tuning, capture) pass.
  auto time_forward_ms = [&](const PassInput& pass, int reps) {
    model.forward(pass, cache);
    b.synchronize();
    std::vector<float> t;
    for (int r = 0; r < reps; ++r) {
      LLM42_CUDA_CHECK(cudaEventRecord(start, b.stream()));
      model.forward(pass, cache);
      LLM42_CUDA_CHECK(cudaEventRecord(stop, b.stream()));
      LLM42_CUDA_CHECK(cudaEventSynchronize(stop));
      float elapsed = 0;
      LLM42_CUDA_CHECK(cudaEventElapsedTime(&elapsed, start, stop));
      t.push_back(elapsed);
    }
    std::sort(t.begin(), t.end());
    return static_cast<double>(t[t.size() / 2]);
  };
  std::vector<float> alone_logits(static_cast<size_t>(c.vocab_size));
  auto logits_of = [&](const Tensor& t) {
    std::vector<float> row(static_cast<size_t>(t.numel()));
    b.copy_to_host(row.data(), t.data, row.size() * sizeof(float));
    return row;
  };
  for (int bsz : quick ? std::vector<int>{1, 8} : std::vector<int>{1, 8, 32, 64, 128, 256}) {
    for (int ctx : {1024, 4096}) {
      if (static_cast<int64_t>(bsz) * ctx > kv_positions) continue;
      const int per_seq = blocks_for(ctx, bs);
      const double kv_bytes = double(bsz) * ctx * c.n_layers * c.kv_dim() * 2 * 2;
      const double floor_ms = (weight_bytes + kv_bytes) / bandwidth * 1e3;
      for (Schedule s : {Schedule::kFast, Schedule::kCanonical}) {
        double ms[2];
        std::vector<float> eager_logits;
        for (bool graph : {false, true}) {
          PassInput pass = window_pass(bsz, 1, ctx, bs, per_seq, s);
          pass.graph = graph;
          ms[graph] = time_forward_ms(pass, quick ? 3 : 10);
          const Tensor logits = model.forward(pass, cache);
          if (!graph) {
            eager_logits = logits_of(logits);
          } else if (logits_of(logits) != eager_logits) {
            std::printf("  graph replay of %s B %d ctx %d: logits DIFFER from the eager pass\n",
                        std::string(schedule_name(s)).c_str(), bsz, ctx);
          }
        }
        std::printf("%-10s %4d %6d %9.2f %9.2f %9.2f %9.0f %6.0f%% %6.0f%%\n",
                    std::string(schedule_name(s)).c_str(), bsz, ctx, ms[0], ms[1], floor_ms,
                    bsz / (ms[1] * 1e-3), 100 * floor_ms / ms[0], 100 * floor_ms / ms[1]);
        if (s == Schedule::kCanonical && ctx == 1024) {
          // Row 0 of a canonical batch must equal the same row decoded alone.
          std::vector<float> row(eager_logits.begin(), eager_logits.begin() + c.vocab_size);
          if (bsz == 1)
            alone_logits = row;
          else
            std::printf("  canonical row 0 of B %d equals B 1 bit for bit: %s\n", bsz,
                        row == alone_logits ? "yes" : "NO");
        }
      }
    }
  }

  // The cost of one verification pass against its token count (the LLM-42 paper's study): G
  // windows of W tokens at context 1024, canonical lane, eager, against a canonical decode step
  // of the same G sequences.
  std::printf("\n%-8s %4s %4s %7s %9s %9s %10s\n", "verify", "W", "G", "tokens", "ms", "decode ms",
              "x decode");
  const int windows[][2] = {{16, 1},  {64, 1},  {256, 1}, {16, 8},  {32, 8}, {64, 8},
                            {128, 8}, {256, 8}, {64, 4},  {64, 16}, {64, 32}};
  for (const auto& wg : windows) {
    const int win = wg[0], g = wg[1];
    if (win * g > 2048 || (quick && win * g > 512)) continue;
    const int per_seq = blocks_for(1024, bs);
    const int reps = quick ? 3 : 7;
    const double verify_ms =
        time_forward_ms(window_pass(g, win, 1024, bs, per_seq, Schedule::kCanonical), reps);
    const double decode_ms =
        time_forward_ms(window_pass(g, 1, 1024, bs, per_seq, Schedule::kCanonical), reps);
    std::printf("%-8s %4d %4d %7d %9.2f %9.2f %10.2f\n", "canon", win, g, win * g, verify_ms,
                decode_ms, verify_ms / decode_ms);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return 0;
}
#else
#include <cstdio>
int main() {
  std::printf("cuda_decode_lab: this build has no CUDA backend\n");
  return 0;
}
#endif
