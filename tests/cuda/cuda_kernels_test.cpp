// Every CUDA kernel against its CPU twin (CpuBackend with bf16 activations, or the cpu:: free
// functions), on random non-zero inputs, with the GPU output poisoned (NaN) before each run.
// Kernels whose arithmetic is the CPU's, operation for operation (copies, conversions, RoPE),
// must match bit for bit; reductions must match within the relative-error tolerances of
// cuda_test_util.h.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <string>
#include <utility>

#include "backend/cpu/kernels.h"
#include "core/sampler.h"
#include "cuda_test_util.h"
#include "model/device_state.h"

namespace llm42::test {
namespace {

struct SeqSpec {
  int pos_begin;
  int q_len;
};

// A pass over `specs` with blocks drawn from a shuffled pool of n_blocks.
PassInput make_pass(const std::vector<SeqSpec>& specs, int block_size, int n_blocks, int vocab,
                    uint32_t seed, Schedule s) {
  std::mt19937 rng(seed);
  std::vector<int32_t> pool(static_cast<size_t>(n_blocks));
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), rng);
  size_t next_block = 0;
  PassInput p;
  p.schedule = s;
  for (const SeqSpec& sp : specs) {
    PassSeq q;
    q.q_begin = p.n_tokens();
    q.q_len = sp.q_len;
    q.pos_begin = sp.pos_begin;
    q.block_begin = static_cast<int32_t>(p.block_tables.size());
    q.n_blocks = (sp.pos_begin + sp.q_len + block_size - 1) / block_size;
    for (int b = 0; b < q.n_blocks; ++b) p.block_tables.push_back(pool.at(next_block++));
    for (int i = 0; i < sp.q_len; ++i) {
      const int pos = sp.pos_begin + i;
      p.tokens.push_back(static_cast<int32_t>(rng() % vocab));
      p.positions.push_back(pos);
      p.slots.push_back(p.block_tables[q.block_begin + pos / block_size] * block_size +
                        pos % block_size);
    }
    p.seqs.push_back(q);
  }
  for (int r = 0; r < p.n_tokens(); r += 3) p.logit_rows.push_back(r);
  return p;
}

// One layer of KV cache on both backends with the same (bf16-rounded) random contents.
struct TwinCache {
  std::vector<float> k_host, v_host;
  DevTensor k_dev, v_dev;
  KvCache cpu, gpu;
};

TwinCache make_cache(int n_blocks, int block_size, int n_kv_heads, int head_dim, uint32_t seed) {
  TwinCache c;
  const size_t n = static_cast<size_t>(n_blocks) * block_size * n_kv_heads * head_dim;
  c.k_host = rounded(random_vec(n, seed));
  c.v_host = rounded(random_vec(n, seed + 1));
  c.k_dev = upload(c.k_host, DType::kBF16, {n_blocks, block_size, n_kv_heads, head_dim});
  c.v_dev = upload(c.v_host, DType::kBF16, {n_blocks, block_size, n_kv_heads, head_dim});
  for (KvCache* kv : {&c.cpu, &c.gpu}) {
    kv->n_layers = 1;
    kv->n_blocks = n_blocks;
    kv->block_size = block_size;
    kv->n_kv_heads = n_kv_heads;
    kv->head_dim = head_dim;
  }
  c.cpu.dtype = DType::kF32;
  c.cpu.k = {host_tensor(c.k_host, {n_blocks, block_size, n_kv_heads, head_dim})};
  c.cpu.v = {host_tensor(c.v_host, {n_blocks, block_size, n_kv_heads, head_dim})};
  c.gpu.dtype = DType::kBF16;
  c.gpu.k = {c.k_dev.t};
  c.gpu.v = {c.v_dev.t};
  return c;
}

class CudaKernels : public ::testing::Test {
 protected:
  void SetUp() override { LLM42_REQUIRE_GPU(); }
};

TEST_F(CudaKernels, ConvertAndFillRandom) {
  const std::vector<float> src = random_vec(10007, 1, 3.0f);
  DevTensor bf = upload(src, DType::kBF16, {10007});
  std::vector<uint16_t> want(src.size());
  for (size_t i = 0; i < src.size(); ++i) want[i] = f32_to_bf16(src[i]);
  EXPECT_EQ(download_bits(bf.t), want) << "f32 -> bf16 must round to nearest even like the CPU";

  std::vector<uint16_t> f16(src.size());
  for (size_t i = 0; i < src.size(); ++i) f16[i] = f32_to_f16(src[i]);
  DevTensor from_f16 = dev_tensor(DType::kBF16, {10007});
  gpu().upload_convert(f16.data(), DType::kF16, from_f16.t);
  for (size_t i = 0; i < src.size(); ++i) want[i] = f32_to_bf16(f16_to_f32(f16[i]));
  EXPECT_EQ(download_bits(from_f16.t), want) << "f16 -> bf16";

  // Dummy weights: Box-Muller in double on both sides; libm and CUDA may differ in the last
  // ulp of log/cos, far below fp32 resolution.
  for (RandomInit init : {RandomInit::kNormal, RandomInit::kOnesNoise, RandomInit::kBias}) {
    DevTensor d = dev_tensor(DType::kF32, {4099});
    poison(d.t);
    gpu().fill_random(d.t, 1234, init, 0.5f);
    std::vector<float> ref(4099);
    cpu_bf16().fill_random(host_tensor(ref, {4099}), 1234, init, 0.5f);
    EXPECT_LT(rel_error(download(d.t), ref), 1e-6);
  }
}

TEST_F(CudaKernels, EmbeddingAndGather) {
  const int vocab = 300, dim = 96;
  std::vector<float> table = rounded(random_vec(static_cast<size_t>(vocab) * dim, 2));
  DevTensor table_d = upload(table, DType::kBF16, {vocab, dim});
  TwinCache cache = make_cache(64, 16, 2, 16, 3);
  const PassInput pass =
      make_pass({{0, 17}, {40, 1}, {5, 9}}, 16, 64, vocab, 4, Schedule::kCanonical);
  const int t = pass.n_tokens(), r = static_cast<int>(pass.logit_rows.size());
  gpu().begin_pass(pass, cache.gpu, QkvLayout{});
  cpu_bf16().begin_pass(pass, cache.cpu, QkvLayout{});

  DevTensor out = dev_tensor(DType::kBF16, {t, dim});
  poison(out.t);
  gpu().embedding(table_d.t, 0, out.t);
  std::vector<float> ref(static_cast<size_t>(t) * dim);
  cpu_bf16().embedding(host_tensor(table, {vocab, dim}), 0, host_tensor(ref, {t, dim}));
  EXPECT_EQ(download(out.t), ref);

  DevTensor gathered = dev_tensor(DType::kBF16, {r, dim});
  poison(gathered.t);
  gpu().gather_logit_rows(out.t, gathered.t);
  std::vector<float> ref_g(static_cast<size_t>(r) * dim);
  cpu_bf16().gather_logit_rows(host_tensor(ref, {t, dim}), host_tensor(ref_g, {r, dim}));
  EXPECT_EQ(download(gathered.t), ref_g);
}

TEST_F(CudaKernels, RmsNormAndFusedAdd) {
  for (int dim : {64, 1000, 4096, 5120}) {
    const int rows = 7;
    const size_t n = static_cast<size_t>(rows) * dim;
    std::vector<float> x = rounded(random_vec(n, 10 + dim, 2.0f));
    std::vector<float> d = rounded(random_vec(n, 20 + dim));
    std::vector<float> w = random_vec(static_cast<size_t>(dim), 30 + dim, 0.3f);
    for (float& v : w) v += 1.0f;
    DevTensor x_d = upload(x, DType::kBF16, {rows, dim});
    DevTensor d_d = upload(d, DType::kBF16, {rows, dim});
    DevTensor w_d = upload(w, DType::kF32, {dim});
    DevTensor out = dev_tensor(DType::kBF16, {rows, dim});
    poison(out.t);
    gpu().rmsnorm(x_d.t, w_d.t, 1e-5f, out.t, Schedule::kCanonical);
    std::vector<float> ref(n);
    cpu_bf16().rmsnorm(host_tensor(x, {rows, dim}), host_tensor(w, {dim}), 1e-5f,
                       host_tensor(ref, {rows, dim}), Schedule::kCanonical);
    EXPECT_LT(rel_error(download(out.t), ref), kBf16Out) << "rmsnorm dim " << dim;

    // Fused residual add with the output aliasing delta, as the model calls it.
    gpu().add_rmsnorm(x_d.t, d_d.t, w_d.t, 1e-5f, d_d.t, Schedule::kCanonical);
    cpu_bf16().add_rmsnorm(host_tensor(x, {rows, dim}), host_tensor(d, {rows, dim}),
                           host_tensor(w, {dim}), 1e-5f, host_tensor(d, {rows, dim}),
                           Schedule::kCanonical);
    EXPECT_EQ(download(x_d.t), x) << "residual x + delta, rounded once to bf16, dim " << dim;
    EXPECT_LT(rel_error(download(d_d.t), d), kBf16Out) << "add_rmsnorm dim " << dim;
  }
}

TEST_F(CudaKernels, QkNormRopeKvWriteSwiglu) {
  struct Geo {
    int heads, kv_heads, head_dim;
  };
  for (const Geo g : {Geo{4, 2, 32}, Geo{32, 8, 128}, Geo{8, 4, 8}}) {
    for (RopeLayout layout : {RopeLayout::kHalf, RopeLayout::kInterleaved}) {
      const QkvLayout ql{g.heads, g.kv_heads, g.head_dim};
      TwinCache cache = make_cache(128, 16, g.kv_heads, g.head_dim, 40);
      const PassInput pass =
          make_pass({{0, 33}, {200, 1}, {17, 16}}, 16, 128, 100, 41, Schedule::kCanonical);
      const int t = pass.n_tokens();
      gpu().begin_pass(pass, cache.gpu, ql);
      cpu_bf16().begin_pass(pass, cache.cpu, ql);
      std::vector<float> qkv = rounded(random_vec(static_cast<size_t>(t) * ql.row(), 42));
      DevTensor qkv_d = upload(qkv, DType::kBF16, {t, ql.row()});
      Tensor qkv_h = host_tensor(qkv, {t, ql.row()});

      std::vector<float> qw = random_vec(static_cast<size_t>(g.head_dim), 43, 0.2f);
      std::vector<float> kw = random_vec(static_cast<size_t>(g.head_dim), 44, 0.2f);
      for (float& v : qw) v += 1.0f;
      for (float& v : kw) v += 1.0f;
      DevTensor qw_d = upload(qw, DType::kF32, {g.head_dim});
      DevTensor kw_d = upload(kw, DType::kF32, {g.head_dim});
      gpu().qk_norm(qkv_d.t, ql, qw_d.t, kw_d.t, 1e-6f, Schedule::kCanonical);
      cpu_bf16().qk_norm(qkv_h, ql, host_tensor(qw, {g.head_dim}), host_tensor(kw, {g.head_dim}),
                         1e-6f, Schedule::kCanonical);
      std::vector<float> got = download(qkv_d.t);
      EXPECT_LT(rel_error(got, qkv), kBf16Out) << "qk_norm head_dim " << g.head_dim;
      // Continue from identical inputs so RoPE can be compared bit for bit.
      qkv = got;
      qkv_d = upload(qkv, DType::kBF16, {t, ql.row()});
      qkv_h = host_tensor(qkv, {t, ql.row()});

      ModelConfig mc;
      mc.head_dim = g.head_dim;
      mc.rope_theta = 500000.0;
      mc.rope_layout = layout;
      std::vector<Buffer> rope_storage_gpu, rope_storage_cpu;
      const RopeTable table_gpu = make_rope_table(gpu(), mc, 512, rope_storage_gpu);
      const RopeTable table_cpu = make_rope_table(cpu_bf16(), mc, 512, rope_storage_cpu);
      poison(cache.k_dev.t);
      poison(cache.v_dev.t);
      gpu().rope_kv_write(qkv_d.t, ql, table_gpu, cache.gpu, 0);
      cpu_bf16().rope_kv_write(qkv_h, ql, table_cpu, cache.cpu, 0);
      EXPECT_EQ(download(qkv_d.t), qkv) << "RoPE performs the CPU's fp32 operations";
      const std::vector<float> k_got = download(cache.k_dev.t), v_got = download(cache.v_dev.t);
      const size_t kv = static_cast<size_t>(ql.kv_dim());
      for (int32_t slot : pass.slots) {
        for (size_t i = 0; i < kv; ++i) {
          ASSERT_EQ(k_got[slot * kv + i], cache.k_host[slot * kv + i]) << "slot " << slot;
          ASSERT_EQ(v_got[slot * kv + i], cache.v_host[slot * kv + i]) << "slot " << slot;
        }
      }
    }
  }
  // SwiGLU: 9 rows take two elements a thread, 40 rows eight (f a multiple of 8), f 1539 the
  // element-wise kernel.
  for (const auto& [rows, f] :
       {std::pair{9, 1536}, std::pair{40, 1536}, std::pair{40, 1540}, std::pair{9, 1539}}) {
    std::vector<float> gu = rounded(random_vec(static_cast<size_t>(rows) * 2 * f, 50, 2.0f));
    DevTensor gu_d = upload(gu, DType::kBF16, {rows, 2 * f});
    DevTensor out = dev_tensor(DType::kBF16, {rows, f});
    poison(out.t);
    gpu().swiglu(gu_d.t, out.t);
    std::vector<float> ref(static_cast<size_t>(rows) * f);
    cpu_bf16().swiglu(host_tensor(gu, {rows, 2 * f}), host_tensor(ref, {rows, f}));
    EXPECT_LT(rel_error(download(out.t), ref), kBf16Out) << "swiglu f " << f;
  }
}

TEST_F(CudaKernels, MatmulBothLanes) {
  struct Shape {
    int m, n, k;
  };
  for (const Shape sh : {Shape{1, 64, 64}, Shape{7, 300, 96}, Shape{3, 64, 172},
                         Shape{33, 1024, 4096}, Shape{128, 4096, 1024}, Shape{5, 4096, 14336}}) {
    const std::vector<float> x = rounded(random_vec(static_cast<size_t>(sh.m) * sh.k, sh.k));
    const std::vector<float> w =
        rounded(random_vec(static_cast<size_t>(sh.n) * sh.k, sh.n, 1.0f / std::sqrt(float(sh.k))));
    const std::vector<float> bias = random_vec(static_cast<size_t>(sh.n), 7, 0.1f);
    DevTensor x_d = upload(x, DType::kBF16, {sh.m, sh.k});
    DevTensor w_d = upload(w, DType::kBF16, {sh.n, sh.k});
    DevTensor b_d = upload(bias, DType::kF32, {sh.n});
    for (bool with_bias : {false, true}) {
      std::vector<float> ref(static_cast<size_t>(sh.m) * sh.n);
      cpu::gemm(x.data(), w.data(), DType::kF32, with_bias ? bias.data() : nullptr, ref.data(),
                sh.m, sh.n, sh.k, 1, 4);
      for (DType out_t : {DType::kBF16, DType::kF32}) {
        for (Schedule s : {Schedule::kFast, Schedule::kCanonical}) {
          DevTensor out = dev_tensor(out_t, {sh.m, sh.n});
          poison(out.t);
          gpu().matmul(x_d.t, w_d.t, with_bias ? &b_d.t : nullptr, out.t, s);
          const double err = rel_error(download(out.t), ref);
          EXPECT_LT(err, out_t == DType::kF32 ? kF32Out : kBf16Out)
              << "M " << sh.m << " N " << sh.n << " K " << sh.k << " out " << dtype_name(out_t)
              << " bias " << with_bias << " " << schedule_name(s);
        }
      }
    }
  }
}

// Random bf16-representable GEMM operands of one shape, on the host and on the GPU.
struct GemmShape {
  int m, n, k;
};
struct GemmOperands {
  std::vector<float> x, w;  // (m, k), (n, k)
  DevTensor x_d, w_d;
};
GemmOperands gemm_operands(const GemmShape& sh) {
  GemmOperands o;
  o.x = rounded(random_vec(static_cast<size_t>(sh.m) * sh.k, sh.m + sh.k));
  o.w = rounded(random_vec(static_cast<size_t>(sh.n) * sh.k, sh.n, 1.0f / std::sqrt(float(sh.k))));
  o.x_d = upload(o.x, DType::kBF16, {sh.m, sh.k});
  o.w_d = upload(o.w, DType::kBF16, {sh.n, sh.k});
  return o;
}

// The fast lane's skinny GEMM (gemv.cu), every variant, against the CPU GEMM and against each
// other bit for bit: m across both token tiles, n not a multiple of its 16- or 32-row tiles, k
// with partial 32-wide chunks. The K-in-8-slices variants (another order) against the CPU GEMM
// and themselves, where the shape lets them run (k % 512 == 0, n % 8 == 0), and refused where not.
TEST_F(CudaKernels, SkinnyGemmEveryVariant) {
  for (const GemmShape sh :
       {GemmShape{1, 8, 8}, GemmShape{2, 40, 24}, GemmShape{8, 72, 104}, GemmShape{9, 4104, 4096},
        GemmShape{16, 264, 14336}, GemmShape{3, 4096, 14336}, GemmShape{1, 6144, 4096}}) {
    const GemmOperands ops = gemm_operands(sh);
    const DevTensor& x_d = ops.x_d;
    const DevTensor& w_d = ops.w_d;
    std::vector<float> ref(static_cast<size_t>(sh.m) * sh.n);
    cpu::gemm(ops.x.data(), ops.w.data(), DType::kF32, nullptr, ref.data(), sh.m, sh.n, sh.k, 1, 4);
    for (DType out_t : {DType::kBF16, DType::kF32}) {
      std::vector<uint16_t> variant0;
      for (int v = 0; v < cuda::kGemvVariants; ++v) {
        DevTensor out = dev_tensor(out_t, {sh.m, sh.n});
        poison(out.t);
        const bool sliced = v >= cuda::kGemvSameOrderVariants;
        const cudaError_t e = cuda::launch_gemv(static_cast<const uint16_t*>(x_d.t.data),
                                                static_cast<const uint16_t*>(w_d.t.data),
                                                out.t.data, out_t, sh.m, sh.n, sh.k, v,
                                                gpu().stream());
        if (sliced && (sh.k % 512 != 0 || sh.n % 8 != 0)) {
          EXPECT_EQ(e, cudaErrorInvalidValue) << "M " << sh.m << " N " << sh.n << " K " << sh.k;
          cudaGetLastError();
          continue;
        }
        ASSERT_EQ(e, cudaSuccess) << "M " << sh.m << " N " << sh.n << " K " << sh.k << " "
                                  << cuda::gemv_variant_name(v);
        const std::vector<uint16_t> first = download_bits(out.t);
        EXPECT_LT(rel_error(download(out.t), ref), out_t == DType::kF32 ? kF32Out : kBf16Out)
            << "M " << sh.m << " N " << sh.n << " K " << sh.k << " out " << dtype_name(out_t) << " "
            << cuda::gemv_variant_name(v);
        // The same shape and variant again: the same bits.
        ASSERT_EQ(cuda::launch_gemv(static_cast<const uint16_t*>(x_d.t.data),
                                    static_cast<const uint16_t*>(w_d.t.data), out.t.data, out_t,
                                    sh.m, sh.n, sh.k, v, gpu().stream()),
                  cudaSuccess);
        EXPECT_EQ(download_bits(out.t), first) << cuda::gemv_variant_name(v);
        // Every variant of the first kind adds the same products in the same order.
        if (sliced) continue;
        if (v == 0) variant0 = first;
        EXPECT_EQ(first, variant0) << "M " << sh.m << " N " << sh.n << " K " << sh.k << " "
                                   << cuda::gemv_variant_name(v) << " against variant 0";
      }
    }
  }
  // Arguments it cannot take are refused, not run.
  DevTensor x_d = dev_tensor(DType::kBF16, {17, 64});
  DevTensor w_d = dev_tensor(DType::kBF16, {64, 64});
  DevTensor out = dev_tensor(DType::kBF16, {17, 64});
  const auto* xp = static_cast<const uint16_t*>(x_d.t.data);
  const auto* wp = static_cast<const uint16_t*>(w_d.t.data);
  EXPECT_EQ(cuda::launch_gemv(xp, wp, out.t.data, DType::kBF16, 17, 64, 64, 0, gpu().stream()),
            cudaErrorInvalidValue);
  EXPECT_EQ(cuda::launch_gemv(xp, wp, out.t.data, DType::kBF16, 4, 64, 60, 0, gpu().stream()),
            cudaErrorInvalidValue);
  EXPECT_EQ(cuda::launch_gemv(xp + 1, wp, out.t.data, DType::kBF16, 4, 64, 64, 0, gpu().stream()),
            cudaErrorInvalidValue);
}

// The sequential-K skinny GEMM (gemv_canonical.cu) must give the canonical cuBLASLt algorithm's
// every output bit: the canonical lane runs it at M <= 16 only where its autotune saw that, and
// this test keeps checking the observation it rests on (shapes with one and several stages of
// 256 k, a partial last stage, a last block of fewer than 32 rows, token counts up to 16 on
// both sides of 8 (the two x tile heights), grids of one, two and more blocks per SM).
TEST_F(CudaKernels, CanonicalSkinnyGemmGivesCublasLtBits) {
  // A backend whose canonical autotune may admit the kernel (the default, stated here), with a
  // GEMM table of its own (the shared one's entries would be checked too, but both backends
  // would write the file).
  BackendOptions opts;
  opts.device = "cuda";
  opts.cuda.canonical_skinny = true;
  const char* old_cache = std::getenv("LLM42_GEMM_CACHE");
  const std::string saved = old_cache != nullptr ? old_cache : "";
  const std::string own = testing::TempDir() + "llm42-skinny-gemm-cache.json";
  std::remove(own.c_str());
  setenv("LLM42_GEMM_CACHE", own.c_str(), 1);
  CudaBackend skinny_lane(opts, 0);
  if (old_cache != nullptr) {
    setenv("LLM42_GEMM_CACHE", saved.c_str(), 1);
  } else {
    unsetenv("LLM42_GEMM_CACHE");
  }
  for (const GemmShape sh :
       {GemmShape{1, 8, 16}, GemmShape{2, 40, 48}, GemmShape{5, 4104, 4096},
        GemmShape{16, 264, 14336}, GemmShape{1, 4096, 14336}, GemmShape{9, 6144, 4096},
        GemmShape{3, 296, 896}, GemmShape{4, 6144, 4096}, GemmShape{7, 28672, 1280},
        GemmShape{12, 28680, 272}}) {
    const GemmOperands ops = gemm_operands(sh);
    const DevTensor& x_d = ops.x_d;
    const DevTensor& w_d = ops.w_d;
    const auto* xp = static_cast<const uint16_t*>(x_d.t.data);
    const auto* wp = static_cast<const uint16_t*>(w_d.t.data);
    for (DType out_t : {DType::kBF16, DType::kF32}) {
      DevTensor ref = dev_tensor(out_t, {sh.m, sh.n});
      DevTensor out = dev_tensor(out_t, {sh.m, sh.n});
      gpu().gemm().run_canonical_cublaslt(xp, wp, ref.t.data, sh.m, sh.n, sh.k, out_t);
      poison(out.t);
      ASSERT_EQ(
          cuda::launch_gemv_canonical(xp, wp, out.t.data, out_t, sh.m, sh.n, sh.k, gpu().stream()),
          cudaSuccess);
      EXPECT_EQ(download_bits(out.t), download_bits(ref.t))
          << "M " << sh.m << " N " << sh.n << " K " << sh.k << " out " << dtype_name(out_t);
      // And the canonical lane of either backend (whichever kernel its autotune chose).
      for (CudaBackend* be : {&gpu(), &skinny_lane}) {
        poison(out.t);
        gpu().synchronize();  // the poison is on gpu()'s stream, the GEMM maybe on another
        be->matmul(x_d.t, w_d.t, nullptr, out.t, Schedule::kCanonical);
        be->synchronize();
        EXPECT_EQ(download_bits(out.t), download_bits(ref.t))
            << "canonical lane (skinny " << (be == &skinny_lane) << "), M " << sh.m << " N " << sh.n
            << " K " << sh.k << ": "
            << be->gemm().describe(x_d.t.data, w_d.t.data, out.t.data, sh.m, sh.n, sh.k, out_t,
                                   Schedule::kCanonical);
      }
      // The autotune checked the kernel for the bucket and found the same bits (whether it was
      // also faster, and so serves the bucket, is for the benchmarks to say).
      using Status = cuda::GemmRunner::SkinnyStatus;
      const Status st =
          skinny_lane.gemm().skinny_status(xp, wp, out.t.data, sh.m, sh.n, sh.k, out_t);
      EXPECT_TRUE(st == Status::kAdmitted || st == Status::kSlower)
          << "skinny check of M " << sh.m << " N " << sh.n << " K " << sh.k << ": "
          << (st == Status::kDiffers ? "other bits" : "never checked");
    }
  }
  DevTensor x_d = dev_tensor(DType::kBF16, {17, 64});
  DevTensor w_d = dev_tensor(DType::kBF16, {64, 64});
  DevTensor out = dev_tensor(DType::kBF16, {17, 64});
  const auto* xp = static_cast<const uint16_t*>(x_d.t.data);
  const auto* wp = static_cast<const uint16_t*>(w_d.t.data);
  EXPECT_EQ(
      cuda::launch_gemv_canonical(xp, wp, out.t.data, DType::kBF16, 17, 64, 64, gpu().stream()),
      cudaErrorInvalidValue);
  EXPECT_EQ(
      cuda::launch_gemv_canonical(xp, wp, out.t.data, DType::kBF16, 4, 64, 56, gpu().stream()),
      cudaErrorInvalidValue);
}

TEST_F(CudaKernels, AttentionAgainstCpu) {
  struct Geo {
    int heads, kv_heads, head_dim;
  };
  const int block_size = 16, n_blocks = 330;
  // A prefill chunk from 0, a later chunk, a decode row at position 0, decode rows deep in the
  // context, a verification window, and a prefill that crosses canonical chunks. The decode rows
  // run in the narrow kernel (where the head dim has one), whole with split policy never, in
  // pieces with a combine when split.
  const std::vector<SeqSpec> specs = {{0, 70},   {100, 37},  {0, 1},   {700, 1},
                                      {520, 16}, {300, 290}, {3000, 1}};
  for (const Geo g : {Geo{4, 2, 16}, Geo{8, 4, 8}, Geo{4, 2, 32}, Geo{6, 3, 40}, Geo{8, 8, 64},
                      Geo{32, 8, 128}}) {
    const QkvLayout ql{g.heads, g.kv_heads, g.head_dim};
    TwinCache cache = make_cache(n_blocks, block_size, g.kv_heads, g.head_dim, 60 + g.head_dim);
    const PassInput pass = make_pass(specs, block_size, n_blocks, 100, 61, Schedule::kCanonical);
    const int t = pass.n_tokens();
    std::vector<float> qkv = rounded(random_vec(static_cast<size_t>(t) * ql.row(), 62));
    DevTensor qkv_d = upload(qkv, DType::kBF16, {t, ql.row()});
    cpu_bf16().begin_pass(pass, cache.cpu, ql);
    std::vector<float> ref(static_cast<size_t>(t) * ql.q_dim());
    cpu_bf16().attention(host_tensor(qkv, {t, ql.row()}), ql, cache.cpu, 0,
                         host_tensor(ref, {t, ql.q_dim()}), Schedule::kCanonical);
    for (Schedule s : {Schedule::kCanonical, Schedule::kFast}) {
      for (cuda::SplitPolicy policy :
           {cuda::SplitPolicy::kAuto, cuda::SplitPolicy::kNever, cuda::SplitPolicy::kAlways}) {
        // The fast lane also in tall items (the 70- and 290-token chunks: whole tall tiles, a
        // part tile, and with split policy always tall pieces merged by a combine).
        for (cuda::TallPolicy tall : {cuda::TallPolicy::kAuto, cuda::TallPolicy::kAlways}) {
          if (s == Schedule::kCanonical && tall != cuda::TallPolicy::kAuto) continue;
          // Narrow items (the decode rows, whole or in pieces) in their kernel with two and
          // with four K/V stages, then every item wide: the same bits.
          std::vector<uint16_t> bits[3];
          const int stages[3] = {0, cuda::kAttnNarrowStages, cuda::kAttnNarrowDeepStages};
          for (int v = 0; v < 3; ++v) {
            gpu().set_attention_split_policy(policy);
            gpu().set_attention_tall_policy(tall);
            gpu().set_attention_narrow(v > 0);
            gpu().set_attention_narrow_stages(stages[v]);
            gpu().begin_pass(pass, cache.gpu, ql);
            DevTensor out = dev_tensor(DType::kBF16, {t, ql.q_dim()});
            poison(out.t);
            gpu().attention(qkv_d.t, ql, cache.gpu, 0, out.t, s);
            EXPECT_LT(rel_error(download(out.t), ref), kAttention)
                << "heads " << g.heads << "/" << g.kv_heads << " head_dim " << g.head_dim << " "
                << schedule_name(s) << " split policy " << static_cast<int>(policy)
                << " tall policy " << static_cast<int>(tall) << " narrow stages " << stages[v];
            bits[v].resize(out.t.nbytes() / 2);
            gpu().copy_to_host(bits[v].data(), out.t.data, out.t.nbytes());
          }
          for (int v = 1; v < 3; ++v)
            EXPECT_TRUE(bits[0] == bits[v])
                << "narrow items (" << stages[v] << " stages) and wide ones differ: heads "
                << g.heads << "/" << g.kv_heads << " head_dim " << g.head_dim << " "
                << schedule_name(s) << " split policy " << static_cast<int>(policy)
                << " tall policy " << static_cast<int>(tall);
        }
      }
    }
  }
  gpu().set_attention_split_policy(cuda::SplitPolicy::kAuto);
  gpu().set_attention_tall_policy(cuda::TallPolicy::kAuto);
  gpu().set_attention_narrow(true);
  gpu().set_attention_narrow_stages(0);
}

TEST_F(CudaKernels, SamplingMatchesCpuSampler) {
  for (int vocab : {1000, 128256}) {
    std::vector<SampleRow> rows;
    auto add = [&](float temp, int top_k, float top_p, float min_p, int top_logprobs) {
      SampleRow r;
      r.logit_row = static_cast<int32_t>(rows.size());
      r.temperature = temp;
      r.top_k = top_k;
      r.top_p = top_p;
      r.min_p = min_p;
      r.seed = 1000 + rows.size();
      r.position = 17 + static_cast<int64_t>(rows.size()) * 31;
      r.top_logprobs = top_logprobs;
      rows.push_back(r);
    };
    for (int rep = 0; rep < 5; ++rep) {
      add(0.0f, 0, 1.0f, 0.0f, 0);
      add(0.0f, 0, 1.0f, 0.0f, 5);
      add(0.8f, 0, 1.0f, 0.0f, 0);
      add(1.0f, 40, 1.0f, 0.0f, 0);
      add(0.7f, 0, 0.9f, 0.0f, 2);
      add(1.2f, 0, 1.0f, 0.05f, 0);
      add(0.9f, 100, 0.8f, 0.02f, 20);
      add(1.0f, 0, 1.0f, 0.0f, 20);
    }
    const int r = static_cast<int>(rows.size());  // 40 rows: more than one sort chunk
    std::vector<float> logits = random_vec(static_cast<size_t>(r) * vocab, 70 + vocab, 3.0f);
    // A tie for the greedy maximum in row 0: the lower id must win.
    auto mx = std::max_element(logits.begin(), logits.begin() + vocab);
    logits[37] = *mx;
    logits[vocab - 3] = *mx;
    DevTensor logits_d = upload(logits, DType::kF32, {r, vocab});
    std::vector<SampleResult> got;
    gpu().sample(logits_d.t, rows, got);
    ASSERT_EQ(got.size(), rows.size());
    for (int i = 0; i < r; ++i) {
      const SampleRow& row = rows[static_cast<size_t>(i)];
      SamplingParams p;
      p.temperature = row.temperature;
      p.top_k = row.top_k;
      p.top_p = row.top_p;
      p.min_p = row.min_p;
      p.top_logprobs = row.top_logprobs;
      const SampledToken want = sample_token(logits.data() + static_cast<size_t>(i) * vocab, vocab,
                                             p, row.seed, row.position, TokenHistory{});
      const SampleResult& o = got[static_cast<size_t>(i)];
      EXPECT_EQ(o.token, want.id) << "vocab " << vocab << " row " << i << " temp "
                                  << row.temperature << " top_k " << row.top_k << " top_p "
                                  << row.top_p << " min_p " << row.min_p;
      EXPECT_NEAR(o.logprob, want.logprob, 1e-5) << "row " << i;
      ASSERT_EQ(o.n_top, static_cast<int>(want.top.size())) << "row " << i;
      for (int j = 0; j < o.n_top; ++j) {
        EXPECT_EQ(o.top_ids[j], want.top[static_cast<size_t>(j)].first) << "row " << i;
        EXPECT_NEAR(o.top_logprobs[j], want.top[static_cast<size_t>(j)].second, 1e-5);
      }
    }
  }
}

TEST_F(CudaKernels, ScoreRowsMatchTheCpuAndTheDrawnTokensLogprob) {
  // A score row reports a given token (a prompt token): its logprob, rank and alternatives as
  // the CPU's score_token gives them, whatever sampling fields the row has; and its logprob is
  // the same bits as a greedy row's that drew that token from the same logits.
  const int vocab = 50000, r = 6;
  std::vector<float> logits = random_vec(static_cast<size_t>(r) * vocab, 91, 3.0f);
  logits[3 * vocab + 11] = logits[3 * vocab + 12];  // a tie for the rank
  std::vector<SampleRow> rows;
  for (int i = 0; i < r; ++i) {
    SampleRow s;
    s.logit_row = i;
    s.score_token = (i * 7919 + 11) % vocab;
    s.top_logprobs = i % 3 == 0 ? 0 : 5;
    s.temperature = i % 2 == 0 ? 0.0f : 0.8f;  // ignored
    s.top_k = i == 1 ? 40 : 0;
    s.top_p = i == 3 ? 0.9f : 1.0f;
    rows.push_back(s);
  }
  SampleRow greedy;  // draws row 0's argmax; a score row for the same token follows
  greedy.logit_row = 0;
  rows.push_back(greedy);
  DevTensor logits_d = upload(logits, DType::kF32, {r, vocab});
  std::vector<SampleResult> got;
  gpu().sample(logits_d.t, rows, got);
  for (int i = 0; i < r; ++i) {
    const SampleRow& row = rows[static_cast<size_t>(i)];
    const SampledToken want = score_token(logits.data() + static_cast<size_t>(i) * vocab, vocab,
                                          row.score_token, row.top_logprobs);
    const SampleResult& o = got[static_cast<size_t>(i)];
    EXPECT_EQ(o.token, row.score_token) << "row " << i;
    EXPECT_EQ(o.rank, want.rank) << "row " << i;
    EXPECT_NEAR(o.logprob, want.logprob, 1e-5) << "row " << i;
    ASSERT_EQ(o.n_top, static_cast<int>(want.top.size())) << "row " << i;
    for (int j = 0; j < o.n_top; ++j)
      EXPECT_EQ(o.top_ids[j], want.top[static_cast<size_t>(j)].first) << "row " << i;
  }
  const SampleResult& drawn = got.back();
  std::vector<SampleRow> again = {rows[0]};
  again[0].score_token = drawn.token;
  std::vector<SampleResult> scored;
  gpu().sample(logits_d.t, again, scored);
  EXPECT_EQ(scored[0].token, drawn.token);
  EXPECT_EQ(scored[0].rank, 1);
  EXPECT_EQ(std::memcmp(&scored[0].logprob, &drawn.logprob, sizeof(float)), 0)
      << scored[0].logprob << " vs " << drawn.logprob;
}

}  // namespace
}  // namespace llm42::test
