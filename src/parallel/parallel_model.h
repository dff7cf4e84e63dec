// The model the engine runs (DESIGN.md §7): one Transformer per tensor-parallel rank, each on its
// own backend and thread, all running the same pass plan. The engine, scheduler, block manager and
// sampler exist once; they see one model with one config, rank 0's backend (sampling, host
// copies of logits) and full logits. Every rank holds the same block tables over its own KV pool
// (its KV heads).
//
// One rank runs on the caller's thread without any exchange. With more, rank 0 runs on the
// caller's thread (the engine's) and ranks 1..N-1 on threads of their own, which build their
// part of the model at construction and then wait for work.
#pragma once

#include <condition_variable>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "backend/backend.h"
#include "backend/communicator.h"
#include "model/transformer.h"

namespace llm42 {

// One rank's part of the model, built on the rank's own thread.
struct Rank {
  std::unique_ptr<Backend> backend;
  std::unique_ptr<Communicator> comm;  // null at TP 1
  std::unique_ptr<Transformer> model;
};

class ParallelModel {
 public:
  // One rank: `model` (on `model.backend()`), not owned, on the caller's thread.
  explicit ParallelModel(Transformer& model);
  // `tp` ranks; `build(r)` runs on rank r's thread (concurrently) and returns its part.
  // `ranks_per_device`: how many ranks share one device's memory (all of them for CPU ranks and
  // in-process ranks on one GPU, 1 with a GPU each). `build_failed`, if given, is called (from
  // the failing rank's thread) when a build throws, so that ranks blocked in theirs waiting for
  // that one (CommunicatorGroup::join) can give up; the constructor then throws the first
  // rank's own error, naming it.
  ParallelModel(int tp, int ranks_per_device, const std::function<Rank(int)>& build,
                const std::function<void()>& build_failed = {});
  ~ParallelModel();
  ParallelModel(const ParallelModel&) = delete;
  ParallelModel& operator=(const ParallelModel&) = delete;

  int tp_size() const { return static_cast<int>(models_.size()); }
  Transformer& rank_model(int r) { return *models_[static_cast<size_t>(r)]; }
  const ModelConfig& config() const { return models_.front()->config(); }
  // Rank 0's: the dtype, content hash and shard of its weights.
  const ModelWeights& weights() const { return models_.front()->weights(); }
  Backend& backend() { return models_.front()->backend(); }
  int max_tokens() const { return models_.front()->max_tokens(); }
  int max_logit_rows() const { return models_.front()->max_logit_rows(); }
  // "in-process" or "nccl"; "" at TP 1.
  std::string communicator_name() const;
  // Whether a pass can run as a captured graph as far as the exchanges go: at TP 1, or where
  // every rank's communicator can be captured (Communicator::capturable).
  bool exchanges_capturable() const;

  // Weight bytes summed over the ranks, and what one decode step reads on the busiest rank.
  size_t weight_bytes() const;
  size_t bytes_per_decode_step() const;
  // Bytes each rank may give its KV cache: the least over the ranks, each rank's share where
  // several share a device (CPU ranks, or in-process ranks on one GPU).
  size_t free_memory_per_rank() const;
  // Bytes of one KV block on the rank with the most KV heads.
  size_t kv_block_bytes(int block_size) const;

  // Allocates every rank's KV cache of n_blocks blocks of block_size positions (after freeing
  // any earlier one).
  void allocate_kv(int n_blocks, int block_size);
  // Frees every rank's KV cache (an engine that ends gives its memory back to the next one).
  void release_kv();
  // Rank 0's (its geometry; every rank's has the same blocks).
  const KvCache& kv() const { return kv_.front(); }
  size_t kv_bytes() const;  // all ranks

  // Runs the pass on every rank over its KV cache; returns rank 0's logits (R, vocab) f32 on its
  // backend, valid until the next forward.
  Tensor forward(const PassInput& pass);
  Transformer::GraphStats graph_stats() const;
  // Transformer::warm_up on every rank.
  void warm_up();

 private:
  // Runs fn(r) for every rank r (rank 0 here, the others on their threads, each bound to its
  // device) and waits for all. A rank that throws aborts the group's exchanges, so no other
  // rank waits for it forever; once every rank has left, the exchanges are mended (in-process)
  // and llm42::Error is thrown naming the failed rank and its error. Where they cannot be
  // mended (NCCL), every later call throws: the model must be loaded again.
  void run_all(const std::function<void(int)>& fn);
  // Records rank r's exception (the first that is not an ExchangeAborted is the cause) and
  // aborts every rank's exchanges.
  void rank_failed(int r, std::exception_ptr error);
  void worker(int r);
  void bind_rank0();

  std::vector<Rank> owned_;           // empty when wrapping the caller's Transformer
  std::vector<Transformer*> models_;  // per rank
  std::vector<KvCache> kv_;           // per rank
  std::vector<std::vector<Buffer>> kv_storage_;
  int ranks_per_device_ = 1;
  std::thread::id rank0_thread_;  // the thread rank 0's device was last made current on

  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  uint64_t epoch_ = 0;         // incremented for each run_all
  int pending_ = 0;            // workers still running the current task
  bool stopping_ = false;
  const std::function<void(int)>* task_ = nullptr;
  std::exception_ptr error_;  // the first exception of the current run_all
  std::exception_ptr cause_;  // the first that was not an aborted exchange
  int failed_rank_ = -1;      // cause_'s rank
  std::string broken_;        // why the exchanges cannot be used again ("" while they can)
  bool built_ = false;        // every rank's part made (set on the constructing thread)
  std::function<void()> build_failed_;  // see the constructor
};

}  // namespace llm42
