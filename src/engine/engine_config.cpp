#include "engine/engine_config.h"

#include "util/error.h"

namespace llm42 {

DeterminismMode parse_determinism_mode(std::string_view s) {
  if (s == "off") return DeterminismMode::kOff;
  if (s == "dvr") return DeterminismMode::kDvr;
  if (s == "global") return DeterminismMode::kGlobal;
  fail("--determinism '{}': expected off, dvr or global", s);
}

std::string_view determinism_mode_name(DeterminismMode m) {
  switch (m) {
    case DeterminismMode::kOff:
      return "off";
    case DeterminismMode::kDvr:
      return "dvr";
    case DeterminismMode::kGlobal:
      return "global";
  }
  return "?";
}

VerifyMode parse_verify_mode(std::string_view s) {
  if (s == "invariant") return VerifyMode::kInvariant;
  if (s == "fixed-shape") return VerifyMode::kFixedShape;
  fail("--verify-schedule '{}': expected invariant or fixed-shape", s);
}

std::string_view verify_mode_name(VerifyMode s) {
  return s == VerifyMode::kInvariant ? "invariant" : "fixed-shape";
}

void EngineConfig::validate() const {
  if (window < 1 || window > 4096) fail("--window {}: must be in [1, 4096]", window);
  if (group < 1 || group > 1024) fail("--group {}: must be in [1, 1024]", group);
  if (max_num_seqs < 1) fail("--max-num-seqs {}: must be at least 1", max_num_seqs);
  if (admission_reserve != -1 && !(admission_reserve >= 0 && admission_reserve <= 1))
    fail("--admission-reserve {}: must be in [0, 1], or -1 for auto", admission_reserve);
  if (max_num_batched_tokens < 1)
    fail("--max-num-batched-tokens {}: must be at least 1", max_num_batched_tokens);
  if (prefill_chunk < 1) fail("--prefill-chunk {}: must be at least 1", prefill_chunk);
  if (max_prompt_logprobs_rows < 1)
    fail("--max-prompt-logprobs-rows {}: must be at least 1", max_prompt_logprobs_rows);
  if (cuda_graph_max_batch < 0 || cuda_graph_max_batch > 4096)
    fail("--cuda-graph-max-batch {}: must be in [0, 4096]", cuda_graph_max_batch);
  if (block_size < 1 || block_size > 1024 || (block_size & (block_size - 1)) != 0)
    fail("--block-size {}: must be a power of two in [1, 1024]", block_size);
  if (num_blocks < 0) fail("--num-blocks {}: must not be negative", num_blocks);
  if (kv_cache_memory_fraction != -1 &&
      !(kv_cache_memory_fraction > 0 && kv_cache_memory_fraction <= 1))
    fail("--kv-cache-memory-fraction {}: must be in (0, 1], or -1 for auto",
         kv_cache_memory_fraction);
  if (inject_mismatch_rate < 0 || inject_mismatch_rate > 1)
    fail("--inject-mismatch-rate {}: must be in [0, 1]", inject_mismatch_rate);
  if (max_stalled_steps < 0)
    fail("--max-stalled-steps {}: must be 0 (off) or positive", max_stalled_steps);
  // A verification window is verified whole in one step: a budget below it would never commit
  // a deterministic request again.
  if (mode == DeterminismMode::kDvr && window > max_num_batched_tokens)
    fail(
        "--window {} is larger than --max-num-batched-tokens {}: a verification window must "
        "fit in one engine step (lower --window or raise --max-num-batched-tokens)",
        window, max_num_batched_tokens);
  if (verify_schedule == VerifyMode::kFixedShape &&
      static_cast<int64_t>(window) * group > max_num_batched_tokens)
    fail("--verify-schedule fixed-shape pads each verification pass to window x group = {} "
         "tokens, more than --max-num-batched-tokens {}",
         static_cast<int64_t>(window) * group, max_num_batched_tokens);
}

}  // namespace llm42
