// The work a workload asks of a model, counted from its requests' lengths alone: what any
// engine must compute and read to serve it once (no recomputation, no prefix-cache hits), for
// comparing a benchmark run with the device's ceilings (`llm42 bench` JSON "work";
// bench/roofline_budget.py divides it by bench/gpu_roofline.py's measured rates).
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <vector>

#include "model/config.h"

namespace llm42::bench {

struct RequestLengths {
  int64_t prompt = 0;  // prompt tokens
  int64_t output = 0;  // sampled tokens (the first from the prefill's last position)
};

struct WorkloadCost {
  // The layers' projections (qkv, o, gate_up, down) for every token run through the model (the
  // prompt, then each sampled token but the last), plus the LM head for every sampled token;
  // 2 FLOPs a multiply-add.
  double linear_flop = 0;
  // QK^T and PV of every query over its causal keys (itself and every earlier position):
  // prefill queries, then decode queries.
  double prefill_attention_flop = 0;
  double decode_attention_flop = 0;
  // K and V each decode query reads: its whole context, every layer.
  double decode_kv_bytes = 0;
  int64_t tokens_run = 0;    // tokens run through the layers
  int64_t decode_steps = 0;  // decode queries (sampled tokens after the first)
};

// `kv_elem_bytes`: bytes of one cached K or V element (2 for bf16).
WorkloadCost workload_cost(const ModelConfig& c, int kv_elem_bytes,
                           const std::vector<RequestLengths>& requests);

// The "work" object of bench JSON: the fields above and the weight bytes a step streams.
nlohmann::json workload_cost_json(const WorkloadCost& w, double weight_bytes_per_step);

}  // namespace llm42::bench
