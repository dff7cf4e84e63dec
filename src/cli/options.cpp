#include "cli/options.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "model/checkpoint.h"
#include "model/presets.h"
#include "model/weights.h"
#include "parallel/model_loader.h"
#include "util/error.h"
#include "util/log.h"
#include "util/mapped_file.h"
#include "util/timer.h"

namespace llm42::cli {
namespace fs = std::filesystem;

void add_model_options(CLI::App& app, ModelOptions& o) {
  app.add_option(
      "-m,--model", o.model,
      "Model: a Hugging Face directory, a .gguf file, a llama2.c .bin file, or "
      "dummy:PRESET for random weights at a real shape (presets: " +
          [] {
            std::string s;
            for (const auto& n : preset_names()) s += (s.empty() ? "" : ", ") + n;
            return s;
          }() +
          ")");
  app.add_flag("--dummy-weights", o.dummy_weights,
               "Random weights with the shape of --model's config.json (no weight files read)");
  app.add_option("--weights-seed", o.weights_seed, "Seed of dummy weights")->capture_default_str();
  app.add_option("--tokenizer", o.tokenizer,
                 "Tokenizer to use instead of the model's: tokenizer.json, a directory holding "
                 "one, or a llama2.c tokenizer .bin");
  app.add_option("--device", o.device, "cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--threads", o.threads, "CPU threads (0 = all cores)")->capture_default_str();
  app.add_option("--dtype", o.dtype,
                 "Weights precision on the device: auto (bf16 on CUDA, as stored on CPU), f32, "
                 "bf16")
      ->capture_default_str();
  app.add_flag("--bf16-activations", o.bf16_activations,
               "CPU: round activations to bf16 between kernels, as the GPU keeps them");
  app.add_option("--max-seq-len", o.max_seq_len,
                 "Context length to serve (0 = the model's max_position_embeddings)")
      ->capture_default_str();
  app.add_option("--gpu-memory-fraction", o.gpu_memory_fraction,
                 "CUDA: fraction of GPU memory llm42 may use (weights, workspaces, KV cache)")
      ->capture_default_str();
  app.add_flag("!--no-cuda-pdl", o.cuda_pdl,
               "CUDA: launch the forward kernels without programmatic dependent launch (each "
               "waits for the previous one to finish before it starts; same results)");
  app.add_flag("!--no-cuda-canonical-skinny", o.cuda_canonical_skinny,
               "CUDA: keep the canonical lane on cuBLASLt at M <= 16 (by default its autotune "
               "may pick the sequential-K skinny GEMM where it reproduces cuBLASLt's every bit "
               "and is faster; same results either way)");
  app.add_flag("!--no-cuda-fused-tree", o.cuda_fused_tree,
               "CUDA: keep the canonical lane's row-parallel GEMMs (o, down) on leaf GEMMs "
               "whose fp32 parts go through memory (by default the autotune may run them as the "
               "fused tree GEMM for an M bucket where it reproduced that path's every bit and "
               "was faster; same results either way)");
  app.add_option("--cuda-canonical-m-step", o.cuda_canonical_m_step,
                 "CUDA: the canonical GEMM autotunes one algorithm per M bucket: the decode graph "
                 "sizes up to 256 (1, 2, 4, 8, multiples of 8), then multiples of this up to 4096 "
                 "(0: powers of two throughout: fewer tunings at the first start, slower passes "
                 "between the powers of two; same results either way)")
      ->capture_default_str();
  app.add_option("--cuda-attention-tall", o.cuda_attention_tall,
                 "CUDA: where the fast lane runs prefill chunks' attention in tiles of 128 query "
                 "rows: auto (passes of prefill chunks only), mixed (also passes with decode or "
                 "verification rows, where the chunks fill a wave: long prompts) or never; the "
                 "deterministic lane is unaffected")
      ->capture_default_str();
  app.add_option(
         "--tensor-parallel-size", o.tensor_parallel_size,
         "Tensor-parallel ranks (also -tp): 1, 2, 4 or 8, dividing the model's query heads; "
         "deterministic answers are the same at every size (docs/tensor-parallel.md)")
      ->capture_default_str();
  app.add_option("--tp-communicator", o.tp_communicator,
                 "How the ranks exchange: auto (nccl with one GPU per rank where that many are "
                 "visible, else in-process), in-process (threads of this process on one device: "
                 "CPU ranks, or several ranks on one GPU; for tests, not speed) or nccl")
      ->capture_default_str();
}

void add_engine_options(CLI::App& app, EngineOptions& o) {
  EngineConfig& c = o.config;
  c.canonical_decode_threshold = -1.0;  // auto, resolved by the Engine from the backend
  app.add_option("--determinism", o.mode,
                 "off (all fast), dvr (per-request decode-verify-rollback) or global (all "
                 "canonical)")
      ->capture_default_str();
  app.add_option("--verify-schedule", o.verify_schedule,
                 "invariant (canonical kernels, default) or fixed-shape (the paper's padded "
                 "passes)")
      ->capture_default_str();
  app.add_option("--window", c.window, "W: speculative tokens per verification window")
      ->capture_default_str();
  app.add_option("--group", c.group, "G: requests verified together in one pass")
      ->capture_default_str();
  app.add_option("--max-num-seqs", c.max_num_seqs, "Running sequences at most")
      ->capture_default_str();
  app.add_option("--max-num-batched-tokens", c.max_num_batched_tokens,
                 "Token budget of one engine step")
      ->capture_default_str();
  app.add_option("--admission-reserve", c.admission_reserve,
                 "Admit a request only while the free (or evictable) KV blocks cover the rest of "
                 "every running request's prompt and this share of its remaining max_tokens (at "
                 "most 4096 tokens), and the same for the new one (0 = prompts only; 1 = no "
                 "request that runs to a max_tokens of at most 4096 is preempted; -1 = auto: "
                 "finished requests' output tokens over their min(max_tokens, 4096), moving "
                 "averages)")
      ->capture_default_str();
  app.add_option("--prefill-chunk", c.prefill_chunk, "Prompt tokens of one request per step")
      ->capture_default_str();
  app.add_option("--max-prompt-logprobs-rows", c.max_prompt_logprobs_rows,
                 "Logits rows a step computes for prompt logprobs (echo with logprobs, "
                 "prompt_logprobs); such prompts are prefilled in chunks that fit. Each row "
                 "costs vocabulary x 4 bytes of workspace, allocated at start-up")
      ->capture_default_str();
  app.add_option("--canonical-decode-threshold", c.canonical_decode_threshold,
                 "dvr: run a decode step in the canonical lane when at least this fraction of "
                 "its rows, and at least one, are deterministic (0 = whenever one is; >1 = "
                 "never; -1 = auto: 0 on CUDA, where the canonical lane is nearly as fast, "
                 "never on the CPU)")
      ->capture_default_str();
  app.add_option("--cuda-graph-max-batch", c.cuda_graph_max_batch,
                 "CUDA: decode passes of at most this many rows run as captured graphs, padded "
                 "to 1, 2, 4, 8 or a multiple of 8 rows (0 = never)")
      ->capture_default_str();
  app.add_flag("--tp-cuda-graphs", c.tp_cuda_graphs,
               "CUDA, experimental: at TP > 1 with NCCL ranks, run decode passes as graphs too, "
               "the exchanges captured with the kernels (in-process ranks always run eagerly)");
  app.add_option("--block-size", c.block_size, "KV cache block size in tokens")
      ->capture_default_str();
  app.add_option("--num-blocks", c.num_blocks, "KV cache blocks (0 = sized from memory)")
      ->capture_default_str();
  app.add_option("--kv-cache-memory-fraction", c.kv_cache_memory_fraction,
                 "Fraction of the memory left after weights given to the KV cache (-1 = auto: "
                 "0.9 on CUDA, of what --gpu-memory-fraction leaves; 0.5 of free RAM on the CPU)")
      ->capture_default_str();
  app.add_flag("!--no-prefix-cache", c.prefix_cache, "Disable the prefix cache");
  app.add_option("--inject-mismatch-rate", c.inject_mismatch_rate,
                 "Fault injection: force a mismatch in this fraction of verification windows")
      ->capture_default_str();
  app.add_option("--inject-mismatch-position", c.inject_mismatch_position,
                 "Fault injection: window index of the forced mismatch (-1 = random)")
      ->capture_default_str();
  app.add_flag("--verify-no-rollback", c.verify_no_rollback,
               "Verify but never roll back (measures pure verification overhead; outputs are "
               "then not deterministic)");
  app.add_option("--max-stalled-steps", c.max_stalled_steps,
                 "Watchdog: fail a request (with an error to its client) that made no progress "
                 "for this many engine steps while running, or while the engine ran nothing "
                 "(0 = off)")
      ->capture_default_str();
  app.add_flag("--check-integrity", c.check_integrity,
               "Check the block manager's invariants after every step (slow)");
}

EngineConfig EngineOptions::resolve() const {
  EngineConfig c = config;
  c.mode = parse_determinism_mode(mode);
  c.verify_schedule = parse_verify_mode(verify_schedule);
  c.validate();
  return c;
}

int max_pass_tokens(const EngineConfig& c) {
  return std::max(c.max_num_batched_tokens, c.window * c.group);
}

int max_logit_rows(const EngineConfig& c) {
  // A row per running sequence, a verification group's windows, and the prompt-logprob rows.
  return std::min(max_pass_tokens(c),
                  c.max_num_seqs + c.window * c.group + c.max_prompt_logprobs_rows);
}

namespace {

// The tokenizer that goes with a model, or null when there is none.
std::unique_ptr<Tokenizer> find_tokenizer(const ModelOptions& o, const Checkpoint* ckpt,
                                          const ModelConfig& c) {
  auto from_path = [&](const std::string& p) -> std::unique_ptr<Tokenizer> {
    if (is_directory(p)) return load_hf_tokenizer(p + "/tokenizer.json");
    if (p.ends_with(".json")) return load_hf_tokenizer(p);
    return load_llama2c_tokenizer(p, c.vocab_size);
  };
  if (!o.tokenizer.empty()) return from_path(o.tokenizer);
  if (ckpt != nullptr && ckpt->vocab) return tokenizer_from_vocab(*ckpt->vocab);
  const fs::path model(o.model);
  if (is_directory(o.model) && file_exists(o.model + "/tokenizer.json"))
    return load_hf_tokenizer(o.model + "/tokenizer.json");
  if (ckpt != nullptr && ckpt->format == "llama2c") {
    const fs::path dir = model.parent_path();
    for (const std::string& name :
         {std::string("tokenizer.bin"), "tok" + std::to_string(c.vocab_size) + ".bin"}) {
      if (file_exists((dir / name).string()))
        return load_llama2c_tokenizer((dir / name).string(), c.vocab_size);
    }
  }
  if (ckpt == nullptr && c.vocab_size >= 259) {
    log_info("model has no tokenizer: using one token per byte (ids 3..258)");
    return make_byte_tokenizer(c.vocab_size, c.bos_id, c.eos_ids.empty() ? 2 : c.eos_ids[0]);
  }
  return nullptr;
}

}  // namespace

LoadedModel load_model(const ModelOptions& o, int max_pass_tokens, int max_logit_rows) {
  if (o.model.empty()) fail("--model is required (a path, or dummy:PRESET)");
  const double t0 = now_seconds();
  LoadedModel lm;
  BackendOptions bo;
  bo.device = o.device;
  bo.threads = o.threads;
  bo.round_activations_bf16 = o.bf16_activations;
  bo.cuda.memory_fraction = o.gpu_memory_fraction;
  bo.cuda.programmatic_launch = o.cuda_pdl;
  bo.cuda.canonical_skinny = o.cuda_canonical_skinny;
  bo.cuda.fused_tree = o.cuda_fused_tree;
  bo.cuda.canonical_m_step = o.cuda_canonical_m_step;
  bo.cuda.attention_tall = o.cuda_attention_tall;

  ModelConfig config;
  std::unique_ptr<Checkpoint> ckpt;
  const bool dummy_preset = o.model.rfind("dummy:", 0) == 0;
  if (dummy_preset) {
    config = preset_config(o.model.substr(6));
  } else if (o.dummy_weights) {
    const std::string cfg = is_directory(o.model) ? o.model + "/config.json" : o.model;
    config = parse_hf_config(nlohmann::json::parse(read_file(cfg), nullptr, true), cfg);
  } else {
    ckpt = std::make_unique<Checkpoint>(load_checkpoint(o.model));
    config = ckpt->config;
  }
  if (o.max_seq_len > 0) config.max_seq_len = o.max_seq_len;
  lm.tokenizer = find_tokenizer(o, ckpt.get(), config);
  if (ckpt && ckpt->vocab) lm.chat_template = ckpt->vocab->chat_template;
  if (lm.tokenizer != nullptr && lm.tokenizer->vocab_size() > config.vocab_size)
    fail("tokenizer has {} tokens but the model's vocabulary is {}", lm.tokenizer->vocab_size(),
         config.vocab_size);
  ModelSource source;
  source.checkpoint = ckpt.get();
  source.config = config;
  source.dummy_seed = o.weights_seed;
  const int tp = o.tensor_parallel_size;
  lm.model = load_parallel_model(bo, o.dtype, source, {tp, parse_comm_kind(o.tp_communicator)},
                                 max_pass_tokens, max_logit_rows);
  const DType dtype = lm.model->weights().dtype;
  lm.name = dummy_preset ? o.model : fs::path(o.model).filename().string();
  if (lm.name.empty()) lm.name = fs::path(o.model).parent_path().filename().string();
  lm.load_seconds = now_seconds() - t0;
  log_info(
      "loaded {} ({}, {} layers, dim {}, {:.1f}M parameters, {} weights, {:.2f} GiB) on {}{} "
      "in {:.2f} s",
      lm.name, architecture_name(config.arch), config.n_layers, config.dim,
      static_cast<double>(config.n_params()) / 1e6, dtype_name(dtype),
      static_cast<double>(lm.model->weight_bytes()) / (1 << 30), lm.backend().kernel_id(),
      tp > 1 ? fmt::format(" x {} ranks ({})", tp, lm.model->communicator_name()) : "",
      lm.load_seconds);
  if (lm.backend().device() == Device::kCUDA) {
    // Canonical GEMM algorithms are tuned per M bucket on first use (and cached on disk): do it
    // before serving, so that no request's latency pays for it.
    const double w0 = now_seconds();
    lm.model->warm_up();
    log_info("canonical GEMMs ready for passes of up to {} tokens ({:.2f} s)", max_pass_tokens,
             now_seconds() - w0);
  }
  return lm;
}

}  // namespace llm42::cli
