#include "parallel/model_loader.h"

#include <omp.h>

#include <algorithm>

#include "model/sharding.h"
#include "model/weights.h"

namespace llm42 {

DType resolve_weights_dtype(const std::string& name, Device device, DType stored) {
  if (name != "auto") return parse_dtype(name);
  if (device == Device::kCUDA) return DType::kBF16;
  return stored == DType::kF16 ? DType::kF32 : stored;
}

std::unique_ptr<ParallelModel> load_parallel_model(const BackendOptions& backend,
                                                   const std::string& dtype,
                                                   const ModelSource& source,
                                                   const ParallelOptions& p, int max_pass_tokens,
                                                   int max_logit_rows) {
  check_backend_options(backend);
  const ModelConfig& config = source.config;
  check_tp_size(config, p.tp);
  const std::unique_ptr<CommunicatorGroup> group =
      make_communicator_group(p.comm, p.tp, backend.device);
  // One rank hashes the whole checkpoint for all (the fingerprint names the model, not a shard).
  const uint64_t hash = source.checkpoint != nullptr ? content_hash(*source.checkpoint) : 0;
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
      Checkpoint const& ckpt = *source.checkpoint;
      w = load_weights(*rank.backend, ckpt, d, shard, &hash);
      w.config = config;
    } else {
      w = dummy_weights(*rank.backend, config, d, source.dummy_seed, shard);
    }
    rank.model = std::make_unique<Transformer>(*rank.backend, std::move(w), max_pass_tokens,
                                               max_logit_rows, rank.comm.get());
    return rank;
  };
  return std::make_unique<ParallelModel>(p.tp, group->shares_device() ? p.tp : 1, build);
}

}  // namespace llm42
