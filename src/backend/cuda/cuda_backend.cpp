#include "backend/cuda/cuda_backend.h"

#include <cublasLt.h>

#include <algorithm>
#include <bit>
#include <cctype>
#include <cmath>
#include <cstring>

#include "backend/cuda/check.h"
#include "util/error.h"
#include "util/log.h"

namespace llm42 {
namespace {

// Headroom kept out of free_memory() for workspaces that grow with the pass (pass arrays,
// attention plans, bias temporaries, sampling sort buffers).
constexpr size_t kReserveBytes = 512ull << 20;
constexpr size_t kConvertChunkBytes = 64ull << 20;
// Partial attention states for split key pieces: fp32 O (head_dim_pad floats per row) and
// (max, sum) per row, sized for 65536 rows of 128 dims (more rows for smaller heads).
constexpr size_t kPartialOBytes = 32ull << 20;
constexpr size_t kPartialMlBytes = kPartialOBytes / (16 * sizeof(float)) * 2 * sizeof(float);
constexpr int kSortRowsPerChunk = 32;

constexpr double kMiB = 1024.0 * 1024.0;

size_t pad4(size_t n) { return (n + 3) / 4 * 4; }

void check_tensor(const Tensor& t, DType dtype, const char* what) {
  LLM42_ASSERT(t.device == Device::kCUDA && t.dtype == dtype,
               "{} must be a CUDA {} tensor, got {} {}", what, dtype_name(dtype),
               device_name(t.device), dtype_name(t.dtype));
}

uint16_t* bf16_ptr(const Tensor& t) { return static_cast<uint16_t*>(t.data); }

std::string device_tag(const cudaDeviceProp& prop) {
  std::string tag;
  for (const char* c = prop.name; *c != '\0'; ++c)
    tag += std::isalnum(static_cast<unsigned char>(*c)) ? static_cast<char>(std::tolower(*c)) : '_';
  return fmt::format("{}-sm{}{}-{}sm", tag, prop.major, prop.minor, prop.multiProcessorCount);
}

}  // namespace

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error for later calls
    return 0;
  }
  return n;
}

std::unique_ptr<Backend> make_cuda_backend(const BackendOptions& opts, int ordinal) {
  const int n = cuda_device_count();
  if (ordinal < 0 || ordinal >= n)
    fail("--device {}: no CUDA device {} (found {})", opts.device, ordinal, n);
  return std::make_unique<CudaBackend>(opts, ordinal);
}

CudaBackend::CudaBackend(const BackendOptions& opts, int ordinal)
    : ordinal_(ordinal), memory_fraction_(opts.cuda.memory_fraction) {
  check_cuda_options(opts.cuda);
  cuda::set_programmatic_launch(opts.cuda.programmatic_launch);
  tall_policy_ = parse_attention_tall(opts.cuda.attention_tall);
  LLM42_CUDA_CHECK(cudaSetDevice(ordinal_));
  cudaDeviceProp prop{};
  LLM42_CUDA_CHECK(cudaGetDeviceProperties(&prop, ordinal_));
  device_name_ = prop.name;
  sm_count_ = prop.multiProcessorCount;
  cc_major_ = prop.major;
  cc_minor_ = prop.minor;
  if (cc_major_ != 9)
    fail(
        "--device {}: {} is compute capability {}.{}; this build of llm42 has kernels for "
        "sm_90a (Hopper) only",
        opts.device, device_name_, cc_major_, cc_minor_);
  size_t free_b = 0;
  LLM42_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_memory_));
  LLM42_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  LLM42_CUDA_CHECK(cudaEventCreateWithFlags(&staging_free_, cudaEventDisableTiming));
  graph_io_.in_graphs = bias_tmp_.in_graphs = leaf_parts_.in_graphs = true;
  gemm_ = std::make_unique<cuda::GemmRunner>(stream_, device_tag(prop), opts.cuda.canonical_skinny,
                                             opts.cuda.canonical_m_step);
  gemm_->set_fused_tree(opts.cuda.fused_tree);
  used_ += gemm_->workspace_bytes();
  ensure(partial_o_, kPartialOBytes);
  ensure(partial_ml_, kPartialMlBytes);
  // A combine merges at least two partial rows: this many counters serve any plan. Zero now;
  // the attention kernel leaves them at zero after every launch.
  ensure(split_done_, kPartialMlBytes / (2 * sizeof(float)) / 2 * sizeof(int32_t));
  LLM42_CUDA_CHECK(cudaMemsetAsync(split_done_.ptr, 0, split_done_.bytes, stream_));
  log_info(
      "CUDA device {}: {} ({} SMs, {:.1f} GiB, {:.1f} GiB free), memory fraction {}, gemm "
      "cache {}",
      ordinal_, device_name_, sm_count_, static_cast<double>(total_memory_) / (1 << 30),
      static_cast<double>(free_b) / (1 << 30), memory_fraction_, gemm_->cache_path());
}

CudaBackend::~CudaBackend() {
  cudaStreamSynchronize(stream_);
  for (Workspace* w : {&pass_buf_, &plan_buf_, &graph_io_, &partial_o_, &partial_ml_, &split_done_,
                       &convert_buf_, &bias_tmp_, &sample_rows_, &sample_out_, &sort_keys_,
                       &sort_ids_, &sort_offsets_, &sort_temp_})
    device_free(w->ptr);
  gemm_.reset();
  if (staging_ != nullptr) cudaFreeHost(staging_);
  cudaEventDestroy(staging_free_);
  cudaStreamDestroy(stream_);
}

std::string CudaBackend::kernel_id() const {
  return fmt::format("cuda-sm{}{}-attn-t{}c{}-tree8-cublasLt{}", cc_major_, cc_minor_,
                     cuda::kAttnKeyTile, cuda::kCanonicalChunk, cublasLtGetVersion());
}

// ---- memory ---------------------------------------------------------------------------------

void* CudaBackend::device_alloc(size_t bytes, const char* what) {
  if (bytes == 0) return nullptr;
  const double allowed = memory_fraction_ * static_cast<double>(total_memory_);
  if (static_cast<double>(used_ + bytes) > allowed)
    fail(
        "CUDA: allocating {:.1f} MiB for {} would exceed the GPU memory fraction {} of {} "
        "({:.1f} MiB of {:.1f} MiB allowed are already in use by llm42)",
        bytes / kMiB, what, memory_fraction_, device_name_, used_ / kMiB, allowed / kMiB);
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, bytes);
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    fail(
        "CUDA: out of memory allocating {:.1f} MiB for {} on {}: {:.1f} MiB free of {:.1f} MiB "
        "total ({:.1f} MiB in use by llm42)",
        bytes / kMiB, what, device_name_, free_b / kMiB, total_b / kMiB, used_ / kMiB);
  }
  LLM42_CUDA_CHECK(e);
  allocations_[p] = bytes;
  used_ += bytes;
  return p;
}

void CudaBackend::device_free(void* p) {
  if (p == nullptr) return;
  auto it = allocations_.find(p);
  LLM42_ASSERT(it != allocations_.end(), "freeing a pointer this backend did not allocate");
  used_ -= it->second;
  allocations_.erase(it);
  LLM42_CUDA_CHECK(cudaFree(p));
}

void* CudaBackend::allocate(size_t bytes) { return device_alloc(bytes, "a tensor"); }
void CudaBackend::deallocate(void* p) { device_free(p); }

void CudaBackend::ensure(Workspace& w, size_t bytes) {
  if (w.bytes >= bytes) return;
  LLM42_CUDA_CHECK(cudaStreamSynchronize(stream_));  // the old buffer may still be in use
  device_free(w.ptr);
  const size_t grown = std::max(bytes, w.bytes + w.bytes / 2);
  w.ptr = device_alloc(grown, "a workspace");
  w.bytes = grown;
  if (w.in_graphs) ++epoch_;  // captured graphs may point at the old buffer
}

unsigned char* CudaBackend::staging(size_t bytes) {
  LLM42_CUDA_CHECK(cudaEventSynchronize(staging_free_));
  if (bytes > staging_bytes_) {
    if (staging_ != nullptr) LLM42_CUDA_CHECK(cudaFreeHost(staging_));
    staging_bytes_ = std::max<size_t>({bytes, 2 * staging_bytes_, 1 << 20});
    LLM42_CUDA_CHECK(cudaMallocHost(&staging_, staging_bytes_));
  }
  return staging_;
}

void CudaBackend::upload(Workspace& dst, size_t bytes) {
  ensure(dst, bytes);
  LLM42_CUDA_CHECK(cudaMemcpyAsync(dst.ptr, staging_, bytes, cudaMemcpyHostToDevice, stream_));
  LLM42_CUDA_CHECK(cudaEventRecord(staging_free_, stream_));
}

void CudaBackend::copy_to_device(void* dst, const void* src, size_t bytes) {
  LLM42_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
  LLM42_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackend::copy_to_host(void* dst, const void* src, size_t bytes) {
  LLM42_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
  LLM42_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackend::synchronize() { LLM42_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

size_t CudaBackend::free_memory() const {
  size_t free_b = 0, total_b = 0;
  LLM42_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  const double allowed = memory_fraction_ * static_cast<double>(total_b);
  const double left = std::min(static_cast<double>(free_b), allowed - static_cast<double>(used_)) -
                      static_cast<double>(kReserveBytes);
  return left > 0.0 ? static_cast<size_t>(left) : 0;
}

void CudaBackend::upload_convert(const void* src, DType from, const Tensor& dst) {
  LLM42_ASSERT(dst.device == Device::kCUDA);
  LLM42_ASSERT(from == DType::kF32 || from == DType::kF16 || from == DType::kBF16,
               "cannot convert from {}", dtype_name(from));
  const int64_t n = dst.numel();
  if (from == dst.dtype) {
    copy_to_device(dst.data, src, dst.nbytes());
    return;
  }
  const size_t in_size = dtype_size(from), out_size = dtype_size(dst.dtype);
  const int64_t chunk = static_cast<int64_t>(kConvertChunkBytes / in_size);
  ensure(convert_buf_, static_cast<size_t>(std::min(n, chunk)) * in_size);
  for (int64_t off = 0; off < n; off += chunk) {
    const int64_t cnt = std::min(chunk, n - off);
    // The copy from pageable memory returns once the data is staged; the stream orders the
    // kernel after it and the next chunk's copy after the kernel.
    LLM42_CUDA_CHECK(cudaMemcpyAsync(convert_buf_.ptr,
                                     static_cast<const unsigned char*>(src) + off * in_size,
                                     cnt * in_size, cudaMemcpyHostToDevice, stream_));
    LLM42_CUDA_CHECK(cuda::launch_convert(convert_buf_.ptr, from,
                                          static_cast<unsigned char*>(dst.data) + off * out_size,
                                          dst.dtype, cnt, stream_));
  }
  LLM42_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackend::fill_random(const Tensor& dst, uint64_t seed, RandomInit init, float scale,
                              const RandomWindow& window) {
  LLM42_ASSERT(dst.device == Device::kCUDA &&
               (dst.dtype == DType::kF32 || dst.dtype == DType::kBF16));
  LLM42_CUDA_CHECK(cuda::launch_fill_random(dst.data, dst.dtype, dst.numel(), seed,
                                            init == RandomInit::kOnesNoise, scale, window.offset,
                                            window.cols, window.full_cols, stream_));
}

void CudaBackend::bind_thread() { LLM42_CUDA_CHECK(cudaSetDevice(ordinal_)); }

void CudaBackend::copy_device(void* dst, const void* src, size_t bytes) {
  LLM42_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream_));
}

void CudaBackend::copy_device_2d(void* dst, size_t dpitch, const void* src, size_t spitch,
                                 size_t width, size_t rows) {
  if (rows == 0 || width == 0) return;
  LLM42_CUDA_CHECK(
      cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, rows, cudaMemcpyDefault, stream_));
}

// ---- plan -----------------------------------------------------------------------------------

namespace {
size_t align16(size_t bytes) { return (bytes + 15) / 16 * 16; }
}  // namespace

void CudaBackend::begin_pass(const PassInput& pass, const KvCache& cache, const QkvLayout& layout) {
  pass.check(cache.block_size, cache.n_blocks);
  pass_ = pass;
  plan_valid_ = false;
  graph_pass_ = false;
  const size_t t = pass.tokens.size(), r = pass.logit_rows.size(), b = pass.block_tables.size(),
               s = pass.seqs.size();
  PassOffsets o{};
  o.tokens = 0;
  o.positions = pad4(t);
  o.slots = o.positions + pad4(t);
  o.logit_rows = o.slots + pad4(t);
  o.block_tables = o.logit_rows + pad4(r);
  o.seqs = o.block_tables + pad4(b);
  // The pass's index arrays, then its attention plan (the work items, then the combines), in
  // one upload.
  const size_t plan_at = align16((o.seqs + 4 * s) * sizeof(int32_t));
  cuda::AttnPlan plan;
  if (layout.n_heads > 0) plan = make_attention_plan(layout, pass.schedule);
  const size_t items_bytes = plan.items.size() * sizeof(cuda::AttnWorkItem);
  const size_t total = plan_at + items_bytes + plan.combines.size() * sizeof(cuda::AttnCombineItem);
  unsigned char* h = staging(total);
  write_pass(pass, o, reinterpret_cast<int32_t*>(h));
  std::memcpy(h + plan_at, plan.items.data(), items_bytes);
  std::memcpy(h + plan_at + items_bytes, plan.combines.data(), total - plan_at - items_bytes);
  upload(pass_buf_, total);
  point_at(static_cast<const int32_t*>(pass_buf_.ptr), o);
  d_plan_ = static_cast<const unsigned char*>(pass_buf_.ptr) + plan_at;
}

void CudaBackend::write_pass(const PassInput& pass, const PassOffsets& o, int32_t* h) {
  std::copy(pass.tokens.begin(), pass.tokens.end(), h + o.tokens);
  std::copy(pass.positions.begin(), pass.positions.end(), h + o.positions);
  std::copy(pass.slots.begin(), pass.slots.end(), h + o.slots);
  std::copy(pass.logit_rows.begin(), pass.logit_rows.end(), h + o.logit_rows);
  std::copy(pass.block_tables.begin(), pass.block_tables.end(), h + o.block_tables);
  for (size_t i = 0; i < pass.seqs.size(); ++i) {
    const PassSeq& q = pass.seqs[i];
    const cuda::AttnSeq a{q.q_begin, q.q_len, q.pos_begin, q.block_begin};
    std::memcpy(h + o.seqs + 4 * i, &a, sizeof a);
  }
}

void CudaBackend::point_at(const int32_t* d, const PassOffsets& o) {
  d_tokens_ = d + o.tokens;
  d_positions_ = d + o.positions;
  d_slots_ = d + o.slots;
  d_logit_rows_ = d + o.logit_rows;
  d_block_tables_ = d + o.block_tables;
  d_seqs_ = reinterpret_cast<const cuda::AttnSeq*>(d + o.seqs);
}

bool CudaBackend::graph_narrow_only(const QkvLayout& layout) const {
  // A graph pass holds decode rows only (begin_graph_pass checks): one row tile of `group` rows
  // a sequence and KV head, whole or in pieces. A pure function of the layout, so capture and
  // replays agree.
  return narrow_ && layout.n_heads / layout.n_kv_heads <= cuda::kAttnNarrowMaxRows &&
         cuda::attn_narrowable(cuda::attention_head_dim_pad(layout.head_dim));
}


cuda::AttnPlan CudaBackend::make_attention_plan(const QkvLayout& layout, Schedule s) {
  cuda::AttnPlanRequest req;
  req.schedule = s;
  req.policy = split_policy_;
  req.tall = graph_pass_ ? cuda::TallPolicy::kNever : tall_policy_;
  req.narrow = narrow_ && (!graph_pass_ || graph_narrow_only(layout));
  // Not tied to narrow_: a test or lab that turns narrow items off keeps the same pieces (and
  // fast-lane bits).
  req.deep_pieces = true;
  req.n_heads = layout.n_heads;
  req.n_kv_heads = layout.n_kv_heads;
  req.sm_count = sm_count_;
  const int d_pad = cuda::attention_head_dim_pad(layout.head_dim);
  req.head_dim_pad = d_pad;
  req.partial_capacity = static_cast<int64_t>(std::min(partial_o_.bytes / (sizeof(float) * d_pad),
                                                       partial_ml_.bytes / (2 * sizeof(float))));
  cuda::AttnPlan plan = cuda::plan_attention(pass_, req);
  n_items_ = static_cast<int>(plan.items.size());
  n_tall_ = plan.n_tall;
  n_narrow_ = plan.n_narrow;
  // Four stages at one CTA an SM where the narrow items fit one wave of it (a batch-1 step's
  // canonical chunks: each item's tiles load at once); else two at three CTAs an SM (a B 8 step
  // at context 4096 has 1,024 canonical chunk items: 10.16 ms a step deep, H100).
  // Only where every item is narrow: no wide or tall CTA fits beside a deep one on an SM.
  narrow_deep_ = narrow_stages_ != 0
                     ? narrow_stages_ == cuda::kAttnNarrowDeepStages
                     : n_narrow_ > 0 && n_narrow_ == n_items_ && n_narrow_ <= sm_count_;
  n_combines_ = static_cast<int>(plan.combines.size());
  last_plan_stats_ = {n_items_, n_combines_, plan.partial_rows, n_tall_, n_narrow_};
  plan_valid_ = true;
  plan_schedule_ = s;
  plan_heads_ = layout.n_heads;
  plan_kv_heads_ = layout.n_kv_heads;
  return plan;
}

void CudaBackend::prepare_attention(const QkvLayout& layout, Schedule s) {
  if (plan_valid_ && plan_schedule_ == s && plan_heads_ == layout.n_heads &&
      plan_kv_heads_ == layout.n_kv_heads)
    return;
  const cuda::AttnPlan plan = make_attention_plan(layout, s);
  const size_t items_bytes = plan.items.size() * sizeof(cuda::AttnWorkItem);
  const size_t bytes = items_bytes + plan.combines.size() * sizeof(cuda::AttnCombineItem);
  unsigned char* h = staging(bytes);
  std::memcpy(h, plan.items.data(), items_bytes);
  std::memcpy(h + items_bytes, plan.combines.data(), bytes - items_bytes);
  upload(plan_buf_, bytes);
  d_plan_ = static_cast<const unsigned char*>(plan_buf_.ptr);
}

// ---- graphs ---------------------------------------------------------------------------------

namespace {

class CudaPassGraph final : public PassGraph {
 public:
  CudaPassGraph(cudaGraphExec_t exec, uint64_t epoch) : exec_(exec), epoch_(epoch) {}
  ~CudaPassGraph() override { cudaGraphExecDestroy(exec_); }
  CudaPassGraph(const CudaPassGraph&) = delete;
  CudaPassGraph& operator=(const CudaPassGraph&) = delete;
  cudaGraphExec_t exec() const { return exec_; }
  uint64_t epoch() const { return epoch_; }

 private:
  cudaGraphExec_t exec_;
  uint64_t epoch_;
};

}  // namespace

void CudaBackend::begin_graph_pass(const PassInput& pass, const KvCache& cache,
                                   const QkvLayout& layout) {
  pass.check(cache.block_size, cache.n_blocks);
  // Decode rows only (PassInput::graph): graph_narrow_only relies on it.
  LLM42_ASSERT(std::all_of(pass.seqs.begin(), pass.seqs.end(),
                           [](const PassSeq& sq) { return sq.q_len == 1; }),
               "a graph pass holds a sequence of more than one query row");
  pass_ = pass;
  plan_valid_ = false;
  graph_pass_ = true;
  const cuda::AttnPlan plan = make_attention_plan(layout, pass.schedule);
  LLM42_ASSERT(!graph_narrow_only(layout) || plan.n_narrow == static_cast<int>(plan.items.size()),
               "a graph pass without its wide attention kernel has wide items");
  // A capture holds one attention kernel, narrow or wide, in one form: graph_variant().
  graph_variant_ = (graph_narrow_only(layout) ? 2 : 0) + (narrow_deep_ ? 1 : 0);

  // Grow the capacities (from sizes that hold 256 rows of 2K-position sequences, then
  // geometrically, so that a run settles at once); a change moves offsets, so graphs made
  // before it are stale.
  const int64_t t = pass.n_tokens(), r = static_cast<int64_t>(pass.logit_rows.size());
  GraphCaps need = graph_caps_;
  if (need.rows == 0) need = GraphCaps{256, 256 * 128, 8192, 4096};
  auto grow = [](int64_t& cap, int64_t want) {
    if (want > cap) cap = std::max(want, 2 * cap);
  };
  grow(need.rows, std::max({t, r, static_cast<int64_t>(pass.seqs.size())}));
  grow(need.block_table, static_cast<int64_t>(pass.block_tables.size()));
  grow(need.items, n_items_);
  grow(need.combines, n_combines_);
  if (!(need == graph_caps_)) {
    graph_caps_ = need;
    ++epoch_;
  }
  // Layout: counts (4 int32: items, combines, narrow items, unused), tokens, positions, slots,
  // logit rows (rows each), seqs (4 int32 per row), block table; then the work items and the
  // combines, 16-byte aligned.
  const GraphCaps& c = graph_caps_;
  PassOffsets o{};
  o.tokens = 4;
  o.positions = o.tokens + c.rows;
  o.slots = o.positions + c.rows;
  o.logit_rows = o.slots + c.rows;
  o.seqs = o.logit_rows + c.rows;
  o.block_tables = o.seqs + 4 * c.rows;
  const size_t items_at = align16((o.block_tables + c.block_table) * sizeof(int32_t));
  const size_t combines_at = align16(items_at + c.items * sizeof(cuda::AttnWorkItem));
  const size_t total = combines_at + c.combines * sizeof(cuda::AttnCombineItem);
  const size_t used = combines_at + plan.combines.size() * sizeof(cuda::AttnCombineItem);

  unsigned char* h = staging(used);
  auto* hi = reinterpret_cast<int32_t*>(h);
  hi[0] = n_items_;
  hi[1] = n_combines_;
  hi[2] = n_narrow_;
  write_pass(pass, o, hi);
  std::memcpy(h + items_at, plan.items.data(), plan.items.size() * sizeof(cuda::AttnWorkItem));
  std::memcpy(h + combines_at, plan.combines.data(),
              plan.combines.size() * sizeof(cuda::AttnCombineItem));
  ensure(graph_io_, total);
  // Only the used part travels; the rest of each region is never read (the counts bound it).
  LLM42_CUDA_CHECK(cudaMemcpyAsync(graph_io_.ptr, staging_, used, cudaMemcpyHostToDevice, stream_));
  LLM42_CUDA_CHECK(cudaEventRecord(staging_free_, stream_));

  const auto* d = static_cast<const int32_t*>(graph_io_.ptr);
  d_attn_counts_ = d;
  point_at(d, o);
  const auto* base = static_cast<const unsigned char*>(graph_io_.ptr);
  d_graph_items_ = reinterpret_cast<const cuda::AttnWorkItem*>(base + items_at);
  d_graph_combines_ = reinterpret_cast<const cuda::AttnCombineItem*>(base + combines_at);
}

std::unique_ptr<PassGraph> CudaBackend::capture(const std::function<void()>& launch) {
  LLM42_ASSERT(graph_pass_, "capture without begin_graph_pass");
  const uint64_t epoch = epoch_;
  LLM42_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
  cudaGraph_t graph = nullptr;
  try {
    launch();
  } catch (...) {
    cudaStreamEndCapture(stream_, &graph);
    if (graph != nullptr) cudaGraphDestroy(graph);
    cudaGetLastError();
    throw;
  }
  LLM42_CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
  LLM42_ASSERT(epoch_ == epoch, "a workspace was reallocated while a graph was being captured");
  cudaGraphExec_t exec = nullptr;
  const cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  LLM42_CUDA_CHECK(e);
  return std::make_unique<CudaPassGraph>(exec, epoch);
}

bool CudaBackend::replay(const PassGraph& graph) {
  LLM42_ASSERT(graph_pass_, "replay without begin_graph_pass");
  const auto& g = static_cast<const CudaPassGraph&>(graph);
  if (g.epoch() != epoch_) return false;
  LLM42_CUDA_CHECK(cudaGraphLaunch(g.exec(), stream_));
  return true;
}

// ---- kernels --------------------------------------------------------------------------------

namespace {
void check_norm_dim(int64_t dim) {
  if (dim > cuda::kMaxNormDim)
    fail("CUDA RMSNorm: rows of {} elements are longer than the kernel takes ({})", dim,
         cuda::kMaxNormDim);
}
}  // namespace

void CudaBackend::embedding(const Tensor& table, int64_t vocab_begin, const Tensor& out) {
  check_tensor(out, DType::kBF16, "embedding output");
  LLM42_ASSERT(table.device == Device::kCUDA &&
               (table.dtype == DType::kBF16 || table.dtype == DType::kF32));
  LLM42_CUDA_CHECK(cuda::launch_embedding(table.data, table.dtype, vocab_begin, table.dim(0),
                                          d_tokens_, pass_.n_tokens(),
                                          static_cast<int>(table.dim(1)), bf16_ptr(out), stream_));
}

void CudaBackend::rmsnorm(const Tensor& x, const Tensor& w, float eps, const Tensor& out,
                          Schedule) {
  check_tensor(x, DType::kBF16, "rmsnorm input");
  check_tensor(out, DType::kBF16, "rmsnorm output");
  check_tensor(w, DType::kF32, "rmsnorm weight");
  check_norm_dim(x.row_size());
  LLM42_CUDA_CHECK(cuda::launch_rmsnorm(bf16_ptr(x), w.ptr<float>(), eps, bf16_ptr(out),
                                        static_cast<int>(x.dim(0)), static_cast<int>(x.row_size()),
                                        stream_));
}

void CudaBackend::add_rmsnorm(const Tensor& residual, const Tensor& delta, const Tensor& w,
                              float eps, const Tensor& out, Schedule) {
  check_tensor(residual, DType::kBF16, "add_rmsnorm residual");
  check_tensor(delta, DType::kBF16, "add_rmsnorm delta");
  check_tensor(out, DType::kBF16, "add_rmsnorm output");
  check_tensor(w, DType::kF32, "add_rmsnorm weight");
  check_norm_dim(residual.row_size());
  LLM42_CUDA_CHECK(cuda::launch_add_rmsnorm(bf16_ptr(residual), bf16_ptr(delta), w.ptr<float>(),
                                            eps, bf16_ptr(out), static_cast<int>(residual.dim(0)),
                                            static_cast<int>(residual.row_size()), stream_));
}

void CudaBackend::matmul(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& out,
                         Schedule s) {
  check_tensor(x, DType::kBF16, "matmul input");
  if (w.dtype != DType::kBF16)
    fail("CUDA matmul: weights must be bf16 on the GPU, got {} (load with --dtype bf16)",
         dtype_name(w.dtype));
  LLM42_ASSERT(w.device == Device::kCUDA && out.device == Device::kCUDA);
  LLM42_ASSERT(out.dtype == DType::kBF16 || out.dtype == DType::kF32);
  const int64_t m = x.dim(0), k = x.dim(1), n = w.dim(0);
  LLM42_ASSERT(w.dim(1) == k && out.dim(0) == m && out.dim(1) == n, "matmul {} x {}^T -> {}",
               x.shape_string(), w.shape_string(), out.shape_string());
  if (m == 0) return;
  const bool has_bias = bias != nullptr && !bias->empty();
  if (!has_bias) {
    gemm_->run(x.data, w.data, out.data, m, n, k, out.dtype, s);
    return;
  }
  // The bias is added to the fp32 accumulator before rounding, as on the CPU: the GEMM writes
  // f32 (into `out` itself when it is f32), then one elementwise pass adds and rounds.
  check_tensor(*bias, DType::kF32, "matmul bias");
  float* acc = out.ptr<float>();
  if (out.dtype != DType::kF32) {
    ensure(bias_tmp_, static_cast<size_t>(m * n) * sizeof(float));
    acc = static_cast<float*>(bias_tmp_.ptr);
  }
  gemm_->run(x.data, w.data, acc, m, n, k, DType::kF32, s);
  LLM42_CUDA_CHECK(
      cuda::launch_add_bias(acc, bias->ptr<float>(), out.data, out.dtype, m, n, stream_));
}

void CudaBackend::matmul_leaves(const Tensor& x, const Tensor& w,
                                const std::vector<int64_t>& leaves, const Tensor& out) {
  check_tensor(x, DType::kBF16, "matmul_leaves input");
  LLM42_ASSERT(out.device == Device::kCUDA && (out.dtype == DType::kF32 || out.dtype == DType::kBF16),
               "matmul_leaves output: f32 or bf16 on the GPU, got {}", dtype_name(out.dtype));
  if (w.dtype != DType::kBF16)
    fail("CUDA matmul: weights must be bf16 on the GPU, got {} (load with --dtype bf16)",
         dtype_name(w.dtype));
  const int64_t m = x.dim(0), k = x.dim(1), n = w.dim(0);
  const int p = static_cast<int>(leaves.size()) - 1;
  LLM42_ASSERT(w.dim(1) == k && out.dim(0) == m && out.dim(1) == n && p >= 1 &&
                   leaves.front() == 0 && leaves.back() == k,
               "matmul_leaves {} x {}^T -> {} over {} leaves", x.shape_string(), w.shape_string(),
               out.shape_string(), p);
  if (m == 0) return;
  // Scratch for the leaves' fp32 parts where they may go through memory (GemmRunner decides);
  // one leaf into an f32 `out` is written there directly.
  float* parts = nullptr;
  if (p > 1 || out.dtype != DType::kF32) {
    ensure(leaf_parts_, static_cast<size_t>(p * m * n) * sizeof(float));
    parts = static_cast<float*>(leaf_parts_.ptr);
  }
  gemm_->run_canonical_tree(x.data, w.data, out.data, out.dtype, m, n, k, leaves, parts);
}

void CudaBackend::sum_parts(const Tensor& parts, const Tensor& out) {
  LLM42_ASSERT(parts.device == Device::kCUDA && out.device == Device::kCUDA);
  const int p = static_cast<int>(parts.dim(0));
  LLM42_ASSERT(parts.numel() == p * out.numel(), "sum_parts {} -> {}", parts.shape_string(),
               out.shape_string());
  LLM42_CUDA_CHECK(cuda::launch_sum_parts(parts.data, parts.dtype, p, out.numel(), out.data,
                                          out.dtype, stream_));
}

void CudaBackend::qk_norm(const Tensor& qkv, const QkvLayout& layout, const Tensor& q_w,
                          const Tensor& k_w, float eps, Schedule) {
  check_tensor(qkv, DType::kBF16, "qk_norm qkv");
  check_tensor(q_w, DType::kF32, "q_norm weight");
  check_tensor(k_w, DType::kF32, "k_norm weight");
  LLM42_CUDA_CHECK(cuda::launch_qk_norm(bf16_ptr(qkv), static_cast<int>(qkv.dim(0)), layout.row(),
                                        layout.n_heads, layout.n_kv_heads, layout.head_dim,
                                        q_w.ptr<float>(), k_w.ptr<float>(), eps, stream_));
}

void CudaBackend::rope_kv_write(const Tensor& qkv, const QkvLayout& layout, const RopeTable& table,
                                const KvCache& cache, int layer) {
  check_tensor(qkv, DType::kBF16, "rope qkv");
  check_tensor(cache.k[layer], DType::kBF16, "K cache");
  for (int32_t p : pass_.positions)
    LLM42_ASSERT(p >= 0 && p < table.max_positions, "position {} beyond the RoPE table of {}", p,
                 table.max_positions);
  LLM42_CUDA_CHECK(cuda::launch_rope_kv_write(
      bf16_ptr(qkv), pass_.n_tokens(), layout.row(), layout.n_heads, layout.n_kv_heads,
      layout.head_dim, table.layout == RopeLayout::kInterleaved, d_positions_,
      table.cos.ptr<float>(), table.sin.ptr<float>(), d_slots_, bf16_ptr(cache.k[layer]),
      bf16_ptr(cache.v[layer]), stream_));
}

void CudaBackend::attention(const Tensor& qkv, const QkvLayout& layout, const KvCache& cache,
                            int layer, const Tensor& out, Schedule s) {
  check_tensor(qkv, DType::kBF16, "attention qkv");
  check_tensor(out, DType::kBF16, "attention output");
  check_tensor(cache.k[layer], DType::kBF16, "K cache");
  if (cuda::attention_head_dim_pad(layout.head_dim) == 0)
    fail("CUDA attention: head_dim {} is not supported (a multiple of 8 up to 128)",
         layout.head_dim);
  LLM42_ASSERT(layout.n_kv_heads == cache.n_kv_heads && layout.head_dim == cache.head_dim);
  if (graph_pass_) {
    LLM42_ASSERT(
        plan_schedule_ == s && plan_heads_ == layout.n_heads && plan_kv_heads_ == layout.n_kv_heads,
        "attention of a graph pass with another layout or schedule than its plan");
  } else {
    prepare_attention(layout, s);
  }
  cuda::AttnParams p{};
  p.qkv = bf16_ptr(qkv);
  p.qkv_stride = layout.row();
  p.k_cache = bf16_ptr(cache.k[layer]);
  p.v_cache = bf16_ptr(cache.v[layer]);
  p.out = bf16_ptr(out);
  p.out_stride = layout.q_dim();
  p.positions = d_positions_;
  p.block_tables = d_block_tables_;
  p.seqs = d_seqs_;
  p.n_items = n_items_;
  p.n_tall = n_tall_;
  p.n_narrow = n_narrow_;
  p.narrow_stages = narrow_deep_ ? cuda::kAttnNarrowDeepStages : cuda::kAttnNarrowStages;
  if (graph_pass_) {
    // The captured kernels read the counts at replay: the narrow kernel alone, with as many CTAs
    // as stay resident (three an SM, one with the deep stages), or the wide kernel alone (two).
    p.items = d_graph_items_;
    p.combines = d_graph_combines_;
    p.counts = d_attn_counts_;
    const bool narrow_only = graph_narrow_only(layout);
    p.grid = narrow_only ? 0 : 2 * sm_count_;
    p.narrow_grid = !narrow_only ? 0 : narrow_deep_ ? sm_count_ : 3 * sm_count_;
  } else {
    p.items = reinterpret_cast<const cuda::AttnWorkItem*>(d_plan_);
    p.combines = reinterpret_cast<const cuda::AttnCombineItem*>(
        d_plan_ + n_items_ * sizeof(cuda::AttnWorkItem));
  }
  p.partial_o = static_cast<float*>(partial_o_.ptr);
  p.partial_ml = static_cast<float*>(partial_ml_.ptr);
  p.split_done = static_cast<int32_t*>(split_done_.ptr);
  p.n_heads = layout.n_heads;
  p.n_kv_heads = layout.n_kv_heads;
  p.head_dim = layout.head_dim;
  p.block_size = cache.block_size;
  LLM42_ASSERT(cache.block_size > 0 && (cache.block_size & (cache.block_size - 1)) == 0,
               "KV block size {} is not a power of two", cache.block_size);
  p.block_shift = std::countr_zero(static_cast<unsigned>(cache.block_size));
  p.scale_log2 =
      static_cast<float>(1.4426950408889634 / std::sqrt(static_cast<double>(layout.head_dim)));
  LLM42_CUDA_CHECK(cuda::launch_attention(p, stream_));
}

void CudaBackend::swiglu(const Tensor& gate_up, const Tensor& out) {
  check_tensor(gate_up, DType::kBF16, "swiglu input");
  check_tensor(out, DType::kBF16, "swiglu output");
  LLM42_CUDA_CHECK(cuda::launch_swiglu(bf16_ptr(gate_up), bf16_ptr(out),
                                       static_cast<int>(gate_up.dim(0)),
                                       static_cast<int>(out.dim(1)), stream_));
}

void CudaBackend::gather_logit_rows(const Tensor& x, const Tensor& out) {
  LLM42_ASSERT(x.device == Device::kCUDA && out.dtype == x.dtype);
  const int64_t row_bytes = x.row_size() * static_cast<int64_t>(dtype_size(x.dtype));
  LLM42_CUDA_CHECK(cuda::launch_gather_rows(x.data, d_logit_rows_,
                                            static_cast<int>(pass_.logit_rows.size()), row_bytes,
                                            out.data, stream_));
}

void CudaBackend::sample(const Tensor& logits, const std::vector<SampleRow>& rows,
                         std::vector<SampleResult>& out) {
  check_tensor(logits, DType::kF32, "logits");
  const int n = static_cast<int>(rows.size());
  const int vocab = static_cast<int>(logits.dim(1));
  out.assign(rows.size(), SampleResult{});
  if (n == 0) return;
  std::vector<cuda::SampleRowDev> dev(rows.size());
  int n_sorted = 0;
  for (int i = 0; i < n; ++i) {
    const SampleRow& r = rows[i];
    LLM42_ASSERT(r.logit_row >= 0 && r.logit_row < logits.dim(0));
    const bool filtered = (r.top_k > 0 && r.top_k < vocab) || r.top_p < 1.0f || r.min_p > 0.0f;
    const bool draws = r.score_token < 0;
    const bool needs_order = (draws && r.temperature > 0.0f && filtered) || r.top_logprobs > 0;
    LLM42_ASSERT(draws || r.score_token < vocab, "score token {} (vocabulary {})", r.score_token,
                 vocab);
    dev[i] = {r.logit_row,  r.temperature, r.top_k,
              r.top_p,      r.min_p,       std::min(r.top_logprobs, cuda::kSampleMaxTop),
              r.seed,       r.position,    needs_order ? n_sorted++ : -1,
              r.score_token};
  }
  const size_t rows_bytes = dev.size() * sizeof(cuda::SampleRowDev);
  std::memcpy(staging(rows_bytes), dev.data(), rows_bytes);
  upload(sample_rows_, rows_bytes);
  ensure(sample_out_, dev.size() * sizeof(cuda::SampleOutDev));
  const auto* d_rows = static_cast<const cuda::SampleRowDev*>(sample_rows_.ptr);
  auto* d_out = static_cast<cuda::SampleOutDev*>(sample_out_.ptr);
  LLM42_CUDA_CHECK(cuda::launch_sample_rows(logits.ptr<float>(), vocab, d_rows, n, d_out, stream_));

  for (int first = 0; first < n_sorted; first += kSortRowsPerChunk) {
    const int count = std::min(kSortRowsPerChunk, n_sorted - first);
    const size_t elems = static_cast<size_t>(count) * vocab;
    ensure(sort_keys_, 2 * elems * sizeof(float));
    ensure(sort_ids_, 2 * elems * sizeof(int32_t));
    ensure(sort_offsets_, (count + 1) * sizeof(int32_t));
    auto* keys = static_cast<float*>(sort_keys_.ptr);
    auto* ids = static_cast<int32_t*>(sort_ids_.ptr);
    const auto* offsets = static_cast<const int32_t*>(sort_offsets_.ptr);
    LLM42_CUDA_CHECK(cuda::launch_sample_gather(logits.ptr<float>(), vocab, d_rows, n, first, count,
                                                keys, ids, static_cast<int32_t*>(sort_offsets_.ptr),
                                                stream_));
    size_t temp_bytes = 0;
    LLM42_CUDA_CHECK(cuda::sort_segments_descending(nullptr, temp_bytes, keys, keys + elems, ids,
                                                    ids + elems, count, vocab, offsets, stream_));
    ensure(sort_temp_, temp_bytes);
    temp_bytes = sort_temp_.bytes;
    LLM42_CUDA_CHECK(cuda::sort_segments_descending(sort_temp_.ptr, temp_bytes, keys, keys + elems,
                                                    ids, ids + elems, count, vocab, offsets,
                                                    stream_));
    LLM42_CUDA_CHECK(cuda::launch_sample_sorted(logits.ptr<float>(), keys + elems, ids + elems,
                                                vocab, d_rows, n, first, count, d_out, stream_));
  }
  sample_host_.resize(dev.size());
  copy_to_host(sample_host_.data(), d_out, dev.size() * sizeof(cuda::SampleOutDev));
  for (int i = 0; i < n; ++i) {
    const cuda::SampleOutDev& d = sample_host_[i];
    SampleResult& o = out[i];
    o.token = d.token;
    o.logprob = d.logprob;
    o.rank = d.rank;
    o.n_top = d.n_top;
    std::copy(d.top_ids, d.top_ids + d.n_top, o.top_ids);
    std::copy(d.top_logprobs, d.top_logprobs + d.n_top, o.top_logprobs);
  }
}

}  // namespace llm42
