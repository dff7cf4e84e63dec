// Launch functions of the CUDA kernels, shared by the .cu files (device code, built by nvcc) and
// the host code (cuda_backend.cpp, built by the C++ compiler). Plain types only: nvcc cannot
// compile fmt, so errors are returned as cudaError_t and formatted with file:line on the host.
//
// Activations are bf16 (passed as uint16_t bit patterns), accumulation fp32, logits fp32.
// Every launch returns its launch error (cudaSuccess when there is nothing to launch). The
// kernels of a forward pass are launched with programmatic dependent launch (launch.cuh) while
// it is switched on.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "core/tensor.h"

namespace llm42::cuda {

// Programmatic dependent launch of the forward-pass kernels, process-wide (default on). Off
// gives bit-identical results; it exists to measure what PDL buys and as a way out.
void set_programmatic_launch(bool on);

// ---- conversions and dummy weights ------------------------------------------------------------

// dst[i] = convert(src[i]) for i < n, round to nearest even. src: f32, f16 or bf16; dst: f32,
// f16 or bf16.
cudaError_t launch_convert(const void* src, DType from, void* dst, DType to, int64_t n,
                           cudaStream_t stream);

// dst[i] = z(seed, e) * scale (+ 1 for ones_noise), z ~ N(0, 1) by Box-Muller from
// counter_uniform(seed, e, 0) and counter_uniform(seed, e, 1), where e = window_index(i, offset,
// cols, full_cols) (util/hash.h) is i's element of the full tensor. dst: f32 or bf16.
cudaError_t launch_fill_random(void* dst, DType dtype, int64_t n, uint64_t seed, bool ones_noise,
                               float scale, int64_t offset, int64_t cols, int64_t full_cols,
                               cudaStream_t stream);

// out (n) = the parts (p, n) summed along the binary tree ((p0+p1)+(p2+p3))+... in fp32 and
// rounded once (Backend::sum_parts). parts f32 or bf16; out f32 or bf16; p 1, 2, 4 or 8.
cudaError_t launch_sum_parts(const void* parts, DType parts_dtype, int p, int64_t n, void* out,
                             DType out_dtype, cudaStream_t stream);

// ---- row kernels (one block or warp per row; no reduction crosses rows) ------------------------

// out[t, :] = table[tokens[t] - vocab_begin, :] for tokens in [vocab_begin, vocab_begin + rows),
// -0.0 otherwise (Backend::embedding).  table (rows, dim) f32 or bf16, out (T, dim) bf16.
cudaError_t launch_embedding(const void* table, DType table_dtype, int64_t vocab_begin,
                             int64_t rows, const int32_t* tokens, int n_tokens, int dim,
                             uint16_t* out, cudaStream_t stream);

// out = x / sqrt(mean(x^2) + eps) * w, reducing over dim (fixed block of 256 threads, fixed
// tree), one block per row holding its row in registers.  x, out (rows, dim) bf16; w (dim) f32;
// dim <= kMaxNormDim (cudaErrorInvalidValue beyond).
inline constexpr int kMaxNormDim = 16384;
cudaError_t launch_rmsnorm(const uint16_t* x, const float* w, float eps, uint16_t* out, int rows,
                           int dim, cudaStream_t stream);

// residual = bf16(residual + delta); out = rmsnorm(residual) * w. out may alias delta.
cudaError_t launch_add_rmsnorm(uint16_t* residual, const uint16_t* delta, const float* w, float eps,
                               uint16_t* out, int rows, int dim, cudaStream_t stream);

// Qwen3: RMSNorm over each head's head_dim values of q and k inside qkv (T, row_stride), in
// place; one warp per (token, head), reducing over head_dim.
cudaError_t launch_qk_norm(uint16_t* qkv, int n_tokens, int row_stride, int n_heads, int n_kv_heads,
                           int head_dim, const float* q_w, const float* k_w, float eps,
                           cudaStream_t stream);

// Rotates the q and k heads of each row of qkv by positions[t] with the fp32 table
// (max_positions, head_dim / 2), in place: y0 = x0 c - x1 s, y1 = x0 s + x1 c, each product
// rounded (the CPU's arithmetic, so RoPE matches the CPU bit for bit on the same inputs). Then
// copies the rotated k and the v of each row into its slot of the paged cache (n_blocks *
// block_size, kv_dim); rows with slot < 0 are padding and not copied. A block per token and KV
// head; needs n_heads a multiple of n_kv_heads.
cudaError_t launch_rope_kv_write(uint16_t* qkv, int n_tokens, int row_stride, int n_heads,
                                 int n_kv_heads, int head_dim, bool interleaved,
                                 const int32_t* positions, const float* cos, const float* sin,
                                 const int32_t* slots, uint16_t* k_cache, uint16_t* v_cache,
                                 cudaStream_t stream);

// out = silu(gate) * up with gate_up = [gate (f) | up (f)] per row.  out (rows, f) bf16.
cudaError_t launch_swiglu(const uint16_t* gate_up, uint16_t* out, int rows, int f,
                          cudaStream_t stream);

// out (m, n) = x (m, k) @ w (n, k)^T for shapes cuBLASLt's tensor-core algorithms cannot take
// (k or n not a multiple of 8, e.g. stories260K's FFN of 172). One thread per output reduces k
// with fused multiply-adds in increasing order, the same for every m: both lanes use it. Meant
// for tiny models; not tuned for speed. x, w bf16; out bf16 or f32. `ld`: the row stride of x
// and w in elements (0: k; a leaf of a wider K in Backend::matmul_leaves).
cudaError_t launch_gemm_fallback(const uint16_t* x, const uint16_t* w, void* out, DType out_dtype,
                                 int64_t m, int64_t n, int64_t k, cudaStream_t stream,
                                 int64_t ld = 0);

// Skinny GEMM of the fast lane (gemv.cu): out (m, n) = x (m, k) @ w (n, k)^T for 1 <= m <=
// kGemvMaxM on tensor cores, K permuted per 32-wide chunk and split over the 8 warps of a block,
// partial sums added in warp order. Repeats bit for bit for the same shape and variant; its K
// order is not cuBLASLt's, so the canonical lane never uses it. Needs k % 8 == 0 and 16-byte
// aligned x and w. x, w bf16; out bf16 or f32. Variants 0 .. kGemvSameOrderVariants - 1 differ
// in rows per warp and loads in flight, and add the same products in the same order. Variants
// kGemvSameOrderVariants .. kGemvVariants - 1 cut K into 8 contiguous slices, a warp a slice,
// summed along the leaf tree (tree_gemv.cu's kernel: on an H100 the fast lane's timing picked
// them at M 1 for qkv, gate_up, down_proj and the LM head, docs/benchmarks.md); another order,
// and only where gemv_variant_takes says so (k % 512 == 0, n % 8 == 0). cudaErrorInvalidValue
// for arguments a variant cannot take.
inline constexpr int kGemvMaxM = 16;
inline constexpr int kGemvSameOrderVariants = 8;
inline constexpr int kGemvVariants = 10;
// Whether variant `variant` runs an (n, k) shape (launch_gemv's other checks aside).
bool gemv_variant_takes(int variant, int64_t n, int64_t k);
cudaError_t launch_gemv(const uint16_t* x, const uint16_t* w, void* out, DType out_dtype, int64_t m,
                        int64_t n, int64_t k, int variant, cudaStream_t stream);
const char* gemv_variant_name(int variant);

// gemv_canonical.cu: out (m, n) = x @ w^T with K reduced in its natural order, one k16 MMA after
// another into one fp32 accumulator (cuBLASLt's split-K-free bits, as observed on the H200;
// gemm.cpp admits it per shape only after checking). m <= kGemvMaxM, k % 16 == 0; out bf16 or
// f32. launch_gemv_sequential is the slow reference (f32 out; weights_as_a picks which MMA
// operand holds the weights) that cuda_korder_lab compares with. ld: the row stride of x and w
// (0: k). leaves > 1: that many consecutive K ranges of k each (Backend::matmul_leaves' leaves
// of equal size), leaf l reading x and w from column l*k and writing out + l*m*n, in one launch.
cudaError_t launch_gemv_canonical(const uint16_t* x, const uint16_t* w, void* out, DType out_dtype,
                                  int64_t m, int64_t n, int64_t k, cudaStream_t stream,
                                  int64_t ld = 0, int leaves = 1);
cudaError_t launch_gemv_sequential(const uint16_t* x, const uint16_t* w, float* out, int64_t m,
                                   int64_t n, int64_t k, bool weights_as_a, cudaStream_t stream);

// tree_gemm.cu: the canonical lane's row-parallel GEMM in one launch (Backend::matmul_leaves):
// out (m, n) = the `leaves` consecutive K ranges of k each (from column 0 of x and w, row stride
// ld), each reduced as launch_gemv_canonical reduces K (one k16 MMA after another into its own
// fp32 accumulator), summed along the binary tree ((l0+l1)+(l2+l3))+... in fp32 as
// launch_sum_parts sums them; out f32, or bf16 rounded once. No M limit. tree_gemm_takes says
// which shapes it takes (leaves 2, 4 or 8, k % 64 == 0, n % 8 == 0); the launch also needs
// 16-byte aligned x and w and returns cudaErrorInvalidValue otherwise.
// Variants 0 .. kTreeGemmVariants - 1 differ in tile shape and where the tree's partial sums
// wait; each is meant to give the same bits, and GemmRunner checks it before use. 0 and 1 are
// mma.sync kernels (tree_gemm.cu); 2, 3 and 4 run a leaf a block on wgmma and sum the tree
// across a cluster (tree_gemm_wgmma.cu; sm_90a only, refused elsewhere); 5 to 10 do the
// same with TMA loads and a producer warp (tree_gemm_tma.cu; sm_90a only): 5 on 128 x 256
// tiles, 6 on 128 x 128 tiles two blocks an SM, 7 on 128 x 128 tiles two leaves a block, 8 every
// leaf in one block (no cluster), 9 four leaves a block, 10 every leaf in one block of 128 x 64;
// kTreeGemvVariant (11) and 12 only at decode sizes (m <= kGemvMaxM; refused above): a warp a
// leaf, the fast GEMV's grid (tree_gemv.cu; 16 and 8 weight rows a warp).
inline constexpr int kTreeGemvVariant = 11;
inline constexpr int kTreeGemmVariants = 13;
// The variants GemmRunner's check times (the others lost everywhere they were measured on an
// H100, docs/benchmarks.md; the lab and the tests still run them). On an H100 (twentieth
// session) 9 served most buckets of o and down from M 56 and 80 up, 10 and 8 a few of o.
inline constexpr int kTreeGemmCandidates[] = {5, 7, 8, 9, 10, 11, 12};
bool tree_gemm_takes(int64_t m, int64_t n, int64_t k, int64_t ld, int leaves);
// Whether variant `variant` takes m rows (kTreeGemvVariant and after: m <= kGemvMaxM; the
// others: any m tree_gemm_takes takes).
bool tree_gemm_variant_takes(int variant, int64_t m);
const char* tree_gemm_variant_name(int variant);
cudaError_t launch_tree_gemm(const uint16_t* x, const uint16_t* w, void* out, DType out_dtype,
                             int64_t m, int64_t n, int64_t k, int64_t ld, int leaves,
                             cudaStream_t stream, int variant = 0);
// Whether the current GPU is compute 9.0 and runs this build's sm_90a code (wgmma, TMA): where
// not, variants 2 and up refuse every launch (tree_gemm_wgmma.cu).
bool wgmma_runs_here();
// Variants 2, 3 and 4 of launch_tree_gemm (shape 0, 1, 2), after its argument checks.
cudaError_t launch_tree_gemm_wgmma(const uint16_t* x, const uint16_t* w, void* out, bool out_f32,
                                   int m, int n, int k, int64_t ld, int leaves, int shape,
                                   cudaStream_t stream);
// Variants 5 to 10 of launch_tree_gemm (shape 0 to 5), after its argument checks.
cudaError_t launch_tree_gemm_tma(const uint16_t* x, const uint16_t* w, void* out, bool out_f32,
                                 int m, int n, int k, int64_t ld, int leaves, int shape,
                                 cudaStream_t stream);
// Variants 11 and 12 of launch_tree_gemm (shape 0, 1), after its argument checks.
cudaError_t launch_tree_gemv(const uint16_t* x, const uint16_t* w, void* out, bool out_f32, int m,
                             int n, int k, int64_t ld, int leaves, int shape,
                             cudaStream_t stream);

// out = tmp + bias (fp32 add, then rounded to out's dtype), bias broadcast over rows.
// tmp (m, n) f32, bias (n) f32, out (m, n) bf16 or f32 (may alias tmp when f32).
cudaError_t launch_add_bias(const float* tmp, const float* bias, void* out, DType out_dtype,
                            int64_t m, int64_t n, cudaStream_t stream);

// out[r, :] = x[rows[r], :] for rows of row_bytes bytes (a multiple of 2).
cudaError_t launch_gather_rows(const void* x, const int32_t* rows, int n_rows, int64_t row_bytes,
                               void* out, cudaStream_t stream);

// ---- attention --------------------------------------------------------------------------------

// A sequence of the pass, as the attention kernels see it.
struct AttnSeq {
  int32_t q_begin;      // first row of the pass
  int32_t q_len;        // tokens
  int32_t pos_begin;    // absolute position of the first token
  int32_t block_begin;  // offset of its block table in block_tables
};

// One unit of work of the attention kernel: the query rows [row_begin, row_begin + n_rows) of the
// packed rows of one sequence (packed row = token * group + g, for query head kv_head * group +
// g), over the keys [key_begin, key_end) capped by each row's causal limit (key_end is at most
// the causal limit of the item's last row). The keys are taken in tiles of kAttnKeyTile starting
// at key_begin; after every tiles_per_chunk tiles (0 = never) the tile-by-tile online softmax
// state is closed as one chunk and merged, in increasing order, into the running state.
// partial < 0: the item covers all keys of its rows and writes the normalized bf16 output;
// otherwise it writes its unnormalized state (O, max, sum) to partial rows [partial, partial +
// n_rows) and combine item `combine` merges those.
struct AttnWorkItem {
  int32_t kv_head;
  int32_t row_begin;
  int32_t n_rows;
  int32_t key_begin;
  int32_t key_end;
  int32_t tiles_per_chunk;
  int32_t partial;
  int32_t combine;  // index into the combines when partial >= 0, else -1
  // The sequence's first row and block-table offset, copied from the pass by the planner so that
  // the kernel reaches its first K/V load through one lookup (the block table), not three.
  int32_t q_begin;
  int32_t block_begin;
};

// Merges the partial states of one row tile in increasing chunk order: part c of local row r
// is partial row `partial + c * n_rows + r`. Parts whose sum is 0 (no key reached the row) are
// skipped, exactly as the attention kernel skips an empty chunk. It runs in the attention
// kernel itself, by the CTA that stores the tile's last part (AttnParams::split_done).
struct AttnCombineItem {
  int32_t seq;
  int32_t kv_head;
  int32_t row_begin;
  int32_t n_rows;
  int32_t n_parts;
  int32_t partial;
};

inline constexpr int kAttnKeyTile = 64;  // keys per tile (one shared-memory stage)
inline constexpr int kAttnRowTile = 64;  // packed query rows per work item (4 warps x 16)
// Rows of a tall item (4 warps x 32): fast-lane items of one chunk (tiles_per_chunk = 0) only.
inline constexpr int kAttnTallRowTile = 128;
// Narrow items: items of at most kAttnNarrowMaxRows rows (a decode row's query heads of one KV
// head), at a padded head_dim of at least 64, of any length, whole or one piece of a split row
// tile (the narrow kernel then runs the combine too). Narrow and wide forms give the same bits.
// (When the narrow form was a branch of the wide kernel, items under 512 keys stayed wide: its
// code made batch-1 steps slower. In a kernel of its own it measured faster at every decode
// batch and context tried, H200, 2026-12-03.)
inline constexpr int kAttnNarrowMaxRows = 16;
constexpr bool attn_narrowable(int head_dim_pad) { return head_dim_pad >= 64; }
inline bool attn_item_narrow(const AttnWorkItem& it, int head_dim_pad) {
  return attn_narrowable(head_dim_pad) && it.n_rows <= kAttnNarrowMaxRows;
}
// K/V stages of the narrow kernel: two (three CTAs an SM: many items), or four where the pass's
// narrow items fit one wave of one CTA an SM (a small batch's pieces: each CTA has three tiles
// in flight ahead of the one it computes, so a canonical chunk's four tiles load at once). The
// stage count changes no bit.
inline constexpr int kAttnNarrowStages = 2;
inline constexpr int kAttnNarrowDeepStages = 4;

struct AttnParams {
  const uint16_t* qkv;  // (T, qkv_stride): q heads first
  int64_t qkv_stride;
  const uint16_t* k_cache;  // (n_blocks, block_size, n_kv_heads, head_dim)
  const uint16_t* v_cache;
  uint16_t* out;  // (T, out_stride), head h at column h * head_dim
  int64_t out_stride;
  const int32_t* positions;     // (T)
  const int32_t* block_tables;  // concatenated
  const AttnSeq* seqs;
  const AttnWorkItem* items;
  int n_items;
  // Items [0, n_tall) are tall (more than kAttnRowTile rows) and run in a kernel of their own;
  // eager passes only (0 in captured graphs). Items [n_tall, n_tall + n_narrow) are narrow
  // (attn_item_narrow) and run in a kernel of their own (captured graphs: counts[2] items, and
  // the kernel launched where narrow_grid > 0). Launch order: narrow, tall, wide (each where it
  // has items).
  int n_tall;
  int n_narrow;
  // Set by launch_attention for the kernels launched after the narrow one (tall, wide): they
  // skip the wait at their start and wait at their end (see attention_narrow_kernel).
  bool after_narrow;
  const AttnCombineItem* combines;
  // Captured graphs: the kernels run `grid` and `narrow_grid` CTAs and read the item counts
  // here, so one capture serves every plan of its shape and kernel form
  // (Backend::graph_variant). Null in eager passes (one CTA per item, counts above).
  const int32_t* counts;
  int grid;           // of the wide kernel (captured graphs: 0 where every item is narrow)
  int narrow_grid;    // of the narrow kernel
  int narrow_stages;  // kAttnNarrowStages or kAttnNarrowDeepStages
  float* partial_o;   // (P, head_dim_pad) fp32
  float* partial_ml;  // (P, 2) fp32: running max (log2 units), running sum
  // One counter per combine, zero between launches: the parts of a combine stored so far. The
  // CTA that stores the last one merges them and sets the counter back to zero.
  int32_t* split_done;
  int n_heads;
  int n_kv_heads;
  int head_dim;
  int block_size;    // a power of two
  int block_shift;   // log2(block_size)
  float scale_log2;  // log2(e) / sqrt(head_dim)
};

// The padded head dimension the kernels are built for (16, 32, 64, 128), 0 if unsupported.
int attention_head_dim_pad(int head_dim);

// Runs the work items and, inside the same kernel, the combine items (if any). Reduces over key
// positions.
cudaError_t launch_attention(const AttnParams& p, cudaStream_t stream);

// ---- sampling ---------------------------------------------------------------------------------

struct SampleRowDev {
  int32_t logit_row;
  float temperature;
  int32_t top_k;
  float top_p;
  float min_p;
  int32_t top_logprobs;  // already capped at kSampleMaxTop
  uint64_t seed;
  int64_t position;
  int32_t sorted;  // index of this row in the sorted buffers, or -1
  int32_t score_token;  // >= 0: report this token (its logprob and rank) instead of drawing
};

inline constexpr int kSampleMaxTop = 20;

struct SampleOutDev {
  int32_t token;
  int32_t n_top;
  int32_t rank;  // score rows: 1 + the ids with a larger logit
  float logprob;
  double lse;  // log-sum-exp of the raw logits
  int32_t top_ids[kSampleMaxTop];
  float top_logprobs[kSampleMaxTop];
};

// Per row: max, log-sum-exp (double), greedy argmax (ties to the lowest id) and, for sampled
// rows that need no sorted order, the Gumbel-max token over the whole vocabulary.
cudaError_t launch_sample_rows(const float* logits, int vocab, const SampleRowDev* rows, int n_rows,
                               SampleOutDev* out, cudaStream_t stream);

// Sorting support for rows with top-k/top-p/min-p or top logprobs: copies the logits of rows
// `rows[i].logit_row` for the given sorted indices [first, first + count) into keys (count,
// vocab) and writes ids 0..vocab-1 into ids, and segment offsets (count + 1).
cudaError_t launch_sample_gather(const float* logits, int vocab, const SampleRowDev* rows,
                                 int n_rows, int first_sorted, int count, float* keys, int32_t* ids,
                                 int32_t* offsets, cudaStream_t stream);

// Sorts each of `count` segments of `vocab` (key, id) pairs by key descending, stable (ties keep
// ascending ids). temp may be null to query temp_bytes.
cudaError_t sort_segments_descending(void* temp, size_t& temp_bytes, const float* keys_in,
                                     float* keys_out, const int32_t* ids_in, int32_t* ids_out,
                                     int count, int vocab, const int32_t* offsets,
                                     cudaStream_t stream);

// Finishes the rows whose sorted index lies in [first, first + count): filters (top-k, top-p,
// min-p) over the sorted candidates, Gumbel-max among the kept ones, top logprobs.
cudaError_t launch_sample_sorted(const float* logits, const float* sorted_keys,
                                 const int32_t* sorted_ids, int vocab, const SampleRowDev* rows,
                                 int n_rows, int first_sorted, int count, SampleOutDev* out,
                                 cudaStream_t stream);

}  // namespace llm42::cuda
