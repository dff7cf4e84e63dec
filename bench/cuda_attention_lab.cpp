// Kernel lab: paged attention of the CUDA backend. Variants: canonical with the planner's
// choice of key splits (by load), canonical never split, canon-wide (no narrow items), fast
// (FlashDecoding splits and tall row tiles by load), fast-64rows (the same without tall row
// tiles), fast-wide (without narrow items).
// Checks every variant against the CPU attention, then times decode (memory-bound: floor =
// KV bytes / bandwidth) and prefill (compute-bound: floor = 4 * heads * head_dim * sum of keys
// per query / GEMM rate) at Llama-3.1-8B geometry (32 query heads, 8 KV heads, head_dim 128).
//
//   ./build/bin/cuda_attention_lab [--quick | --profile | --profile-decode | --arxiv]
//
// --profile runs only the 4096-token prefill, --profile-decode only the decode step of 256
// sequences at context 512 (a full batch of ShareGPT-like traffic), once per variant after a
// warm-up, for a profiler (ncu -k regex:attention).
//
// Last, an ArXiv-like step's attention (the offline ArXiv-like workload's passes: prefill
// chunks at long prefixes next to ~56 decode rows at contexts of 4K-8K, about 1,800 tokens),
// its prefill chunks alone, its decode rows alone and the two together, in the fast lane with
// tall tiles by load (auto), also beside decode rows (--cuda-attention-tall mixed), never, and
// with every row tile split (two key pieces and a combine: the decode rows' items otherwise
// fill 1.1 waves), and in the canonical lane. --arxiv runs only that section.
#ifdef LLM42_HAVE_CUDA
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/check.h"
#include "backend/cuda/cuda_backend.h"
#include "cuda_lab_util.h"
#include "util/numeric.h"

namespace {

using namespace llm42;

constexpr double kMmaRate = 660e12;  // dense bf16 mma.sync peak of an H100 SXM

using lab::make;
using lab::Owned;

struct Variant {
  const char* name;
  Schedule schedule;
  cuda::SplitPolicy policy;
  cuda::TallPolicy tall = cuda::TallPolicy::kAuto;
  bool narrow = true;
};
const Variant kVariants[] = {
    {"canonical", Schedule::kCanonical, cuda::SplitPolicy::kAuto},
    {"canon-nosplit", Schedule::kCanonical, cuda::SplitPolicy::kNever},
    {"canon-wide", Schedule::kCanonical, cuda::SplitPolicy::kAuto, cuda::TallPolicy::kAuto, false},
    {"fast", Schedule::kFast, cuda::SplitPolicy::kAuto},
    {"fast-64rows", Schedule::kFast, cuda::SplitPolicy::kAuto, cuda::TallPolicy::kNever},
    {"fast-wide", Schedule::kFast, cuda::SplitPolicy::kAuto, cuda::TallPolicy::kAuto, false}};

// `n_seqs` sequences, each with q_len queries ending at position ctx - 1.
PassInput make_pass(int n_seqs, int q_len, int ctx, int block_size, int blocks_per_seq) {
  return lab::pass_of(std::vector<std::pair<int, int>>(n_seqs, {ctx - q_len, q_len}), block_size,
                      blocks_per_seq, Schedule::kCanonical);
}

KvCache cache_of(const Owned& k, const Owned& v, int n_blocks, int bs, int kvh, int hd,
                 DType dtype) {
  KvCache c;
  c.n_layers = 1;
  c.n_blocks = n_blocks;
  c.block_size = bs;
  c.n_kv_heads = kvh;
  c.head_dim = hd;
  c.dtype = dtype;
  c.k = {k.t};
  c.v = {v.t};
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (argc > 2 || (!mode.empty() && mode != "--quick" && mode != "--profile" &&
                   mode != "--profile-decode" && mode != "--arxiv")) {
    std::fprintf(stderr,
                 "usage: cuda_attention_lab [--quick | --profile | --profile-decode | --arxiv]\n");
    return 2;
  }
  const bool quick = mode == "--quick";
  const bool arxiv_only = mode == "--arxiv";
  const bool profile_decode = mode == "--profile-decode";
  const bool profile = profile_decode || mode == "--profile";
  if (cuda_device_count() == 0) {
    std::printf("cuda_attention_lab: no CUDA GPU, nothing to measure\n");
    return 0;
  }
  BackendOptions opts;
  opts.device = "cuda";
  CudaBackend b(opts, 0);
  const QkvLayout ql{32, 8, 128};
  const int bs = 16;

  // CPU check: two prefill chunks, a verification window and two decode rows.
  if (!profile) {
    const int per_seq = 64, n_blocks = 5 * per_seq;
    CpuBackend cpu(BackendOptions{});
    const size_t kv_elems = size_t(n_blocks) * bs * ql.kv_dim();
    std::mt19937 rng(3);
    std::normal_distribution<float> nd(0.f, 1.f);
    std::vector<float> kh(kv_elems), vh(kv_elems);
    for (float& x : kh) x = round_bf16(nd(rng));
    for (float& x : vh) x = round_bf16(nd(rng));
    Owned kd = make(b, DType::kBF16, {n_blocks, bs, 8, 128});
    Owned vd = make(b, DType::kBF16, {n_blocks, bs, 8, 128});
    b.upload_convert(kh.data(), DType::kF32, kd.t);
    b.upload_convert(vh.data(), DType::kF32, vd.t);
    KvCache gc = cache_of(kd, vd, n_blocks, bs, 8, 128, DType::kBF16);
    KvCache cc = gc;
    cc.dtype = DType::kF32;
    cc.k = {Tensor(kh.data(), DType::kF32, Device::kCPU, {n_blocks, bs, 8, 128})};
    cc.v = {Tensor(vh.data(), DType::kF32, Device::kCPU, {n_blocks, bs, 8, 128})};
    PassInput pass;
    const int lens[5][2] = {{0, 100}, {300, 64}, {900, 16}, {511, 1}, {1000, 1}};
    for (int s = 0; s < 5; ++s) {
      PassInput one = make_pass(1, lens[s][1], lens[s][0] + lens[s][1], bs, per_seq);
      PassSeq q = one.seqs[0];
      q.q_begin = pass.n_tokens();
      q.block_begin = static_cast<int32_t>(pass.block_tables.size());
      for (int32_t& blk : one.block_tables) blk += s * per_seq;
      for (int32_t& sl : one.slots) sl += s * per_seq * bs;
      pass.block_tables.insert(pass.block_tables.end(), one.block_tables.begin(),
                               one.block_tables.end());
      pass.tokens.insert(pass.tokens.end(), one.tokens.begin(), one.tokens.end());
      pass.positions.insert(pass.positions.end(), one.positions.begin(), one.positions.end());
      pass.slots.insert(pass.slots.end(), one.slots.begin(), one.slots.end());
      pass.seqs.push_back(q);
    }
    const int t = pass.n_tokens();
    std::vector<float> qkv(size_t(t) * ql.row());
    for (float& x : qkv) x = round_bf16(nd(rng));
    Owned qd = make(b, DType::kBF16, {t, ql.row()});
    b.upload_convert(qkv.data(), DType::kF32, qd.t);
    std::vector<float> ref(size_t(t) * ql.q_dim());
    cpu.begin_pass(pass, cc, ql);
    cpu.attention(Tensor(qkv.data(), DType::kF32, Device::kCPU, {t, ql.row()}), ql, cc, 0,
                  Tensor(ref.data(), DType::kF32, Device::kCPU, {t, ql.q_dim()}),
                  Schedule::kCanonical);
    Owned od = make(b, DType::kBF16, {t, ql.q_dim()});
    for (const Variant& v : kVariants) {
      b.set_attention_split_policy(v.policy);
      b.set_attention_tall_policy(v.tall);
      b.set_attention_narrow(v.narrow);
      b.begin_pass(pass, gc, ql);
      LLM42_CUDA_CHECK(cudaMemsetAsync(od.t.data, 0xff, od.t.nbytes(), b.stream()));
      b.attention(qd.t, ql, gc, 0, od.t, v.schedule);
      std::vector<uint16_t> bits(ref.size());
      b.copy_to_host(bits.data(), od.t.data, od.t.nbytes());
      double num = 0, den = 0;
      for (size_t i = 0; i < ref.size(); ++i) {
        const double d = bf16_to_f32(bits[i]) - double(ref[i]);
        num += d * d;
        den += double(ref[i]) * ref[i];
      }
      const double rel = std::sqrt(num / den);
      std::printf("check %-14s vs CPU: rel. error %.2e %s\n", v.name, rel,
                  std::isfinite(rel) && rel < 1e-2 ? "ok" : "FAIL");
    }
  }

  cudaEvent_t start, stop;
  LLM42_CUDA_CHECK(cudaEventCreate(&start));
  LLM42_CUDA_CHECK(cudaEventCreate(&stop));
  auto time_us = [&](const PassInput& pass, const KvCache& cache, const Owned& qkv,
                     const Owned& out, const Variant& v, CudaBackend::AttnPlanStats* st) {
    b.set_attention_split_policy(v.policy);
    b.set_attention_tall_policy(v.tall);
    b.set_attention_narrow(v.narrow);
    b.begin_pass(pass, cache, ql);
    const Tensor q = qkv.t.rows(0, pass.n_tokens()), o = out.t.rows(0, pass.n_tokens());
    b.attention(q, ql, cache, 0, o, v.schedule);  // plans, warms up
    *st = b.last_attention_plan();
    std::vector<float> t;
    for (int r = 0; r < (profile ? 1 : quick ? 3 : 10); ++r) {
      LLM42_CUDA_CHECK(cudaEventRecord(start, b.stream()));
      b.attention(q, ql, cache, 0, o, v.schedule);
      LLM42_CUDA_CHECK(cudaEventRecord(stop, b.stream()));
      LLM42_CUDA_CHECK(cudaEventSynchronize(stop));
      float ms = 0;
      LLM42_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
      t.push_back(ms * 1000.f);
    }
    std::sort(t.begin(), t.end());
    return double(t[t.size() / 2]);
  };

  // Decode: B sequences, one query each at context ctx.
  const double bandwidth = lab::copy_bandwidth(b);
  std::printf("\n%-14s %4s %6s %7s %9s %9s %8s %7s   (copy bandwidth %.0f GB/s)\n", "decode", "B",
              "ctx", "items", "us", "floor us", "GB/s", "%floor", bandwidth / 1e9);
  // (B, context) pairs: a long-context sweep, then the large batches of short contexts that
  // ShareGPT-like traffic runs.
  std::vector<std::pair<int, int>> decodes;
  if (profile_decode) {
    decodes = {{256, 512}};
  } else if (!profile && !arxiv_only) {
    for (int bsz : quick ? std::vector<int>{1, 16} : std::vector<int>{1, 16, 64})
      for (int ctx : quick ? std::vector<int>{1024} : std::vector<int>{1024, 4096, 8192})
        decodes.emplace_back(bsz, ctx);
    if (!quick)
      decodes.insert(decodes.end(),
                     {{32, 512}, {64, 256}, {128, 1024}, {256, 128}, {256, 256}, {256, 512}});
  }
  const int max_ctx = profile_decode ? 4096 : quick ? 1024 : 8192;
  int max_b = profile ? 1 : 65;  // the ArXiv-like step's 60 sequences
  for (const auto& [bsz, ctx] : decodes) max_b = std::max(max_b, bsz * ctx / max_ctx + 1);
  const int per_seq = (max_ctx + bs - 1) / bs;
  const int n_blocks = per_seq * max_b;
  Owned k = make(b, DType::kBF16, {n_blocks, bs, 8, 128});
  Owned v = make(b, DType::kBF16, {n_blocks, bs, 8, 128});
  b.fill_random(k.t, 1, RandomInit::kNormal, 1.0f);
  b.fill_random(v.t, 2, RandomInit::kNormal, 1.0f);
  const KvCache cache = cache_of(k, v, n_blocks, bs, 8, 128, DType::kBF16);
  const int max_rows = 4096;
  Owned qkv = make(b, DType::kBF16, {max_rows, ql.row()});
  b.fill_random(qkv.t, 3, RandomInit::kNormal, 1.0f);
  Owned out = make(b, DType::kBF16, {max_rows, ql.q_dim()});
  for (const auto& [bsz, ctx] : decodes) {
    // Sequences of `ctx` keys packed into the cache's blocks back to back.
    const int seq_blocks = (ctx + bs - 1) / bs;
    const PassInput pass = make_pass(bsz, 1, ctx, bs, seq_blocks);
    const double bytes = double(bsz) * ctx * ql.kv_dim() * 2 * 2;
    const double floor_us = bytes / bandwidth * 1e6;
    for (const Variant& var : kVariants) {
      CudaBackend::AttnPlanStats st;
      const double us = time_us(pass, cache, qkv, out, var, &st);
      std::printf("%-14s %4d %6d %7d %9.1f %9.1f %8.0f %6.0f%%\n", var.name, bsz, ctx, st.items, us,
                  floor_us, bytes / (us * 1e-6) / 1e9, 100 * floor_us / us);
    }
  }

  // Prefill: one chunk of T queries after `prefix` cached positions.
  std::printf("\n%-14s %6s %6s %7s %9s %9s %8s %7s\n", "prefill", "T", "prefix", "items", "us",
              "floor us", "TFLOP/s", "%floor");
  const int prefills[][2] = {{512, 0}, {2048, 0}, {512, 4096}, {4096, 0}};
  for (const auto& pf : prefills) {
    const int t = pf[0], prefix = pf[1];
    if (profile_decode || arxiv_only || t > max_rows || prefix + t > max_ctx ||
        (quick && t > 512) || (profile && t != 4096))
      continue;
    const PassInput pass = make_pass(1, t, prefix + t, bs, per_seq);
    double keys = 0;
    for (int i = 0; i < t; ++i) keys += prefix + i + 1;
    const double flops = 4.0 * ql.n_heads * ql.head_dim * keys;
    const double floor_us = flops / kMmaRate * 1e6;
    for (const Variant& var : kVariants) {
      CudaBackend::AttnPlanStats st;
      const double us = time_us(pass, cache, qkv, out, var, &st);
      std::printf("%-14s %6d %6d %7d %9.1f %9.1f %8.1f %6.0f%%\n", var.name, t, prefix, st.items,
                  us, floor_us, flops / (us * 1e-6) / 1e12, 100 * floor_us / us);
    }
  }

  // An ArXiv-like step (lab::arxiv_step).
  if (!quick && !profile) {
    const std::vector<std::pair<int, int>> step = lab::arxiv_step();
    const std::vector<std::pair<int, int>> chunks(step.begin(), step.begin() + lab::kArxivChunks),
        decode_rows(step.begin() + lab::kArxivChunks, step.end());
    double flops = 0, bytes = 0;
    for (auto [prefix, q_len] : chunks)
      for (int i = 0; i < q_len; ++i) flops += 4.0 * ql.n_heads * ql.head_dim * (prefix + i + 1);
    for (auto [prefix, q_len] : decode_rows) bytes += double(prefix + 1) * ql.kv_dim() * 2 * 2;
    const double prefill_floor = flops / kMmaRate * 1e6, decode_floor = bytes / bandwidth * 1e6;
    const Variant arxiv_variants[] = {
        {"fast", Schedule::kFast, cuda::SplitPolicy::kAuto},
        {"fast-mixed", Schedule::kFast, cuda::SplitPolicy::kAuto, cuda::TallPolicy::kMixed},
        {"fast-64rows", Schedule::kFast, cuda::SplitPolicy::kAuto, cuda::TallPolicy::kNever},
        {"fast-split", Schedule::kFast, cuda::SplitPolicy::kAlways},
        {"canonical", Schedule::kCanonical, cuda::SplitPolicy::kAuto}};
    std::printf(
        "\n%-14s %-15s %6s %7s %6s %9s %9s %7s   (floor: chunks' FLOPs at %.0f TFLOP/s, decode "
        "rows' KV bytes at the copy bandwidth)\n",
        "arxiv step", "part", "tokens", "items", "tall", "us", "floor us", "%floor",
        kMmaRate / 1e12);
    struct Part {
      const char* name;
      const std::vector<std::pair<int, int>>* seqs;
      double floor_us;
    };
    const Part parts[] = {{"prefill chunks", &chunks, prefill_floor},
                          {"decode rows", &decode_rows, decode_floor},
                          {"the step", &step, prefill_floor + decode_floor}};
    for (const Part& part : parts) {
      const PassInput pass = lab::pass_of(*part.seqs, bs, per_seq, Schedule::kFast);
      for (const Variant& var : arxiv_variants) {
        CudaBackend::AttnPlanStats st;
        const double us = time_us(pass, cache, qkv, out, var, &st);
        std::printf("%-14s %-15s %6d %7d %6d %9.1f %9.1f %6.0f%%\n", var.name, part.name,
                    pass.n_tokens(), st.items, st.tall, us, part.floor_us,
                    100 * part.floor_us / us);
      }
    }
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return 0;
}
#else
#include <cstdio>
int main() {
  std::printf("cuda_attention_lab: this build has no CUDA backend\n");
  return 0;
}
#endif
