// Causal attention over the paged KV cache on tensor cores (mma.sync m16n8k16, bf16 in, fp32
// accumulate), FlashAttention-2 style, for prefill chunks, verification windows and decode.
//
// Layout: qkv (T, qkv_stride) bf16 with the q heads first; K and V caches (n_blocks,
// block_size, n_kv_heads, head_dim) bf16; out (T, out_stride) bf16. Reduced dimension: key
// positions. One CTA = 4 warps runs one AttnWorkItem: up to 64 packed query rows of one
// sequence and one KV head (the `group` query heads of that KV head for each token, so the K/V
// tile is loaded once for all of them); each warp owns 16 rows as the MMA's M dimension. Three
// kernels, one per item shape, launched in this order where a pass has items of the shape:
//   narrow (attention_narrow_kernel): an item of at most kAttnNarrowMaxRows rows (a decode
//          step's query heads of one KV head), whole or a piece of a split tile: the four warps
//          split the tile's keys for the scores and head_dim for the output, the running O
//          stays in registers, and the smaller footprint lets three CTAs share an SM (two K/V
//          stages), or one CTA an SM keep three tiles in flight (four stages, where the items
//          fit one wave);
//   tall   (attention_tall_kernel): a fast-lane item of more than 64 rows (a prefill chunk's):
//          128 rows, 32 a warp (attend_tall);
//   wide   (attention_kernel): every other item, and the combines.
//
// Why one kernel serves every lane and pass shape (DESIGN.md §2): an MMA output element depends
// only on its own row of A and column of B, and every other step (scale, mask, row max, exp,
// row sums, rescales, merges) is per row, written with explicit _rn intrinsics and ex2.approx so
// that no compiler contraction depends on the context. A query row therefore gets the same
// instruction sequence whether it sits in a prefill chunk, a verification window or alone in a
// decode step, in any MMA row, next to any other rows. Rows that reach fewer keys than their
// neighbours see the extra tiles fully masked, which leaves their state exactly unchanged
// (rescale by exactly 1, add exactly 0).
//
// Reduction order of one row: tiles of 64 keys starting at the item's key_begin; within a tile
// the MMA sums over head_dim and then over keys; after each chunk of tiles_per_chunk tiles the
// chunk's (max, sum, O) is merged into the running state in increasing chunk order.
//   canonical: key_begin = chunk-aligned absolute position, tiles_per_chunk = kCanonicalChunk /
//              64, so chunk c covers absolute positions [c*C, (c+1)*C) whatever the pass. A row
//              tile may run as one item (in-kernel merges) or as one item per chunk plus a
//              combine (the same merge function over stored fp32 states): identical bits, so the
//              planner may pick either by load.
//   fast:      unaligned key ranges chosen from the load (FlashDecoding), no in-range merges.
#include <cuda_bf16.h>

#include <climits>
#include <cstdint>
#include <type_traits>

#include "backend/cuda/kernels.h"
#include "backend/cuda/launch.cuh"

namespace llm42::cuda {
namespace {

constexpr int kThreads = 128;
constexpr float kNegInf = -__builtin_huge_valf();

__device__ __forceinline__ float ex2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void cp_async_16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

// d += a * b for one m16n8k16 tile.
__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

// The merge of a state (m_b, l_b, O_b) into (m_a, l_a, O_a), used by the kernel and by the
// combine, so both paths perform the same operations on the same fp32 values. An empty state
// (l = 0) contributes nothing; merging into an empty state copies.
struct MergeScales {
  bool skip;
  bool copy;
  float a;
  float b;
  float m;
  float l;
};

__device__ __forceinline__ MergeScales merge_scales(float m_a, float l_a, float m_b, float l_b) {
  MergeScales s{};
  s.skip = l_b == 0.0f;
  s.copy = !s.skip && l_a == 0.0f;
  if (s.skip || s.copy) {
    s.m = s.copy ? m_b : m_a;
    s.l = s.copy ? l_b : l_a;
    return s;
  }
  s.m = fmaxf(m_a, m_b);
  s.a = m_a == s.m ? 1.0f : ex2(__fsub_rn(m_a, s.m));
  s.b = m_b == s.m ? 1.0f : ex2(__fsub_rn(m_b, s.m));
  s.l = __fadd_rn(__fmul_rn(l_a, s.a), __fmul_rn(l_b, s.b));
  return s;
}

__device__ __forceinline__ float merge_value(const MergeScales& s, float o_a, float o_b) {
  if (s.skip) return o_a;
  if (s.copy) return o_b;
  return __fadd_rn(__fmul_rn(o_a, s.a), __fmul_rn(o_b, s.b));
}

template <int D>
struct Smem {
  static constexpr int kStride = D + 8;  // bf16 elements per row: 16 bytes of padding keeps
                                         // ldmatrix's 8 row addresses on distinct bank groups
  static constexpr int kTileElems = kAttnKeyTile * kStride;
  static constexpr int kStages = 2;
  static constexpr int kKvBytes = 2 * kStages * kTileElems * 2;  // K and V
  static constexpr int kQBytes = kAttnRowTile * kStride * 2;
  // The running O in fp32, rows padded by 8 floats: a half-warp's 8-byte accesses (4 rows x 4
  // column pairs) then fall on 32 distinct banks instead of 8-way on the same 8.
  static constexpr int kORunStride = D + 8;
  static constexpr int kORunBytes = kAttnRowTile * kORunStride * 4;
  static constexpr int kXBytes = kQBytes > kORunBytes ? kQBytes : kORunBytes;
  static constexpr int kBytes = kKvBytes + kXBytes;
  static constexpr int kQRows = kAttnRowTile;
};

// A narrow item's shared memory: kStages K/V stages of the wide item's layout, then its 16 rows
// of Q, which the scores exchange, fp32 [16][64 + 8] (the padding puts a half-warp's 8-byte
// accesses on 32 distinct banks), reuses once every warp holds Q in registers. No running O: it
// lives in registers. At head_dim 128: 74,240 bytes with two stages, so three CTAs fit in an
// SM's 228 KB; 143,872 with four (kAttnNarrowDeepStages), one CTA.
template <int D, int kStages_>
struct NarrowSmem {
  static constexpr int kStages = kStages_;
  static constexpr int kStride = Smem<D>::kStride;
  static constexpr int kTileElems = Smem<D>::kTileElems;
  static constexpr int kKvBytes = 2 * kStages * kTileElems * 2;
  static constexpr int kQRows = kAttnNarrowMaxRows;
  static constexpr int kSStride = kAttnKeyTile + 8;
  static constexpr int kQBytes = kQRows * kStride * 2;
  static constexpr int kSBytes = kAttnNarrowMaxRows * kSStride * 4;
  static constexpr int kXBytes = kQBytes > kSBytes ? kQBytes : kSBytes;
  static constexpr int kBytes = kKvBytes + kXBytes;
};

// Items of at most 16 rows (decode: one token's group of query heads) can run "narrow": the four
// warps share the 16 rows instead of one warp holding them while three idle. Warp w computes
// the scores of the tile's keys [16w, 16w + 16), the scores meet in shared memory, every warp
// runs the whole softmax of the 16 rows on the same values (so every warp holds the same
// probabilities, maxima and sums), and warp w accumulates O's head_dim columns
// [D/4 w, D/4 (w + 1)). Each score, probability and output element goes through exactly the
// operations, in the same order, that the one warp of a wide item performs for it: only who
// performs them changes, so a row gets the same bits in a narrow and in a wide item.
//
// The running O of a narrow item is in registers (a warp's D / 4 columns of 16 rows: 16 floats a
// thread at head_dim 128), merged with the same merge_value calls on the same fp32 values as a
// wide item's in shared memory. Which items run narrow is the planner's choice (both forms give
// the same bits, so it is free): see attn_item_narrow in kernels.h.
template <int D>
inline constexpr bool kNarrowable = attn_narrowable(D);

// One step of the online softmax over kNT * 8 keys from key0, for the 16 rows of one m16 tile
// (this thread: rows qr and qr + 8, h = 0 and 1): scale the raw scores s to log2 units, mask
// keys beyond a row's position or the item's keys (where needed), update the row max m and sum
// l, rescale the accumulated O, and leave the probabilities in s. Wide and narrow items step
// over whole 64-key tiles (kNT = 8), tall items over 32-key halves (kNT = 4).
template <int kNT, int kOTiles>
__device__ __forceinline__ void softmax_tile(float (&s)[kNT][4], float (&o)[kOTiles][4],
                                             float (&m)[2], float (&l)[2], const int (&row_pos)[2],
                                             bool needs_mask, int key0, int kv_limit, int qc,
                                             float scale_log2) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float mx = kNegInf;
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int key = key0 + nt * 8 + qc + e;
        float v = __fmul_rn(s[nt][2 * h + e], scale_log2);
        if (needs_mask && (key > row_pos[h] || key >= kv_limit)) v = kNegInf;
        s[nt][2 * h + e] = v;
        mx = fmaxf(mx, v);
      }
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float m_new = fmaxf(m[h], mx);
    const float m_use = m_new == kNegInf ? 0.0f : m_new;
    const float alpha = m[h] == m_new ? 1.0f : ex2(__fsub_rn(m[h], m_use));
    m[h] = m_new;
    float rowsum = 0.0f;
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const float pe = ex2(__fsub_rn(s[nt][2 * h + e], m_use));
        s[nt][2 * h + e] = pe;
        rowsum = __fadd_rn(rowsum, pe);
      }
    }
    l[h] = __fadd_rn(__fmul_rn(l[h], alpha), rowsum);
#pragma unroll
    for (int dt = 0; dt < kOTiles; ++dt) {
      o[dt][2 * h] = __fmul_rn(o[dt][2 * h], alpha);
      o[dt][2 * h + 1] = __fmul_rn(o[dt][2 * h + 1], alpha);
    }
  }
}

// One work item, by the whole CTA. Every thread executes the same barriers; warps without rows
// only skip the arithmetic.
template <int D, bool kNarrow, int kStages = 2>
__device__ __forceinline__ void attend_item(const AttnParams& p, const AttnWorkItem& item,
                                            unsigned char* smem) {
  using S = std::conditional_t<kNarrow, NarrowSmem<D, kStages>, Smem<D>>;
  static_assert(S::kStages == kStages);
  __nv_bfloat16* s_k = reinterpret_cast<__nv_bfloat16*>(smem);  // [kStages][64][stride]
  __nv_bfloat16* s_v = s_k + kStages * S::kTileElems;           // [kStages][64][stride]
  __nv_bfloat16* s_q = reinterpret_cast<__nv_bfloat16*>(smem + S::kKvBytes);  // [rows][stride]
  float* s_orun = reinterpret_cast<float*>(smem + S::kKvBytes);  // wide: [64][D + 8], after s_q
  float* s_s = reinterpret_cast<float*>(smem + S::kKvBytes);     // narrow: [16][72], after s_q
  static_assert(!kNarrow || kNarrowable<D>);
  // Column tiles of 8 keys (scores) and of 8 head_dim columns (O) this warp computes.
  constexpr int kScoreTiles = kNarrow ? 2 : 8;
  constexpr int kOTiles = kNarrow ? D / 32 : D / 8;

  const int group = p.n_heads / p.n_kv_heads;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int hd = p.head_dim;
  const int32_t* block_table = p.block_tables + item.block_begin;
  const int64_t kv_row_stride = static_cast<int64_t>(p.n_kv_heads) * hd;

  const int kv_limit = item.key_end;  // keys that exist (the planner caps key_end causally)
  const int n_tiles = (kv_limit - item.key_begin + kAttnKeyTile - 1) / kAttnKeyTile;

  // Keys before the sequence's first query position are not written by this pass (its KV write
  // stores the queries' own keys): those of the first kStages - 1 tiles are copied before
  // pdl_wait, while the kernels before this one may still run. Which: kOld the keys before
  // first_new, kNew the rest (with the zero fill), kAll every key.
  enum Part { kAll, kOld, kNew };
  constexpr int kChunks = D / 8;  // 16-byte chunks per row
  const int first_new = p.positions[item.q_begin];
  auto load_tile = [&](int tile, int stage, Part part_of) {
    const int key0 = item.key_begin + tile * kAttnKeyTile;
    for (int c = tid; c < kAttnKeyTile * kChunks; c += kThreads) {
      const int j = c / kChunks, part = c % kChunks;
      const int pos = key0 + j;
      const bool valid = pos < kv_limit && part * 8 < hd;
      if (part_of != kAll && (part_of == kOld) != (valid && pos < first_new)) continue;
      int64_t off = 0;
      if (valid) {
        const int64_t slot =
            (static_cast<int64_t>(block_table[pos >> p.block_shift]) << p.block_shift) +
            (pos & (p.block_size - 1));
        off = slot * kv_row_stride + static_cast<int64_t>(item.kv_head) * hd + part * 8;
      }
      const int dst = stage * S::kTileElems + j * S::kStride + part * 8;
      cp_async_16(s_k + dst, p.k_cache + off, valid);
      cp_async_16(s_v + dst, p.v_cache + off, valid);
    }
  };
  // The first kStages - 1 tiles (one group each) fill the stages ahead of the loop.
#pragma unroll
  for (int t = 0; t < kStages - 1; ++t) {
    if (t < n_tiles) load_tile(t, t, kOld);
    cp_async_commit();
  }
  // A no-op after the first item of a CTA. The wide kernel launched after the narrow one skips
  // it (see attention_narrow_kernel).
  if (kNarrow || !p.after_narrow) pdl_wait();
  // The predecessors are done: the next kernel (tall, else wide) may start.
  if constexpr (kNarrow) pdl_trigger();

  // Q rows into shared memory (zeros for padding rows and dims beyond head_dim).
  for (int c = tid; c < S::kQRows * kChunks; c += kThreads) {
    const int r = c / kChunks, part = c % kChunks;
    const bool valid = r < item.n_rows && part * 8 < hd;
    const int packed = item.row_begin + (valid ? r : 0);
    const int64_t token = item.q_begin + packed / group;
    const int head = item.kv_head * group + packed % group;
    const uint16_t* src =
        p.qkv + token * p.qkv_stride + static_cast<int64_t>(head) * hd + (valid ? part * 8 : 0);
    cp_async_16(s_q + r * S::kStride + part * 8, src, valid);
  }
  cp_async_commit();
#pragma unroll
  for (int t = 0; t < kStages - 1; ++t) {
    if (t < n_tiles) load_tile(t, t, kNew);
    cp_async_commit();
  }

  // Fragment ownership: this thread holds rows r0 = warp*16 + lane/4 and r0 + 8, and within
  // each 8-wide column tile the columns 2*(lane%4) and +1.
  const int qr = lane / 4, qc = 2 * (lane % 4);
  const int row0 = kNarrow ? 0 : warp * 16;          // the first of the 16 rows this warp works on
  const int o_tile0 = kNarrow ? warp * kOTiles : 0;  // the first O column tile it owns
  const int r_local[2] = {row0 + qr, row0 + qr + 8};
  int row_pos[2];
  for (int h = 0; h < 2; ++h) {
    const int r = r_local[h];
    row_pos[h] = r < item.n_rows ? p.positions[item.q_begin + (item.row_begin + r) / group] : -1;
  }
  const bool warp_active = row0 < item.n_rows;
  // The smallest causal limit among the warp's rows: tiles wholly below it need no mask (a mask
  // that keeps every key changes no value, so skipping it changes no bit).
  int warp_min_pos = min(r_local[0] < item.n_rows ? row_pos[0] : INT_MAX,
                         r_local[1] < item.n_rows ? row_pos[1] : INT_MAX);
  warp_min_pos = min(warp_min_pos, __shfl_xor_sync(0xffffffffu, warp_min_pos, 4));
  warp_min_pos = min(warp_min_pos, __shfl_xor_sync(0xffffffffu, warp_min_pos, 8));
  warp_min_pos = min(warp_min_pos, __shfl_xor_sync(0xffffffffu, warp_min_pos, 16));

  cp_async_wait<kStages - 1>();  // the early tiles' old keys and Q have landed
  __syncthreads();
  uint32_t qa[D / 16][4];
#pragma unroll
  for (int ks = 0; ks < D / 16; ++ks)
    ldmatrix_x4(qa[ks], s_q + (row0 + lane % 16) * S::kStride + ks * 16 + (lane / 16) * 8);

  float o[kOTiles][4];
  float o_run[kNarrow ? kOTiles : 1][4];  // narrow: the running O (wide: s_orun)
  float m[2] = {kNegInf, kNegInf}, l[2] = {0.0f, 0.0f};
  float m_run[2] = {kNegInf, kNegInf}, l_run[2] = {0.0f, 0.0f};
#pragma unroll
  for (int dt = 0; dt < kOTiles; ++dt) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.0f;
  if constexpr (kNarrow) {
#pragma unroll
    for (int dt = 0; dt < kOTiles; ++dt)
      o_run[dt][0] = o_run[dt][1] = o_run[dt][2] = o_run[dt][3] = 0.0f;
  }

  for (int tile = 0; tile < n_tiles; ++tile) {
    const int stage = tile % kStages;
    __syncthreads();  // every warp is done with the stage about to be refilled (and with s_q)
    // Refill the stage of the previous tile with the tile kStages - 1 ahead; after this group
    // the kStages - 1 newest may pend: this tile's group has landed.
    const int ahead = tile + kStages - 1;
    if (ahead < n_tiles) load_tile(ahead, ahead % kStages, kAll);
    cp_async_commit();
    cp_async_wait<kStages - 1>();
    __syncthreads();

    const __nv_bfloat16* tk = s_k + stage * S::kTileElems;
    const __nv_bfloat16* tv = s_v + stage * S::kTileElems;
    const int key0 = item.key_begin + tile * kAttnKeyTile;
    if (warp_active) {
      // S = Q K^T over this tile: 8 column tiles of 8 keys (a narrow item's warp: 2 of them,
      // keys [16w, 16w + 16)).
      float s[8][4];
#pragma unroll
      for (int nt = 0; nt < 8; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
#pragma unroll
      for (int ks = 0; ks < D / 16; ++ks) {
#pragma unroll
        for (int npl = 0; npl < kScoreTiles / 2; ++npl) {
          const int np = kNarrow ? warp : npl;
          uint32_t b[4];
          const int mi = lane / 8;
          ldmatrix_x4(
              b, tk + (np * 16 + (mi / 2) * 8 + lane % 8) * S::kStride + ks * 16 + (mi % 2) * 8);
          mma_bf16(s[2 * npl], qa[ks], b[0], b[1]);
          mma_bf16(s[2 * npl + 1], qa[ks], b[2], b[3]);
        }
      }
      if constexpr (kNarrow) {
        // Exchange: each warp's two column tiles out, all eight back in the fragment layout.
#pragma unroll
        for (int t = 0; t < 2; ++t)
#pragma unroll
          for (int h = 0; h < 2; ++h)
            *reinterpret_cast<float2*>(s_s + (qr + 8 * h) * S::kSStride + (2 * warp + t) * 8 + qc) =
                float2{s[t][2 * h], s[t][2 * h + 1]};
        __syncthreads();  // uniform: a narrow item's warps are all active
#pragma unroll
        for (int nt = 0; nt < 8; ++nt)
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const float2 v =
                *reinterpret_cast<const float2*>(s_s + (qr + 8 * h) * S::kSStride + nt * 8 + qc);
            s[nt][2 * h] = v.x;
            s[nt][2 * h + 1] = v.y;
          }
      }
      // Scale to log2 units, mask (where some key of the tile is out of reach), online softmax
      // per row.
      const bool needs_mask =
          key0 + kAttnKeyTile - 1 > warp_min_pos || key0 + kAttnKeyTile > kv_limit;
      softmax_tile(s, o, m, l, row_pos, needs_mask, key0, kv_limit, qc, p.scale_log2);
      // O += P V: P from the S accumulators (the C layout of two n-tiles is the A layout of one
      // k-step), V fragments by transposed ldmatrix.
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        uint32_t pa[4];
        pa[0] = pack_bf16(s[2 * kk][0], s[2 * kk][1]);
        pa[1] = pack_bf16(s[2 * kk][2], s[2 * kk][3]);
        pa[2] = pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]);
        pa[3] = pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
        for (int dpl = 0; dpl < kOTiles / 2; ++dpl) {
          const int dp = o_tile0 / 2 + dpl;
          uint32_t b[4];
          const int mi = lane / 8;
          ldmatrix_x4_trans(
              b, tv + (kk * 16 + (mi % 2) * 8 + lane % 8) * S::kStride + (2 * dp + mi / 2) * 8);
          mma_bf16(o[2 * dpl], pa, b[0], b[1]);
          mma_bf16(o[2 * dpl + 1], pa, b[2], b[3]);
        }
      }

      // Close the chunk after its last tile (or the item's last tile) and merge it.
      const bool chunk_end = tile + 1 == n_tiles ||
                             (item.tiles_per_chunk > 0 && (tile + 1) % item.tiles_per_chunk == 0);
      if (chunk_end) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          float lq = l[h];
          lq = __fadd_rn(lq, __shfl_xor_sync(0xffffffffu, lq, 1));
          lq = __fadd_rn(lq, __shfl_xor_sync(0xffffffffu, lq, 2));
          const MergeScales ms = merge_scales(m_run[h], l_run[h], m[h], lq);
          if constexpr (kNarrow) {
            // Registers start at zero, so a skipped chunk leaves an empty state at zero too.
#pragma unroll
            for (int dt = 0; dt < kOTiles; ++dt)
#pragma unroll
              for (int e = 0; e < 2; ++e) {
                float& run = o_run[dt][2 * h + e];
                if (ms.copy)
                  run = o[dt][2 * h + e];
                else if (!ms.skip)
                  run = merge_value(ms, run, o[dt][2 * h + e]);
              }
          } else {
            float* orow = s_orun + r_local[h] * Smem<D>::kORunStride;
#pragma unroll
            for (int dt = 0; dt < kOTiles; ++dt) {
              float2* cell = reinterpret_cast<float2*>(orow + (o_tile0 + dt) * 8 + qc);
              const float2 chunk_o{o[dt][2 * h], o[dt][2 * h + 1]};
              if (ms.copy) {
                *cell = chunk_o;
              } else if (!ms.skip) {
                const float2 run = *cell;
                *cell =
                    float2{merge_value(ms, run.x, chunk_o.x), merge_value(ms, run.y, chunk_o.y)};
              } else if (l_run[h] == 0.0f) {
                *cell = float2{0.0f, 0.0f};  // still empty: the running O starts at zero, as in
                                             // the combine
              }
            }
          }
          m_run[h] = ms.m;
          l_run[h] = ms.l;
          m[h] = kNegInf;
          l[h] = 0.0f;
#pragma unroll
          for (int dt = 0; dt < kOTiles; ++dt) o[dt][2 * h] = o[dt][2 * h + 1] = 0.0f;
        }
      }
    }
  }
  cp_async_wait<0>();

  // Write the normalized output, or the unnormalized state for a combine.
  if (!warp_active) return;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int r = r_local[h];
    if (r >= item.n_rows) continue;
    // Column d of the running O (d in the warp's column tiles).
    const float* orow = s_orun + r * Smem<D>::kORunStride;
    auto run_o = [&](int dt, int d) {
      if constexpr (kNarrow) return o_run[dt][2 * h + (d & 1)];
      return orow[d];
    };
    if (item.partial < 0) {
      const int packed = item.row_begin + r;
      const int64_t token = item.q_begin + packed / group;
      const int head = item.kv_head * group + packed % group;
      uint16_t* dst = p.out + token * p.out_stride + static_cast<int64_t>(head) * hd;
#pragma unroll
      for (int dt = 0; dt < kOTiles; ++dt) {
        const int d = (o_tile0 + dt) * 8 + qc;
        if (d < hd) {
          const __nv_bfloat162 v = __floats2bfloat162_rn(__fdiv_rn(run_o(dt, d), l_run[h]),
                                                         __fdiv_rn(run_o(dt, d + 1), l_run[h]));
          *reinterpret_cast<__nv_bfloat162*>(dst + d) = v;
        }
      }
    } else {
      const int64_t prow = item.partial + r;
#pragma unroll
      for (int dt = 0; dt < kOTiles; ++dt) {
        const int d = (o_tile0 + dt) * 8 + qc;
        p.partial_o[prow * D + d] = run_o(dt, d);
        p.partial_o[prow * D + d + 1] = run_o(dt, d + 1);
      }
      if (qc == 0 && o_tile0 == 0) {
        p.partial_ml[prow * 2] = m_run[h];
        p.partial_ml[prow * 2 + 1] = l_run[h];
      }
    }
  }
}

// ---- tall items (their own kernel, attention_tall_kernel) ------------------------------------
// These helpers serve only the tall path and repeat attend_item's K/V and Q loads: with
// load_kv_tile in attend_item, its PTX re-reads work-item fields from global memory in the load
// loops (84 more ld.global across the four head dims), while the lambda keeps them in
// registers; the decode path keeps its lambda.

// Keys before the sequence's first query position are not written by this pass (its KV write
// stores the queries' own keys): those of the first tile are copied before pdl_wait, while the
// kernels before this one may still run. Which keys a tile load copies: kOld those before
// first_new, kNew the rest (with the zero fill), kAll every key.
enum class KvPart { kAll, kOld, kNew };

// Copies key tile `tile` of the item (K and V) into stage `stage` (cp.async, not committed).
template <int D>
__device__ __forceinline__ void load_kv_tile(const AttnParams& p, const AttnWorkItem& item,
                                             int first_new, int tile, int stage, KvPart part_of,
                                             __nv_bfloat16* s_k, __nv_bfloat16* s_v) {
  using S = Smem<D>;
  constexpr int kChunks = D / 8;  // 16-byte chunks per row
  const int hd = p.head_dim;
  const int32_t* block_table = p.block_tables + item.block_begin;
  const int64_t kv_row_stride = static_cast<int64_t>(p.n_kv_heads) * hd;
  const int key0 = item.key_begin + tile * kAttnKeyTile;
  for (int c = threadIdx.x; c < kAttnKeyTile * kChunks; c += kThreads) {
    const int j = c / kChunks, part = c % kChunks;
    const int pos = key0 + j;
    const bool valid = pos < item.key_end && part * 8 < hd;
    if (part_of != KvPart::kAll && (part_of == KvPart::kOld) != (valid && pos < first_new))
      continue;
    int64_t off = 0;
    if (valid) {
      const int64_t slot =
          (static_cast<int64_t>(block_table[pos >> p.block_shift]) << p.block_shift) +
          (pos & (p.block_size - 1));
      off = slot * kv_row_stride + static_cast<int64_t>(item.kv_head) * hd + part * 8;
    }
    const int dst = stage * S::kTileElems + j * S::kStride + part * 8;
    cp_async_16(s_k + dst, p.k_cache + off, valid);
    cp_async_16(s_v + dst, p.v_cache + off, valid);
  }
}

// Copies the item's first `kRows` packed query rows into s_q (zeros for padding rows and dims
// beyond head_dim; cp.async, not committed).
template <int D, int kRows>
__device__ __forceinline__ void load_q_rows(const AttnParams& p, const AttnWorkItem& item,
                                            __nv_bfloat16* s_q) {
  using S = Smem<D>;
  constexpr int kChunks = D / 8;
  const int group = p.n_heads / p.n_kv_heads;
  const int hd = p.head_dim;
  for (int c = threadIdx.x; c < kRows * kChunks; c += kThreads) {
    const int r = c / kChunks, part = c % kChunks;
    const bool valid = r < item.n_rows && part * 8 < hd;
    const int packed = item.row_begin + (valid ? r : 0);
    const int64_t token = item.q_begin + packed / group;
    const int head = item.kv_head * group + packed % group;
    const uint16_t* src =
        p.qkv + token * p.qkv_stride + static_cast<int64_t>(head) * hd + (valid ? part * 8 : 0);
    cp_async_16(s_q + r * S::kStride + part * 8, src, valid);
  }
}

// The position of local row r of the item (-1 for padding rows).
__device__ __forceinline__ int row_position(const AttnParams& p, const AttnWorkItem& item, int r) {
  const int group = p.n_heads / p.n_kv_heads;
  return r < item.n_rows ? p.positions[item.q_begin + (item.row_begin + r) / group] : -1;
}

// The smallest position among the warp's rows (INT_MAX if none): tiles wholly below it need no
// mask (a mask that keeps every key changes no value, so skipping it changes no bit).
__device__ __forceinline__ int warp_min(int v) {
  v = min(v, __shfl_xor_sync(0xffffffffu, v, 4));
  v = min(v, __shfl_xor_sync(0xffffffffu, v, 8));
  return min(v, __shfl_xor_sync(0xffffffffu, v, 16));
}

// Where local row r of the item goes, worked out once per row: the bf16 output row (the item
// covers all keys of its rows) or the fp32 partial state row for the combine.
struct RowStore {
  uint16_t* out;  // null for a partial item
  float* partial_o;
  float* partial_ml;
};

template <int D>
__device__ __forceinline__ RowStore row_store(const AttnParams& p, const AttnWorkItem& item,
                                              int r) {
  if (item.partial < 0) {
    const int group = p.n_heads / p.n_kv_heads;
    const int packed = item.row_begin + r;
    const int64_t token = item.q_begin + packed / group;
    const int head = item.kv_head * group + packed % group;
    return {p.out + token * p.out_stride + static_cast<int64_t>(head) * p.head_dim, nullptr,
            nullptr};
  }
  const int64_t prow = item.partial + r;
  return {nullptr, p.partial_o + prow * D, p.partial_ml + prow * 2};
}

// Columns d and d + 1 (of the padded head_dim): normalized by the row sum l in bf16 (columns
// beyond head_dim skipped), or the unnormalized fp32 state.
__device__ __forceinline__ void store_pair(const RowStore& st, int head_dim, int d, float o0,
                                           float o1, float l) {
  if (st.out != nullptr) {
    if (d < head_dim)
      *reinterpret_cast<__nv_bfloat162*>(st.out + d) =
          __floats2bfloat162_rn(__fdiv_rn(o0, l), __fdiv_rn(o1, l));
  } else {
    st.partial_o[d] = o0;
    st.partial_o[d + 1] = o1;
  }
}

// The running max and sum of the row, for the combine (partial items only).
__device__ __forceinline__ void store_ml(const RowStore& st, float m, float l) {
  if (st.out != nullptr) return;
  st.partial_ml[0] = m;
  st.partial_ml[1] = l;
}

// An item of more than kAttnRowTile rows (up to kAttnTallRowTile: a prefill chunk's), fast lane
// only (one chunk: no merges, tiles_per_chunk = 0). Each warp holds 32 rows as two m16 tiles, so
// every K and V fragment read from shared memory feeds twice the MMAs of a wide item, and each
// K/V tile brought into shared memory serves twice the rows. For the registers (O of 32 rows is
// 128 a thread) Q stays in shared memory, read per k-step, and the online softmax steps over
// 32-key halves of a tile instead of whole tiles: the fast lane's rows get other bits than in a
// wide item (the canonical lane never runs tall items). The state stays in registers: with no
// merge, the output is written straight from them. A warp skips a half wholly beyond all its
// rows (which would leave its state unchanged).
template <int D>
__device__ __forceinline__ void attend_tall(const AttnParams& p, const AttnWorkItem& item,
                                            unsigned char* smem) {
  using S = Smem<D>;
  static_assert(kAttnTallRowTile * S::kStride * 2 <= S::kXBytes);
  __nv_bfloat16* s_k = reinterpret_cast<__nv_bfloat16*>(smem);                // [2][64][stride]
  __nv_bfloat16* s_v = s_k + 2 * S::kTileElems;                               // [2][64][stride]
  __nv_bfloat16* s_q = reinterpret_cast<__nv_bfloat16*>(smem + S::kKvBytes);  // [128][stride]
  constexpr int kM = kAttnTallRowTile / kAttnRowTile;                         // m16 tiles per warp
  constexpr int kOTiles = D / 8;
  constexpr int kHalf = kAttnKeyTile / 2;  // keys per softmax step
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int kv_limit = item.key_end;
  const int n_tiles = (kv_limit - item.key_begin + kAttnKeyTile - 1) / kAttnKeyTile;

  const int first_new = p.positions[item.q_begin];
  if (n_tiles > 0) load_kv_tile<D>(p, item, first_new, 0, 0, KvPart::kOld, s_k, s_v);
  cp_async_commit();
  // A no-op after the first item of a CTA; launched after the narrow kernel, skipped (see
  // attention_narrow_kernel).
  if (!p.after_narrow) pdl_wait();
  load_q_rows<D, kAttnTallRowTile>(p, item, s_q);
  cp_async_commit();
  if (n_tiles > 0) load_kv_tile<D>(p, item, first_new, 0, 0, KvPart::kNew, s_k, s_v);
  cp_async_commit();

  // Rows of m-tile mt: warp * 32 + mt * 16 + lane / 4 (+ 8).
  const int qr = lane / 4, qc = 2 * (lane % 4);
  const int row0 = warp * 16 * kM;
  int row_pos[kM][2];
  int min_pos = INT_MAX, max_pos = -1;
#pragma unroll
  for (int mt = 0; mt < kM; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int r = row0 + mt * 16 + qr + 8 * h;
      row_pos[mt][h] = row_position(p, item, r);
      if (r < item.n_rows) min_pos = min(min_pos, row_pos[mt][h]);
      max_pos = max(max_pos, row_pos[mt][h]);
    }
  const int warp_min_pos = warp_min(min_pos);
  const int warp_max_pos = -warp_min(-max_pos);
  const bool warp_active = row0 < item.n_rows;

  float o[kM][kOTiles][4];
  float m[kM][2], l[kM][2];
#pragma unroll
  for (int mt = 0; mt < kM; ++mt) {
    m[mt][0] = m[mt][1] = kNegInf;
    l[mt][0] = l[mt][1] = 0.0f;
#pragma unroll
    for (int dt = 0; dt < kOTiles; ++dt)
      o[mt][dt][0] = o[mt][dt][1] = o[mt][dt][2] = o[mt][dt][3] = 0.0f;
  }

  for (int tile = 0; tile < n_tiles; ++tile) {
    const int stage = tile & 1;
    __syncthreads();  // every warp is done with the stage about to be refilled
    if (tile + 1 < n_tiles)
      load_kv_tile<D>(p, item, first_new, tile + 1, stage ^ 1, KvPart::kAll, s_k, s_v);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();

    const __nv_bfloat16* tk = s_k + stage * S::kTileElems;
    const __nv_bfloat16* tv = s_v + stage * S::kTileElems;
    if (!warp_active) continue;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int key0 = item.key_begin + tile * kAttnKeyTile + half * kHalf;
      if (key0 > warp_max_pos) break;  // uniform over the warp
      float s[kM][4][4];
#pragma unroll
      for (int mt = 0; mt < kM; ++mt)
#pragma unroll
        for (int nt = 0; nt < 4; ++nt)
          s[mt][nt][0] = s[mt][nt][1] = s[mt][nt][2] = s[mt][nt][3] = 0.0f;
#pragma unroll
      for (int ks = 0; ks < D / 16; ++ks) {
        uint32_t qa[kM][4];
#pragma unroll
        for (int mt = 0; mt < kM; ++mt)
          ldmatrix_x4(qa[mt],
                      s_q + (row0 + mt * 16 + lane % 16) * S::kStride + ks * 16 + (lane / 16) * 8);
#pragma unroll
        for (int np = 0; np < 2; ++np) {
          uint32_t b[4];
          const int mi = lane / 8;
          ldmatrix_x4(b, tk + (half * kHalf + np * 16 + (mi / 2) * 8 + lane % 8) * S::kStride +
                             ks * 16 + (mi % 2) * 8);
#pragma unroll
          for (int mt = 0; mt < kM; ++mt) {
            mma_bf16(s[mt][2 * np], qa[mt], b[0], b[1]);
            mma_bf16(s[mt][2 * np + 1], qa[mt], b[2], b[3]);
          }
        }
      }
      const bool needs_mask = key0 + kHalf - 1 > warp_min_pos || key0 + kHalf > kv_limit;
      // P in bf16: the A fragments of the half's two k-steps of P V.
      uint32_t pa[kM][2][4];
#pragma unroll
      for (int mt = 0; mt < kM; ++mt) {
        softmax_tile(s[mt], o[mt], m[mt], l[mt], row_pos[mt], needs_mask, key0, kv_limit, qc,
                     p.scale_log2);
#pragma unroll
        for (int kk = 0; kk < 2; ++kk) {
          pa[mt][kk][0] = pack_bf16(s[mt][2 * kk][0], s[mt][2 * kk][1]);
          pa[mt][kk][1] = pack_bf16(s[mt][2 * kk][2], s[mt][2 * kk][3]);
          pa[mt][kk][2] = pack_bf16(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
          pa[mt][kk][3] = pack_bf16(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
        }
      }
#pragma unroll
      for (int kk = 0; kk < 2; ++kk) {
#pragma unroll
        for (int dp = 0; dp < kOTiles / 2; ++dp) {
          uint32_t b[4];
          const int mi = lane / 8;
          ldmatrix_x4_trans(b, tv +
                                   (half * kHalf + kk * 16 + (mi % 2) * 8 + lane % 8) * S::kStride +
                                   (2 * dp + mi / 2) * 8);
#pragma unroll
          for (int mt = 0; mt < kM; ++mt) {
            mma_bf16(o[mt][2 * dp], pa[mt][kk], b[0], b[1]);
            mma_bf16(o[mt][2 * dp + 1], pa[mt][kk], b[2], b[3]);
          }
        }
      }
    }
  }
  cp_async_wait<0>();
  if (!warp_active) return;

    // The one chunk, merged into an empty running state, is the state: (m, sum of l, O); an empty
    // chunk (no key reached the row) leaves O at zero and the max at -inf, as in attend_item.
#pragma unroll
  for (int mt = 0; mt < kM; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float lq = l[mt][h];
      lq = __fadd_rn(lq, __shfl_xor_sync(0xffffffffu, lq, 1));
      lq = __fadd_rn(lq, __shfl_xor_sync(0xffffffffu, lq, 2));
      const int r = row0 + mt * 16 + qr + 8 * h;
      if (r >= item.n_rows) continue;
      const bool empty = lq == 0.0f;
      const RowStore st = row_store<D>(p, item, r);
#pragma unroll
      for (int dt = 0; dt < kOTiles; ++dt) {
        const int d = dt * 8 + qc;
        store_pair(st, p.head_dim, d, empty ? 0.0f : o[mt][dt][2 * h],
                   empty ? 0.0f : o[mt][dt][2 * h + 1], lq);
      }
      if (qc == 0) store_ml(st, empty ? kNegInf : m[mt][h], lq);
    }
}

// The CTA merges a combine item. The parts' states are first copied into shared memory (free
// once attend_item is done; the caller's barrier ordered its last reads): as many rows at a
// time as fit with all their parts, or, for a row with more parts than fit, as many parts as
// fit. Every load of a copy is issued before any is waited for (one memory round trip per copy,
// not one per part), and the copy needs almost no registers, so that inlined into the attention
// kernel it costs attend_item none. Then a warp per row merges the parts in increasing order,
// lanes taking a fixed stride of head_dim. The copies read through L2 (cp.async.cg, __ldcg):
// other CTAs of this launch stored the parts, and L1 is not coherent with them.
template <int D, int kSmemBytes>
__device__ __forceinline__ void combine_item(const AttnParams& p, const AttnCombineItem c,
                                             unsigned char* smem) {
  static_assert(D % 4 == 0);
  constexpr int kFloats = kSmemBytes / 4;
  constexpr int kPerLane = (D + 31) / 32;
  float* s_o = reinterpret_cast<float*>(smem);
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int per_row = c.n_parts * (D + 2);
  const bool one_copy = per_row <= kFloats;  // every part of a row in one copy
  const int rows_per_copy = one_copy ? min(c.n_rows, kFloats / per_row) : 1;
  const int parts_per_copy = one_copy ? c.n_parts : kFloats / (D + 2);
  const int q_begin = p.seqs[c.seq].q_begin;
  const int group = p.n_heads / p.n_kv_heads;
  for (int r0 = 0; r0 < c.n_rows; r0 += rows_per_copy) {
    const int rc = min(rows_per_copy, c.n_rows - r0);
    // The state of row r0 + warp; carried from copy to copy only when !one_copy (then rc = 1).
    float m_run = kNegInf, l_run = 0.0f, o[kPerLane];
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) o[i] = 0.0f;
    for (int j0 = 0; j0 < c.n_parts; j0 += parts_per_copy) {
      const int jc = min(parts_per_copy, c.n_parts - j0);
      float* s_ml = s_o + jc * rc * D;  // [jc][rc][2] after [jc][rc][D]
      __syncthreads();                  // the previous copy has been merged
      // Part j's rows r0 .. r0 + rc - 1 are consecutive partial rows.
      for (int e = tid; e < jc * rc * (D / 4); e += kThreads) {
        const int j = e / (rc * (D / 4)), rest = e % (rc * (D / 4));
        const int64_t prow = c.partial + static_cast<int64_t>(j0 + j) * c.n_rows + r0;
        cp_async_16(s_o + j * rc * D + 4 * rest, p.partial_o + prow * D + 4 * rest, true);
      }
      cp_async_commit();
      for (int e = tid; e < jc * rc * 2; e += kThreads) {
        const int j = e / (rc * 2), rest = e % (rc * 2);
        const int64_t prow = c.partial + static_cast<int64_t>(j0 + j) * c.n_rows + r0;
        s_ml[e] = __ldcg(p.partial_ml + prow * 2 + rest);
      }
      cp_async_wait<0>();
      __syncthreads();
      for (int r = warp; r < rc; r += kThreads / 32) {
        if (one_copy) {
          m_run = kNegInf;
          l_run = 0.0f;
#pragma unroll
          for (int i = 0; i < kPerLane; ++i) o[i] = 0.0f;
        }
        for (int j = 0; j < jc; ++j) {
          const float* ml = s_ml + (j * rc + r) * 2;
          const MergeScales ms = merge_scales(m_run, l_run, ml[0], ml[1]);
#pragma unroll
          for (int i = 0; i < kPerLane; ++i) {
            const int d = lane + 32 * i;
            if (d < D) o[i] = merge_value(ms, o[i], s_o[(j * rc + r) * D + d]);
          }
          m_run = ms.m;
          l_run = ms.l;
        }
        if (j0 + jc < c.n_parts) continue;  // more parts of this row in the next copy
        const int packed = c.row_begin + r0 + r;
        const int64_t token = q_begin + packed / group;
        const int head = c.kv_head * group + packed % group;
        uint16_t* dst = p.out + token * p.out_stride + static_cast<int64_t>(head) * p.head_dim;
#pragma unroll
        for (int i = 0; i < kPerLane; ++i) {
          const int d = lane + 32 * i;
          if (d < p.head_dim)
            dst[d] = __bfloat16_as_ushort(__float2bfloat16_rn(__fdiv_rn(o[i], l_run)));
        }
      }
    }
  }
}

// After a CTA stored one part of combine c: counts it, and the CTA that stored the last part
// merges them all (so no second kernel, and no launch, waits for the parts). The fences order
// every thread's stores of its part before the count, and the count before the last CTA's loads.
// kSmemBytes: the kernel's dynamic shared memory, which the merge reuses.
template <int D, int kSmemBytes>
__device__ __forceinline__ void finish_part(const AttnParams& p, int c, int* s_last,
                                            unsigned char* smem) {
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    const int parts = p.combines[c].n_parts;
    *s_last = atomicAdd(p.split_done + c, 1) == parts - 1;
  }
  __syncthreads();
  if (!*s_last) return;  // uniform over the CTA
  __threadfence();
  combine_item<D, kSmemBytes>(p, p.combines[c], smem);
  if (threadIdx.x == 0) p.split_done[c] = 0;  // every part is counted: ready for the next launch
}

// The work items are taken in a grid-stride loop: a CTA per item in eager passes, a fixed grid
// with the counts read from device memory in captured graphs (AttnParams::counts).
template <int D>
__global__ void __launch_bounds__(kThreads, 2) attention_kernel(const AttnParams p) {
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ int s_last;
  pdl_trigger();
  // Before pdl_wait (in attend_item) only what the host uploaded before the pass is read: the
  // counts, items, positions, block tables, and the first tile's keys of earlier positions.
  const int n_narrow = p.counts != nullptr ? p.counts[2] : p.n_narrow;
  const int first = p.n_tall + n_narrow;
  const int n_items = (p.counts != nullptr ? p.counts[0] : p.n_items) - first;
  for (int i = blockIdx.x; i < n_items; i += gridDim.x) {
    if (i != blockIdx.x) __syncthreads();  // the previous item is done with shared memory
    const AttnWorkItem& item = p.items[first + i];
    attend_item<D, false>(p, item, smem);
    const int combine = item.combine;
    if (combine >= 0) finish_part<D, Smem<D>::kBytes>(p, combine, &s_last, smem);
  }
  // Launched after the narrow kernel, this kernel did not wait at its start: it waits now for
  // its predecessor (the narrow kernel, or the tall one, which waited for the narrow one), so
  // that its own completion (which the next kernel's pdl_wait waits for) implies every earlier
  // one's.
  if (p.after_narrow) pdl_wait();
}

// The narrow items, [n_tall, n_tall + n_narrow), launched first. With two K/V stages three CTAs
// an SM (launch bounds and NarrowSmem), against two for the wide kernel: a decode step's
// attention is memory-bound, and more resident CTAs keep more K/V tiles in flight. With four
// (where every item of the pass is narrow and they fit one wave of one CTA an SM) each CTA
// holds its item's next three tiles in flight. A piece of a split tile counts itself, and the
// CTA that stores a tile's last piece merges them (finish_part), as in the wide kernel. Each
// CTA triggers the next
// kernel only after its pdl_wait (in attend_item; a CTA without items waits here), so when the
// next kernel (tall, else wide) starts, everything before this kernel is complete: the tall and
// wide kernels need nothing this kernel writes, so they skip their own wait at the start, and
// their CTAs fill the SMs as this kernel's last wave drains. The tall kernel triggers the wide
// one at its start, which is then after this kernel's CTAs all waited too. Each of the two waits
// at its end instead (the wide kernel in every CTA, the tall one in one), so that the last
// kernel's completion (which the next op's pdl_wait waits for) implies every earlier one's.
template <int D, int kStages>
__global__ void __launch_bounds__(kThreads, kStages == kAttnNarrowStages ? 3 : 1)
    attention_narrow_kernel(const AttnParams p) {
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ int s_last;
  const int n = p.counts != nullptr ? p.counts[2] : p.n_narrow;
  for (int i = blockIdx.x; i < n; i += gridDim.x) {
    if (i != blockIdx.x) __syncthreads();
    const AttnWorkItem item = p.items[p.n_tall + i];  // in registers: the loads re-read it
    attend_item<D, true, kStages>(p, item, smem);
    if (item.combine >= 0)
      finish_part<D, NarrowSmem<D, kStages>::kBytes>(p, item.combine, &s_last, smem);
  }
  if (static_cast<int>(blockIdx.x) >= n) pdl_wait();  // then exits, which counts as a trigger
}

// The tall items, a CTA each. A kernel of its own: the tall path needs every register (and
// spills a little), and in the kernel above its code made the decode items slower (a batch-1
// step's attention 9.9 -> 13.9 us, H200, 2026-12-03). After the narrow kernel where the pass has
// narrow items (decode rows beside long prefill chunks: --cuda-attention-tall mixed), so that
// its CTAs fill the SMs as the narrow kernel's last wave drains instead of the narrow kernel
// waiting for the tall one's last wave.
template <int D>
__global__ void __launch_bounds__(kThreads, 2) attention_tall_kernel(const AttnParams p) {
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ int s_last;
  pdl_trigger();
  for (int i = blockIdx.x; i < p.n_tall; i += gridDim.x) {
    if (i != blockIdx.x) __syncthreads();
    const AttnWorkItem& item = p.items[i];
    attend_tall<D>(p, item, smem);
    if (item.combine >= 0) finish_part<D, Smem<D>::kBytes>(p, item.combine, &s_last, smem);
  }
  // Launched after the narrow kernel, this kernel did not wait for it: one CTA waits now (see
  // attention_narrow_kernel). The grid completes only when that CTA exits, so its completion
  // implies the narrow kernel's, while the other CTAs free their SMs (for more tall items, and
  // for the next kernel's early CTAs) instead of idling in the wait.
  if (p.after_narrow && blockIdx.x == 0) pdl_wait();
}

template <int D, int kStages>
cudaError_t launch_narrow(const AttnParams& p, int grid, cudaStream_t stream) {
  constexpr int kBytes = NarrowSmem<D, kStages>::kBytes;
  static_assert(kBytes <= 227 * 1024, "narrow attention stages do not fit in shared memory");
  cudaError_t e = allow_dynamic_smem<attention_narrow_kernel<D, kStages>>(kBytes, true);
  if (e != cudaSuccess) return e;
  return launch_kernel(attention_narrow_kernel<D, kStages>, grid, kThreads, kBytes, stream, p);
}

template <int D>
cudaError_t launch(const AttnParams& p, cudaStream_t stream) {
  constexpr int kBytes = Smem<D>::kBytes;
  static_assert(kBytes <= 227 * 1024, "attention tile does not fit in shared memory");
  if (p.n_tall < 0 || p.n_narrow < 0 || p.n_tall + p.n_narrow > p.n_items ||
      (p.counts != nullptr && p.n_tall != 0) ||
      (p.counts != nullptr && p.narrow_grid == 0 && p.n_narrow != 0) ||
      (!kNarrowable<D> && p.n_narrow != 0) ||
      (p.narrow_stages != kAttnNarrowStages && p.narrow_stages != kAttnNarrowDeepStages) ||
      (p.counts != nullptr && p.grid == 0 && p.narrow_grid == 0))
    return cudaErrorInvalidValue;
  // The narrow kernel first (a captured graph whose items are all narrow holds it, narrow_grid >
  // 0, and no wide kernel, grid 0; its counts come from the device), then the tall one, then
  // the wide one; the kernels after the narrow one skip their wait at the start and wait at the
  // end (attention_narrow_kernel says why that is safe).
  AttnParams wide = p;
  wide.after_narrow = false;
  if constexpr (kNarrowable<D>) {
    wide.after_narrow = p.counts != nullptr ? p.narrow_grid > 0 : p.n_narrow > 0;
    if (wide.after_narrow) {
      const int grid = p.counts != nullptr ? p.narrow_grid : p.n_narrow;
      const cudaError_t e = p.narrow_stages == kAttnNarrowDeepStages
                                ? launch_narrow<D, kAttnNarrowDeepStages>(p, grid, stream)
                                : launch_narrow<D, kAttnNarrowStages>(p, grid, stream);
      if (e != cudaSuccess) return e;
    }
  }
  if (p.n_tall > 0) {
    cudaError_t e = allow_dynamic_smem<attention_tall_kernel<D>>(kBytes);
    if (e == cudaSuccess)
      e = launch_kernel(attention_tall_kernel<D>, p.n_tall, kThreads, kBytes, stream, wide);
    if (e != cudaSuccess) return e;
  }
  cudaError_t e = allow_dynamic_smem<attention_kernel<D>>(kBytes);
  if (e != cudaSuccess) return e;
  // Eager: one CTA per item. Graph: the fixed grid, counts from the device.
  const int grid = p.counts != nullptr ? p.grid : p.n_items - p.n_tall - p.n_narrow;
  // With PDL: the CTAs launch while the RoPE + KV-write kernel runs and fetch their first tile's
  // old keys meanwhile.
  if (grid == 0) return cudaSuccess;
  return launch_kernel(attention_kernel<D>, grid, kThreads, kBytes, stream, wide);
}

}  // namespace

int attention_head_dim_pad(int head_dim) {
  if (head_dim <= 0 || head_dim % 8 != 0) return 0;
  for (int d : {16, 32, 64, 128})
    if (head_dim <= d) return d;
  return 0;
}

cudaError_t launch_attention(const AttnParams& p, cudaStream_t stream) {
  switch (attention_head_dim_pad(p.head_dim)) {
    case 16:
      return launch<16>(p, stream);
    case 32:
      return launch<32>(p, stream);
    case 64:
      return launch<64>(p, stream);
    case 128:
      return launch<128>(p, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace llm42::cuda
