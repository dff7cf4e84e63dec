#include "parallel/model_loader.h"

#include <omp.h>

#include <algorithm>

#include "model/sharding.h"
#include "model/weights.h"
#include "util/error.h"

namespace llm42 {

DType resolve_weights_dtype(const std::string& name, Device device, DType stored) {
  if (name != "auto") return parse_dtype(name);
  if (device == Device::kCUDA) return DType::kBF16;
  return stored == DType::kF16 ? DType::kF32 : stored;
}

void check_cuda_shards(const ModelConfig& c, int tp) {
  // The CUDA canonical lane runs tensor-core GEMMs only where N and K are multiples of 8 (a
  // CUDA-core fallback reduces in another order otherwise): a rank's column-parallel GEMM must
  // fall on the same side of that line as TP 1's, or its columns would differ from TP 1's.
  auto check = [&](const char* what, int64_t whole, auto rows_of_rank) {
    if (whole % 8 != 0) return;  // the fallback at every TP size: the same order
    for (int r = 0; r < tp; ++r) {
      const int64_t n = rows_of_rank(shard_dims(c, {r, tp}));
      if (n % 8 != 0)
        fail("--tensor-parallel-size {} on CUDA: rank {}'s {} GEMM would have {} rows, not a "
             "multiple of 8, where TP 1's has {}: its tensor-core kernel could not run and the "
             "answer would change with the TP size; choose a TP size that keeps every rank's "
             "share a multiple of 8 (or run on the CPU)",
             tp, r, what, n, whole);
    }
  };
  check("gate/up", 2LL * c.ffn_dim, [](const ShardDims& d) { return 2LL * d.ffn_dim(); });
  check("LM head", c.vocab_size, [](const ShardDims& d) { return d.vocab.size(); });
  check("q/k/v", int64_t{c.n_heads + 2 * c.n_kv_heads} * c.head_dim, [&](const ShardDims& d) {
    return int64_t{d.n_heads() + 2 * d.n_kv_heads()} * c.head_dim;
  });
}

std::unique_ptr<ParallelModel> load_parallel_model(const BackendOptions& backend,
                                                   const std::string& dtype,
                                                   const ModelSource& source,
                                                   const ParallelOptions& p, int max_pass_tokens,
                                                   int max_logit_rows) {
  check_backend_options(backend);
  const ModelConfig& config = source.config;
  check_tp_size(config, p.tp);
  if (p.tp > 1 && backend.device.rfind("cuda", 0) == 0) check_cuda_shards(config, p.tp);
  const std::unique_ptr<CommunicatorGroup> group =
      make_communicator_group(p.comm, p.tp, backend.device);
  const int cores = backend.threads > 0 ? backend.threads : omp_get_num_procs();
  auto build = [&](int r) {
    Rank rank;
    BackendOptions rb = backend;
    rb.device = group->rank_device(backend.device, r);
    if (p.tp > 1 && rb.device == "cpu") rb.threads = std::max(1, cores / p.tp);
    rank.backend = make_backend(rb);
    if (p.tp > 1) rank.comm = group->join(r, *rank.backend);
    const DType d = resolve_weights_dtype(dtype, rank.backend->device(), config.weights_dtype);
    const TpShard shard{r, p.tp};
    ModelWeights w;
    if (source.checkpoint != nullptr) {
      w = load_weights(*rank.backend, *source.checkpoint, d, shard);
      w.config = config;
    } else {
      w = dummy_weights(*rank.backend, config, d, source.dummy_seed, shard);
    }
    rank.model = std::make_unique<Transformer>(*rank.backend, std::move(w), max_pass_tokens,
                                               max_logit_rows, rank.comm.get());
    return rank;
  };
  return std::make_unique<ParallelModel>(p.tp, group->shares_device() ? p.tp : 1, build,
                                         [&] { group->abort_joins(); });
}

}  // namespace llm42
