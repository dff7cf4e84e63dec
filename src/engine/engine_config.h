// Engine configuration: determinism mode, verifier window and group, scheduler limits, KV cache.
// Every field has a command-line flag of the same name (dashes for underscores) in
// `llm42 serve`, `generate` and `bench`; see docs/engine.md.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace llm42 {

// Server determinism modes (DESIGN.md §3).
//   kOff    : every pass fast; the deterministic flag is ignored.
//   kDvr    : per-request opt-in; deterministic requests decode fast and are verified in the
//             canonical lane (decode-verify-rollback).
//   kGlobal : every pass canonical (the batch-invariant baseline); nothing is verified.
enum class DeterminismMode { kOff, kDvr, kGlobal };

// How verification passes are run: the verification mode (flag --verify-schedule, field
// verify_schedule: the names the CLI has always had; in code a schedule is a pass's lane,
// core/schedule.h).
//   kInvariant  : canonical kernels, any pass size, no padding (the default).
//   kFixedShape : the paper's mechanism: fast kernels, every verification pass padded to exactly
//                 G x W tokens, deterministic prefill isolated, prefix cache off for
//                 deterministic requests. Deterministic only within one (W, G).
enum class VerifyMode { kInvariant, kFixedShape };

DeterminismMode parse_determinism_mode(std::string_view s);
std::string_view determinism_mode_name(DeterminismMode m);
VerifyMode parse_verify_mode(std::string_view s);
std::string_view verify_mode_name(VerifyMode s);

struct EngineConfig {
  DeterminismMode mode = DeterminismMode::kDvr;
  VerifyMode verify_schedule = VerifyMode::kInvariant;
  int window = 64;      // W: speculative tokens per verification window
  int group = 8;        // G: requests verified together in one pass

  // Scheduler.
  int max_num_seqs = 256;             // running sequences at most
  int max_num_batched_tokens = 2048;  // tokens per step over all passes
  int prefill_chunk = 512;            // tokens of one prompt per step at most
  // Logits rows a step may compute for prompt logprobs (Request::prompt_logprobs: echo with
  // logprobs, prompt_logprobs): the prefill chunks of such requests are cut to fit. Each row
  // costs vocab x 4 bytes of logits workspace, allocated at startup.
  int max_prompt_logprobs_rows = 256;
  // Admission keeps KV blocks free (or evictable) for the rest of every running request's
  // prompt and this share of its remaining max_tokens (at most 4096 tokens of it): a new request
  // waits unless they cover that and the same for itself. 0 = prompts only (running requests
  // are preempted, and later recomputed, when their output outgrows the pool); 1 = never
  // preempt requests that run to a max_tokens of at most 4096; -1 = auto: finished requests'
  // output tokens over their min(max_tokens, 4096), moving averages (1 before any finished).
  // A lone request is always admitted.
  double admission_reserve = -1.0;
  // In dvr mode, run a whole decode step in the canonical lane when at least this fraction of
  // its rows, and at least one, are deterministic (tokens of requests without a speculative
  // tail are then committed directly). 0 = whenever one is; 1.0 = only when all are; above 1 =
  // never; negative = auto (0 on CUDA, never on the CPU: the Engine resolves it from the
  // backend). A step without deterministic rows always runs fast.
  double canonical_decode_threshold = 1.01;

  // Decode passes of at most this many rows run as captured CUDA graphs (on a backend with
  // graphs), padded to a bucket: 1, 2, 4, 8, then multiples of 8. 0 = never (every pass eager).
  int cuda_graph_max_batch = 256;
  // At TP > 1 with NCCL ranks, run those decode passes as graphs too, each rank's exchanges
  // captured in its graph (experimental: not yet run on several GPUs). Without it, and always
  // with in-process ranks (whose exchanges meet on the host), tensor-parallel passes are eager.
  bool tp_cuda_graphs = false;

  // KV cache.
  int block_size = 16;
  int num_blocks = 0;              // 0 = sized from memory (kv_cache_memory_fraction)
  // Of the memory free after weights and workspaces (CUDA: of what --gpu-memory-fraction leaves);
  // -1: auto, resolved by the Engine from the backend (0.9 on CUDA, 0.5 of free RAM on the CPU).
  double kv_cache_memory_fraction = -1.0;
  bool prefix_cache = true;

  // Fault injection (DESIGN.md §3).
  double inject_mismatch_rate = 0.0;  // fraction of verification windows forced to mismatch
  int inject_mismatch_position = -1;  // where in the window (clamped to k-1); -1 = random
  bool verify_no_rollback = false;    // verify, but always accept the speculative tokens

  // Watchdog: a request that makes no progress (no KV position, token or commit) for this many
  // engine steps, while running or while the engine runs no pass at all, is failed with an
  // error. 0 = off. A healthy engine advances every running request within a few steps.
  int max_stalled_steps = 10000;

  // Self-checks: call BlockManager::check_integrity() after every step (tests, debug).
  bool check_integrity = false;
  // Default seed for deterministic requests that give none.
  uint64_t default_seed = 0;

  // Throws llm42::Error naming the field when a value is out of range.
  void validate() const;
};

}  // namespace llm42
