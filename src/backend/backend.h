// The kernel interface (DESIGN.md §4). One implementation per device: CpuBackend (reference and
// tests) and CudaBackend. The model code (model/transformer.cpp) calls only this interface, so
// the engine, scheduler and verifier run unchanged on either device.
//
// Plan, then run: `begin_pass` receives the host-side description of a forward pass (tokens,
// positions, KV slots, block tables, which rows need logits) and the attention geometry, and
// prepares it once (uploads index arrays, plans attention: the fast schedule's splits); the
// per-layer kernels then only execute that plan.
//
// Every kernel that reduces takes a Schedule (schedule.h). Layouts are row-major; each method
// states its shapes and which dimension it reduces.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend/cuda/options.h"
#include "core/rope_layout.h"
#include "core/schedule.h"
#include "core/tensor.h"

namespace llm42 {

// One sequence's slice of a forward pass. Its tokens occupy rows [q_begin, q_begin + q_len) and
// sit at consecutive absolute positions starting at pos_begin. Its KV cache (every position in
// [0, pos_begin + q_len)) lives in the blocks block_tables[block_begin .. block_begin+n_blocks).
struct PassSeq {
  int32_t q_begin = 0;
  int32_t q_len = 0;
  int32_t pos_begin = 0;
  int32_t block_begin = 0;
  int32_t n_blocks = 0;
  // In a canonical pass: this sequence's values need not be canonical, so its attention runs in
  // the fast lane. Every other kernel treats each row alone (a canonical GEMM's K order does not
  // depend on the other rows), so the pass's other sequences keep their canonical values.
  // Ignored in a fast pass, where everything is fast.
  bool fast_attention = false;
};

// The lane of a sequence's attention in a pass of schedule `pass`.
inline Schedule attention_schedule(Schedule pass, const PassSeq& seq) {
  return entry_lane(pass, seq.fast_attention);
}

// The host-side description of one forward pass.
struct PassInput {
  Schedule schedule = Schedule::kCanonical;
  std::vector<int32_t> tokens;        // (T) input token ids
  std::vector<int32_t> positions;     // (T) absolute positions
  std::vector<int32_t> slots;         // (T) KV slot (block * block_size + offset) written per token
  std::vector<PassSeq> seqs;          // sequences in the pass, in row order
  std::vector<int32_t> block_tables;  // concatenated block ids of all sequences
  std::vector<int32_t> logit_rows;    // (R) rows whose logits are wanted, in output order
  // A decode pass padded to a fixed shape, which a backend with graphs may run as a captured
  // graph (Backend::supports_graphs; model/transformer.cpp).
  bool graph = false;

  int n_tokens() const { return static_cast<int>(tokens.size()); }
  // Checks internal consistency (rows, positions, slots, block coverage); aborts when broken.
  void check(int block_size, int n_blocks) const;
};

// Paged KV cache: per layer, K and V pools of shape (n_blocks, block_size, n_kv_heads, head_dim).
struct KvCache {
  int n_layers = 0;
  int n_blocks = 0;
  int block_size = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  DType dtype = DType::kF32;
  std::vector<Tensor> k;  // per layer
  std::vector<Tensor> v;  // per layer
  size_t bytes() const;
};

// Precomputed RoPE rotation: cos and sin of position * inv_freq[i], computed in double on the
// host and stored as fp32, (max_positions, head_dim / 2) each. Both backends use the same table,
// so RoPE is bitwise identical between them.
struct RopeTable {
  int max_positions = 0;
  int half_dim = 0;
  RopeLayout layout = RopeLayout::kHalf;
  Tensor cos;  // (max_positions, head_dim / 2) f32
  Tensor sin;  // (max_positions, head_dim / 2) f32
};

// Attention geometry of the fused qkv activation: each row is [q (n_heads*head_dim) |
// k (n_kv_heads*head_dim) | v (n_kv_heads*head_dim)].
struct QkvLayout {
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }
  int row() const { return q_dim() + 2 * kv_dim(); }
};

// One row to sample on the device (the sampler of core/sampler.h without penalties, which
// need token history and run on the host). A pure function of (logits row, these fields).
struct SampleRow {
  int32_t logit_row = 0;     // row of the logits tensor
  float temperature = 0.0f;  // 0 = greedy
  int32_t top_k = 0;
  float top_p = 1.0f;
  float min_p = 0.0f;
  uint64_t seed = 0;
  int64_t position = 0;      // absolute position of the sampled token (the noise counter)
  int32_t top_logprobs = 0;  // alternatives to return, at most kMaxTopLogprobs
  // >= 0: nothing is drawn; the result is this token with its logprob and rank (a prompt
  // token's logprob: the same arithmetic as a drawn token's).
  int32_t score_token = -1;
};

inline constexpr int kMaxTopLogprobs = 20;

struct SampleResult {
  int32_t token = -1;
  float logprob = 0.0f;  // log_softmax of the raw logits at token
  int32_t rank = 0;      // score rows: 1 + the ids with a larger logit; 0 otherwise
  int32_t n_top = 0;
  int32_t top_ids[kMaxTopLogprobs] = {};
  float top_logprobs[kMaxTopLogprobs] = {};
};

// A forward pass captured by a backend with graphs (CUDA graphs), replayed for later passes of
// the same shape (Backend::replay).
class PassGraph {
 public:
  virtual ~PassGraph() = default;
};

// How dummy weights are drawn (deterministic from the seed and the tensor's index).
enum class RandomInit { kNormal, kOnesNoise, kBias };

// Where a tensor sits in the larger tensor its random values are drawn for: element (i, j) of
// a (rows, cols) destination is element offset + i * full_cols + j of the full tensor (a
// tensor-parallel shard of a weight draws the values of the whole weight's elements it holds,
// so dummy weights are the same model at every TP size). The default: the tensor is the whole.
struct RandomWindow {
  int64_t offset = 0;
  int64_t cols = 0;       // the destination's row length; 0: contiguous from `offset`
  int64_t full_cols = 0;  // the full tensor's row length
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual Device device() const = 0;
  // Identifies the kernels a canonical value depends on, for system_fingerprint.
  virtual std::string kernel_id() const = 0;
  // Activations are kept in this dtype between kernels (f32 on CPU, bf16 on CUDA).
  virtual DType activation_dtype() const = 0;

  // ---- memory -----------------------------------------------------------------------------
  virtual void* allocate(size_t bytes) = 0;
  virtual void deallocate(void* p) = 0;
  virtual void copy_to_device(void* dst, const void* src, size_t bytes) = 0;
  virtual void copy_to_host(void* dst, const void* src, size_t bytes) = 0;
  virtual void synchronize() = 0;
  // Bytes free for the KV cache after weights and workspaces (CPU: a fraction of free RAM).
  virtual size_t free_memory() const = 0;

  // Converts a host tensor (f32, f16 or bf16) into device memory of dtype `to` (round to nearest
  // even), writing into `dst` which must have the same element count.
  virtual void upload_convert(const void* src, DType from, const Tensor& dst) = 0;
  // Fills `dst` with deterministic pseudo-random values: kNormal ~ N(0, scale^2), kOnesNoise ~
  // 1 + scale * N(0,1), kBias ~ scale * N(0,1); element i of the full tensor (RandomWindow)
  // depends only on (seed, i).
  virtual void fill_random(const Tensor& dst, uint64_t seed, RandomInit init, float scale,
                           const RandomWindow& window = {}) = 0;

  // ---- tensor parallelism (DESIGN.md §7; parallel/) ---------------------------------------
  // Makes this backend's device the calling thread's (a rank's thread calls it before work).
  virtual void bind_thread() {}
  // Copies between two device allocations, in stream order (another rank's on the same device
  // or host included).
  virtual void copy_device(void* dst, const void* src, size_t bytes) = 0;
  // `rows` rows of `width` bytes from src (row pitch spitch) to dst (row pitch dpitch).
  virtual void copy_device_2d(void* dst, size_t dpitch, const void* src, size_t spitch,
                              size_t width, size_t rows) = 0;

  // ---- plan --------------------------------------------------------------------------------
  // Prepares the pass once, completely: uploads its index arrays and plans its attention for
  // `layout` in the pass's schedule (CUDA: the work items and combines, in the same upload), so
  // the per-layer kernels only execute the plan. A QkvLayout of no heads: a pass without
  // attention (kernel tests); an attention call with another layout or schedule than planned
  // plans again (tests and labs).
  virtual void begin_pass(const PassInput& pass, const KvCache& cache, const QkvLayout& layout) = 0;

  // ---- graphs (decode passes replayed as captured CUDA graphs) -------------------------------
  // A backend with graphs runs the kernels of a pass shape recorded once instead of launching
  // them one by one. Their inputs must then sit at fixed addresses: begin_graph_pass (instead of
  // begin_pass) uploads the pass and its attention plan, made here for `layout`, into buffers
  // that keep their address; then either replay() runs a capture of this shape, or the caller
  // launches the kernels eagerly (for this pass's results) and capture() records them again.
  virtual bool supports_graphs() const { return false; }
  virtual void begin_graph_pass(const PassInput& pass, const KvCache& cache,
                                const QkvLayout& layout);
  // Records, without running them, the kernels that `launch` issues.
  virtual std::unique_ptr<PassGraph> capture(const std::function<void()>& launch);
  // Runs a capture on the pass of the last begin_graph_pass. Returns false, having run
  // nothing, when a buffer the capture uses was reallocated after it was made.
  virtual bool replay(const PassGraph& graph);
  // Which capture of its shape the pass of the last begin_graph_pass needs: a plan may choose
  // among kernel variants, and a capture fixes one. Captures are kept per variant.
  virtual int graph_variant() const { return 0; }

  // ---- kernels (all use the pass given to begin_pass) --------------------------------------
  // out[t, :] = table[tokens[t] - vocab_begin, :] for the tokens in [vocab_begin, vocab_begin +
  // rows); -0.0 for the others, so that the sum of every vocabulary shard's output is exactly
  // the owner's row (x + -0.0 == x for every x, +0.0 and -0.0 included).
  // table (rows, dim), out (T, dim)
  virtual void embedding(const Tensor& table, int64_t vocab_begin, const Tensor& out) = 0;

  // out = x / sqrt(mean(x^2) + eps) * w, reducing over dim per row.  x, out (T, dim), w (dim)
  virtual void rmsnorm(const Tensor& x, const Tensor& w, float eps, const Tensor& out,
                       Schedule s) = 0;

  // residual += delta; out = rmsnorm(residual) * w.   residual, delta, out (T, dim); out may
  // alias delta.
  virtual void add_rmsnorm(const Tensor& residual, const Tensor& delta, const Tensor& w, float eps,
                           const Tensor& out, Schedule s) = 0;

  // out = x @ w^T (+ bias), reducing over K.   x (M, K), w (N, K), bias (N) f32 or empty,
  // out (M, N) in the activation dtype or f32.
  virtual void matmul(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& out,
                      Schedule s) = 0;
  // The canonical lane's row-parallel GEMM (DESIGN.md §2, §7): out (M, N) = x (M, K) @
  // w (N, K)^T with K cut at `leaves` (ascending offsets from 0 to K; 1, 2, 4 or 8 leaves):
  // each leaf reduced over its K range in the canonical order of `matmul`'s canonical lane,
  // into fp32, and the leaves summed along the binary tree ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7))
  // in fp32. The order is a function of (N, leaves) alone. out f32 holds the fp32 sum (a rank's
  // subtree); out in an activation dtype other than f32 (bf16 on CUDA) holds it rounded once,
  // the same bits as sum_parts of the f32 result (the whole tree at TP 1, in one step).
  virtual void matmul_leaves(const Tensor& x, const Tensor& w, const std::vector<int64_t>& leaves,
                             const Tensor& out) = 0;
  // out (M, N) = the parts (P, M, N) summed along the binary tree ((p0+p1)+(p2+p3))+... (P 1, 2,
  // 4 or 8) in fp32, rounded once to out's dtype. parts f32 or the activation dtype.
  virtual void sum_parts(const Tensor& parts, const Tensor& out) = 0;

  // The M values, ascending and up to `limit` (included), whose first canonical matmul may pick
  // kernels for a range of M (the CUDA backend's autotune per M bucket): Transformer::warm_up
  // makes those calls at start. Default: 1, 2, 4, ... and limit.
  virtual std::vector<int> matmul_tuning_sizes(int limit) const;

  // Qwen3: RMSNorm over each head's head_dim values of q and k inside qkv, in place.
  // qkv (T, layout.row()), q_w, k_w (head_dim)
  virtual void qk_norm(const Tensor& qkv, const QkvLayout& layout, const Tensor& q_w,
                       const Tensor& k_w, float eps, Schedule s) = 0;

  // Rotates q and k inside qkv by the pass positions, in place, then writes the rotated k and
  // v of each pass token into its KV slot of `layer` (tokens with slot < 0 are padding: not
  // written).  qkv (T, layout.row())
  virtual void rope_kv_write(const Tensor& qkv, const QkvLayout& layout, const RopeTable& table,
                             const KvCache& cache, int layer) = 0;

  // Causal attention of each pass query over its sequence's KV cache (positions [0, pos]),
  // grouped-query: query head h reads KV head h / (n_heads / n_kv_heads). Reduces over key
  // positions. Canonical: keys in fixed tiles aligned to absolute positions, combined in order.
  // `s` is the pass's schedule; each sequence runs in attention_schedule(s, seq)'s lane.
  // qkv (T, layout.row()), out (T, n_heads * head_dim)
  virtual void attention(const Tensor& qkv, const QkvLayout& layout, const KvCache& cache,
                         int layer, const Tensor& out, Schedule s) = 0;

  // out = silu(gate) * up where gate_up = [gate (F) | up (F)] per row.  gate_up (T, 2F), out (T, F)
  virtual void swiglu(const Tensor& gate_up, const Tensor& out) = 0;

  // out[r, :] = x[logit_rows[r], :].   x (T, dim), out (R, dim)
  virtual void gather_logit_rows(const Tensor& x, const Tensor& out) = 0;

  // Samples each row of `logits` (R, vocab) f32 as core/sampler.h specifies (greedy argmax
  // with ties to the lowest id; Gumbel-max over top-k, top-p, min-p with counter-based noise;
  // logprobs of log_softmax(raw logits)); reduces over the vocabulary, one fixed order per row.
  // Results land in `out` (host), one per row, in order.
  virtual void sample(const Tensor& logits, const std::vector<SampleRow>& rows,
                      std::vector<SampleResult>& out) = 0;
};

// Owns a device allocation of one backend.
class Buffer {
 public:
  Buffer() = default;
  Buffer(Backend& b, size_t bytes) : backend_(&b), bytes_(bytes) {
    ptr_ = bytes ? b.allocate(bytes) : nullptr;
  }
  ~Buffer() { reset(); }
  Buffer(Buffer&& o) noexcept : backend_(o.backend_), ptr_(o.ptr_), bytes_(o.bytes_) {
    o.ptr_ = nullptr;
  }
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      reset();
      backend_ = o.backend_;
      ptr_ = o.ptr_;
      bytes_ = o.bytes_;
      o.ptr_ = nullptr;
    }
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void* get() const { return ptr_; }
  size_t bytes() const { return bytes_; }
  void reset() {
    if (ptr_ != nullptr) backend_->deallocate(ptr_);
    ptr_ = nullptr;
  }

 private:
  Backend* backend_ = nullptr;
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

struct BackendOptions {
  std::string device = "cpu";           // "cpu" or "cuda" (or "cuda:N")
  int threads = 0;                      // CPU: 0 = all cores
  bool round_activations_bf16 = false;  // CPU: mirror the GPU's bf16 activations
  CudaOptions cuda;                     // CUDA only (backend/cuda/options.h)
};

// Checks the options that do not need a device (every backend: a bad CUDA option fails on the
// CPU too), naming the flag.
void check_backend_options(const BackendOptions& opts);
// check_backend_options, then makes the backend.
std::unique_ptr<Backend> make_backend(const BackendOptions& opts);

}  // namespace llm42
