// Flags shared by the subcommands that run a model (generate, serve, bench), and the code that
// turns them into a backend, a model, a tokenizer and an engine configuration.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <memory>
#include <string>

#include "backend/backend.h"
#include "engine/engine_config.h"
#include "parallel/parallel_model.h"
#include "tokenizer/tokenizer.h"

namespace llm42::cli {

struct ModelOptions {
  std::string model;           // path, or dummy:PRESET
  bool dummy_weights = false;  // with a config.json (or HF directory): random weights
  uint64_t weights_seed = 0;   // seed of dummy weights
  std::string tokenizer;       // override: tokenizer.json, HF directory or llama2.c .bin
  std::string device = "cpu";
  int threads = 0;
  std::string dtype = "auto";     // weights on the device: auto, f32, bf16
  bool bf16_activations = false;  // CPU: round activations to bf16 between kernels
  int max_seq_len = 0;            // 0 = the model's
  double gpu_memory_fraction = 0.9;
  bool cuda_pdl = true;               // programmatic dependent launch of the forward kernels
  bool cuda_canonical_skinny = true;  // the canonical lane may use the sequential-K skinny GEMM
  bool cuda_fused_tree = true;        // ... and the fused leaf-tree GEMM (BackendOptions)
  int cuda_canonical_m_step = 128;    // canonical GEMM M buckets (BackendOptions)
  std::string cuda_attention_tall = "auto";  // tall row tiles of fast prefill (BackendOptions)
  int tensor_parallel_size = 1;              // ranks (DESIGN.md §7)
  std::string tp_communicator = "auto";      // auto, in-process or nccl
};

struct EngineOptions {
  EngineConfig config;
  std::string mode = "dvr";
  std::string verify_schedule = "invariant";
  EngineConfig resolve() const;
};

void add_model_options(CLI::App& app, ModelOptions& o);
void add_engine_options(CLI::App& app, EngineOptions& o);

struct LoadedModel {
  std::unique_ptr<ParallelModel> model;  // every rank's part (one at TP 1)
  std::unique_ptr<Tokenizer> tokenizer;  // null when the model has none
  std::string name;                      // for the API and reports
  std::string chat_template;             // the model file's own (GGUF), "" when none
  double load_seconds = 0;
  Backend& backend() const { return model->backend(); }  // rank 0's
};

// Loads what the options name. `max_pass_tokens` and `max_logit_rows` size the workspaces.
LoadedModel load_model(const ModelOptions& o, int max_pass_tokens, int max_logit_rows);

// The workspace sizes an engine with this configuration needs.
int max_pass_tokens(const EngineConfig& c);
int max_logit_rows(const EngineConfig& c);

}  // namespace llm42::cli
