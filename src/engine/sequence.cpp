#include "engine/sequence.h"

#include <algorithm>

#include "util/error.h"
#include "util/timer.h"

namespace llm42 {

bool Sequence::stop_token(int32_t token, const StopConditions& stops) const {
  return (!req.ignore_eos &&
          std::find(stops.eos_ids.begin(), stops.eos_ids.end(), token) != stops.eos_ids.end()) ||
         std::find(req.stop_ids.begin(), req.stop_ids.end(), token) != req.stop_ids.end();
}

bool Sequence::finishes_at(int32_t token, int output_index, const StopConditions& stops) const {
  if (req.may_stop_at(output_index) && stop_token(token, stops)) return true;
  if (output_index + 1 >= req.max_tokens) return true;
  return n_prompt + output_index + 1 >= stops.max_seq_len;
}

bool Sequence::commit(int32_t token, TokenLogprob lp, const StopConditions& stops) {
  LLM42_ASSERT(n_spec() == 0, "commit with a speculative tail");
  const int index = n_committed;
  tokens.push_back(token);
  out_logprobs.push_back(std::move(lp));
  ++n_committed;
  if (first_token_time == 0) first_token_time = now_seconds();
  const size_t text_before = text.size();
  if (detok) text += detok->push(token);
  bool done = finishes_at(token, index, stops);
  FinishReason reason = FinishReason::kStop;
  if (done) reason = stop_token(token, stops) ? FinishReason::kStop : FinishReason::kLength;
  if (!req.stop_strings.empty() && req.may_stop_at(index)) {
    const size_t cut = find_stop(text, text_before, req);
    if (cut != std::string::npos) {
      text.resize(cut);
      done = true;
      reason = FinishReason::kStop;
    }
  }
  if (done) {
    finish_reason = reason;
    status = SeqStatus::kFinished;
  }
  return done;
}

void Sequence::append_speculative(int32_t token, TokenLogprob lp, const StopConditions& stops) {
  const int index = n_output();
  tokens.push_back(token);
  out_logprobs.push_back(std::move(lp));
  if (finishes_at(token, index, stops)) spec_finished = true;
  if (!spec_finished && !req.stop_strings.empty() && stops.tokenizer != nullptr) {
    // Would the speculative text complete a stop string? Then verify now rather than decode on.
    std::string tail = text.substr(text.size() > 256 ? text.size() - 256 : 0);
    for (int i = n_prompt + n_committed; i < len(); ++i)
      tail += stops.tokenizer->token_bytes(tokens[static_cast<size_t>(i)]);
    for (const std::string& st : req.stop_strings)
      if (tail.find(st) != std::string::npos) spec_finished = true;
  }
}

void Sequence::drop_speculative() {
  tokens.resize(static_cast<size_t>(n_prompt + n_committed));
  out_logprobs.resize(static_cast<size_t>(n_committed));
  spec_finished = false;
}

size_t find_stop(const std::string& text, size_t text_before, const Request& req) {
  size_t cut = std::string::npos;
  size_t cut_end = std::string::npos;
  for (const std::string& st : req.stop_strings) {
    // Occurrences that start here or later end past text_before.
    const size_t from = text_before + 1 > st.size() ? text_before + 1 - st.size() : 0;
    const size_t at = text.find(st, from);
    if (at != std::string::npos && at < cut) {
      cut = at;
      cut_end = at + st.size();
    }
  }
  return req.include_stop_str_in_output ? cut_end : cut;
}

size_t releasable_text(const std::string& text, const Request& req) {
  size_t hold = 0;
  for (const std::string& st : req.stop_strings) hold = std::max(hold, st.size() - 1);
  size_t upto = text.size() > hold ? text.size() - hold : 0;
  // Back to the first byte of a character (continuation bytes are 10xxxxxx).
  while (upto > 0 && upto < text.size() && (static_cast<unsigned char>(text[upto]) & 0xC0) == 0x80)
    --upto;
  return upto;
}

}  // namespace llm42
