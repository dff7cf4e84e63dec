#include "bench/workload_cost.h"

#include <nlohmann/json.hpp>

namespace llm42::bench {

WorkloadCost workload_cost(const ModelConfig& c, int kv_elem_bytes,
                           const std::vector<RequestLengths>& requests) {
  const double d = c.dim, q = c.q_dim(), kv = c.kv_dim(), f = c.ffn_dim, layers = c.n_layers;
  // Multiply-adds a token costs in one layer's projections, and in the LM head.
  const double layer_macs = d * (q + 2 * kv) + q * d + d * 2 * f + f * d;
  const double head_macs = d * static_cast<double>(c.vocab_size);
  // QK^T and PV over one key, every query head, every layer.
  const double attn_flop_per_key = 4.0 * q * layers;
  const double kv_bytes_per_position = 2.0 * kv * kv_elem_bytes * layers;
  WorkloadCost w;
  for (const RequestLengths& r : requests) {
    if (r.prompt <= 0) continue;
    const double p = static_cast<double>(r.prompt);
    const double decodes = static_cast<double>(r.output > 1 ? r.output - 1 : 0);
    w.tokens_run += r.prompt + static_cast<int64_t>(decodes);
    w.decode_steps += static_cast<int64_t>(decodes);
    w.linear_flop += 2.0 * (layer_macs * layers * (p + decodes) +
                            head_macs * static_cast<double>(r.output > 0 ? r.output : 0));
    // Prefill query i (0-based) reaches i + 1 keys; decode query j (1-based) reaches p + j.
    const double prefill_keys = p * (p + 1) / 2;
    const double decode_keys = decodes * p + decodes * (decodes + 1) / 2;
    w.prefill_attention_flop += attn_flop_per_key * prefill_keys;
    w.decode_attention_flop += attn_flop_per_key * decode_keys;
    w.decode_kv_bytes += kv_bytes_per_position * decode_keys;
  }
  return w;
}

nlohmann::json workload_cost_json(const WorkloadCost& w, double weight_bytes_per_step) {
  return {{"linear_flop", w.linear_flop},
          {"prefill_attention_flop", w.prefill_attention_flop},
          {"decode_attention_flop", w.decode_attention_flop},
          {"decode_kv_bytes", w.decode_kv_bytes},
          {"tokens_run", w.tokens_run},
          {"decode_steps", w.decode_steps},
          {"weight_bytes_per_step", weight_bytes_per_step}};
}

}  // namespace llm42::bench
