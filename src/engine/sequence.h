// A sequence: one request's state inside the engine.
//
// tokens = prompt (P) + committed output (c) + speculative output (k). Invariants (DESIGN.md §3):
//   - once prefilled, the KV of positions [0, n_cached) is written and n_cached == len() - 1:
//     the last token is the next decode input;
//   - for a deterministic request in dvr mode, positions [0, P + c - 1) hold canonical KV;
//   - only committed tokens ever leave the engine.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/request.h"
#include "tokenizer/tokenizer.h"

namespace llm42 {

enum class SeqStatus { kWaiting, kRunning, kFinished };

// What finishes a sequence besides its request's own limits: the model's EOS ids, the context
// length, and the tokenizer that spells stop strings (null: ids only, no stop strings).
struct StopConditions {
  int max_seq_len = 0;
  std::vector<int32_t> eos_ids;
  const Tokenizer* tokenizer = nullptr;
};

struct Sequence {
  uint64_t id = 0;
  Request req;
  OutputCallback on_output;
  uint64_t seed = 0;
  bool speculative = false;  // deterministic in dvr mode: decodes speculatively, then verifies
  double arrival_time = 0;
  double first_token_time = 0;
  double scheduled_time = 0;  // first admission (Scheduler::schedule); 0 before

  SeqStatus status = SeqStatus::kWaiting;
  FinishReason finish_reason = FinishReason::kNone;

  std::vector<int32_t> tokens;
  int n_prompt = 0;
  int n_committed = 0;
  std::vector<TokenLogprob> out_logprobs;  // committed + speculative, one per output token
  // Request::prompt_logprobs: entry p - 1 for prompt token p (1 <= p < P); the first
  // n_prompt_scored are computed (a preempted sequence recomputes its prompt, and keeps these).
  std::vector<TokenLogprob> prompt_logprobs;
  int n_prompt_scored = 0;
  bool prompt_logprobs_sent = false;
  int n_cached = 0;      // positions whose KV is written
  int n_canonical = 0;   // positions whose KV is canonical (a prefix of the cached ones)
  int n_cached_hit = 0;  // prompt tokens served from the prefix cache on admission
  bool spec_finished = false;  // a speculative token would finish the request: verify now
  std::vector<int32_t> blocks;  // block table
  std::vector<uint64_t> block_hashes;  // chain hashes of its full blocks in the prefix cache

  VerifyStats verify;
  int n_emitted = 0;  // committed tokens already sent to the client
  std::unique_ptr<Detokenizer> detok;
  std::string text;   // committed text so far (for stop strings)
  size_t text_emitted = 0;
  bool final_sent = false;  // the finished output went out
  std::string error;        // when finish_reason == kError
  // Watchdog (Scheduler::watch): (len, n_cached, n_committed) when it last changed, and the
  // engine steps since then that count as stalled.
  std::array<int, 3> progress_mark{-1, -1, -1};
  int64_t stalled_steps = 0;

  int len() const { return static_cast<int>(tokens.size()); }
  int n_output() const { return len() - n_prompt; }
  int n_spec() const { return n_output() - n_committed; }
  // Tokens whose KV a prefill must compute before decoding can start.
  int prefill_target() const { return n_committed == 0 ? n_prompt : len() - 1; }
  bool needs_prefill() const { return n_cached < prefill_target(); }
  // Prompt tokens whose logprobs the prefill still has to compute.
  bool scoring_prompt() const { return req.scores_prompt() && n_prompt_scored < n_prompt - 1; }
  // The logits rows a prefill of positions [pos_begin, pos_begin + n) spends on prompt logprobs:
  // one per position before the last prompt token, while any are still to compute.
  int prompt_rows(int pos_begin, int n) const {
    if (!scoring_prompt()) return 0;
    return std::max(0, std::min(pos_begin + n, n_prompt - 1) - pos_begin);
  }

  // Whether token, at output index i (0-based), would finish the sequence: EOS or a stop id
  // (from min_tokens on), max_tokens, the context limit. Stop strings are found on committed
  // text, by commit().
  bool finishes_at(int32_t token, int output_index, const StopConditions& stops) const;
  // Appends token to the committed output (there must be no speculative tail) and its text;
  // returns true, with the sequence finished, when it finishes it (a stop string cuts the text
  // where it starts).
  bool commit(int32_t token, TokenLogprob lp, const StopConditions& stops);
  // Appends a speculative token; sets spec_finished when it, or the speculative text (a stop
  // string), would finish the sequence: then it is verified rather than decoded on.
  void append_speculative(int32_t token, TokenLogprob lp, const StopConditions& stops);
  // Drops the speculative tail: rollback, preemption, finish.
  void drop_speculative();

 private:
  // EOS (unless ignore_eos) or one of the request's stop ids.
  bool stop_token(int32_t token, const StopConditions& stops) const;
};

// Stop strings. Both are functions of the text alone (the text is a function of the committed
// token ids), never of how many tokens were committed at once or when text went out, so that a
// deterministic answer is the same text streamed or not, in every determinism mode.
//
// Where the first stop string that ends past `text_before` (the text's length before the last
// token's text was appended) starts, with `include_stop_str_in_output` where it ends; npos when
// none does. A stop string that ended earlier was found then (or not allowed: min_tokens).
size_t find_stop(const std::string& text, size_t text_before, const Request& req);

// How much of `text` may go out while the request runs: all of it but the longest tail that
// could still be the start of a stop string, cut back to a character boundary so that a chunk
// never ends inside a UTF-8 character.
size_t releasable_text(const std::string& text, const Request& req);

}  // namespace llm42
