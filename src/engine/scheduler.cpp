#include "engine/scheduler.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <optional>

#include "engine/verifier.h"
#include "util/error.h"
#include "util/timer.h"

namespace llm42 {

Scheduler::Scheduler(const EngineConfig& config, BlockManager& blocks)
    : config_(config), blocks_(blocks) {}

std::vector<Sequence*> Scheduler::watch(bool ran_passes) {
  std::vector<Sequence*> stalled;
  if (config_.max_stalled_steps <= 0) return stalled;
  auto check = [&](Sequence* s, bool counts) {
    const std::array<int, 3> mark{s->len(), s->n_cached, s->n_committed};
    if (!counts || mark != s->progress_mark) {
      s->progress_mark = mark;
      s->stalled_steps = 0;
    } else if (++s->stalled_steps >= config_.max_stalled_steps) {
      stalled.push_back(s);
    }
  };
  for (Sequence* s : running_) check(s, true);
  // A waiting sequence behind work that runs is queued, not stalled.
  for (Sequence* s : waiting_) check(s, !ran_passes);
  return stalled;
}

void Scheduler::add(Sequence* seq) {
  seq->status = SeqStatus::kWaiting;
  waiting_.push_back(seq);
}

void Scheduler::remove(Sequence* seq) {
  std::erase(running_, seq);
  std::erase(waiting_, seq);
}

void Scheduler::preempt(Sequence* seq, StepWork& work) {
  blocks_.release(*seq);
  // The speculative tail is dropped; prompt + committed tokens are re-prefilled on resumption
  // (in the canonical lane for deterministic requests), which restores the same KV.
  seq->drop_speculative();
  seq->n_cached = 0;
  seq->n_canonical = 0;
  seq->status = SeqStatus::kWaiting;
  std::erase(running_, seq);
  waiting_.push_front(seq);
  work.preempted.push_back(seq);
  ++num_preemptions_;
}

Sequence* Scheduler::preempt_one(StepWork& work) {
  // The most recently admitted sequence yields (first come, first served). Sequences earlier in
  // running_ were scheduled already this step, and they are never the victim.
  LLM42_ASSERT(!running_.empty());
  Sequence* victim = running_.back();
  preempt(victim, work);
  return victim;
}

double Scheduler::reserve_ratio() const {
  if (config_.admission_reserve >= 0) return config_.admission_reserve;
  return expected_avg_ > 0 ? std::min(1.0, used_avg_ / expected_avg_) : 1.0;
}

void Scheduler::on_finished(const Sequence& seq) {
  if (config_.admission_reserve >= 0) return;
  const int expected = std::min(seq.req.max_tokens, kOutputReserveCap);
  if (expected <= 0) return;
  // Moving averages (over about the last 16 finished requests) of the tokens used and of the
  // tokens reserved for: their ratio weighs each request by its reserve, so that short requests
  // that run to max_tokens do not set the share reserved for long ones.
  constexpr double kWeight = 1.0 / 16;
  used_avg_ += kWeight * (std::min(seq.n_committed, expected) - used_avg_);
  expected_avg_ += kWeight * (expected - expected_avg_);
}

StepWork Scheduler::schedule() {
  StepWork work;
  Budget budget{config_.max_num_batched_tokens, config_.max_prompt_logprobs_rows};
  collect(work, budget);
  admit(work, budget);
  return work;
}

int Scheduler::isolated_chunk(const Sequence& s, bool scoring) const {
  // At most the whole step's budget, or it would never fit.
  const int chunk = std::min(
      {s.prefill_target() - s.n_cached, config_.prefill_chunk, config_.max_num_batched_tokens});
  return scoring ? std::min(chunk, config_.max_prompt_logprobs_rows) : chunk;
}

// A prefill that computes prompt logprobs takes a logits row for each of its positions before
// the last prompt token: its chunk fits the rows left (whole when isolated).
int Scheduler::prefill_chunk(const Sequence& s, const Budget& budget) const {
  const int remaining = s.prefill_target() - s.n_cached;
  const bool scoring = s.prompt_rows(s.n_cached, 1) > 0;
  if (isolated_prefill(config_, s)) {
    const int chunk = isolated_chunk(s, scoring);
    return chunk <= budget.tokens && (!scoring || chunk <= budget.score_rows) ? chunk : 0;
  }
  return std::min(
      {remaining, config_.prefill_chunk, budget.tokens, scoring ? budget.score_rows : remaining});
}

void Scheduler::take_chunk(const Sequence& s, int chunk, Budget& budget) const {
  budget.tokens -= chunk;
  budget.score_rows -= s.prompt_rows(s.n_cached, chunk);
}

int Scheduler::whole_cost(const Sequence& s) const {
  if (s.needs_prefill())
    return isolated_prefill(config_, s) ? isolated_chunk(s, s.prompt_rows(s.n_cached, 1) > 0) : 0;
  if (!ready_to_verify(config_, s)) return 0;
  return window_cost(config_, 0, s.n_spec());
}

bool Scheduler::reserve(Sequence* s, int positions, StepWork& work) {
  while (!blocks_.ensure(*s, positions)) {
    if (preempt_one(work) == s) return false;
  }
  return true;
}

void Scheduler::collect(StepWork& work, Budget& budget) {
  // The oldest running sequence whose work cannot be split has its tokens held for it until its
  // turn, so that the decode rows and chunks of older sequences cannot starve it step after step
  // (EngineConfig::validate makes every such cost fit in the budget).
  // A held prefill chunk that computes prompt logprobs holds its logits rows too.
  Sequence* held_for = nullptr;
  Budget held;
  for (Sequence* s : running_) {
    held.tokens = whole_cost(*s);
    if (held.tokens > 0) {
      held_for = s;
      if (s->needs_prefill()) held.score_rows = s->prompt_rows(s->n_cached, held.tokens);
      break;
    }
  }
  budget.tokens -= held.tokens;
  budget.score_rows -= held.score_rows;

  for (size_t i = 0; i < running_.size(); ++i) {
    Sequence* s = running_[i];
    if (s == held_for) {
      budget.tokens += held.tokens;
      budget.score_rows += held.score_rows;
      held = Budget{};
    }
    if (budget.tokens <= 0) {
      if (held.tokens == 0) break;
      continue;
    }
    if (s->needs_prefill()) {
      const int chunk = prefill_chunk(*s, budget);
      if (chunk <= 0) continue;
      if (!reserve(s, s->n_cached + chunk, work)) break;  // s was the newest: nothing after it
      work.prefill.push_back(PassEntry{s, WorkKind::kPrefill, s->n_cached, chunk});
      take_chunk(*s, chunk, budget);
    } else if (ready_to_verify(config_, *s)) {
      const int k = s->n_spec();
      const int cost = window_cost(config_, static_cast<int>(work.verify.size()), k);
      if (cost > budget.tokens) continue;
      // The window's KV positions exist already (written by the fast decode steps).
      work.verify.push_back(PassEntry{s, WorkKind::kVerify, s->n_prompt + s->n_committed - 1, k});
      budget.tokens -= cost;
    } else {
      if (!reserve(s, s->n_cached + 1, work)) break;
      work.decode.push_back(PassEntry{s, WorkKind::kDecode, s->n_cached, 1});
      budget.tokens -= 1;
    }
  }

  budget.tokens += held.tokens;  // held_for was preempted before its turn
  budget.score_rows += held.score_rows;
}

// KV blocks a sequence will still need: the rest of its prompt (certain), and `ratio` of the
// output tokens max_tokens still allows after the committed ones (at most kOutputReserveCap of
// them; a speculative tail already holds its blocks and counts in them).
int Scheduler::future_blocks(const Sequence& s, double ratio) const {
  const int out_left = std::clamp(s.req.max_tokens - s.n_committed, 0, kOutputReserveCap);
  const int positions =
      std::max(s.len(), s.n_prompt + s.n_committed + static_cast<int>(std::ceil(ratio * out_left)));
  return std::max(0, blocks_.blocks_for(positions) - static_cast<int>(s.blocks.size()));
}

void Scheduler::admit(StepWork& work, Budget& budget) {
  const double ratio = reserve_ratio();
  int reserved = 0;  // by the running sequences; only admission needs it
  if (!waiting_.empty())
    for (const Sequence* s : running_) reserved += future_blocks(*s, ratio);

  while (!waiting_.empty() && budget.tokens > 0 &&
         static_cast<int>(running_.size()) < config_.max_num_seqs) {
    Sequence* s = waiting_.front();
    // A request for prompt logprobs computes its whole prompt.
    const bool cache_ok = uses_prefix_cache(config_, *s) && !s->req.scores_prompt();
    std::optional<BlockManager::Match> lookup;
    if (s->blocks.empty() && cache_ok) {
      // Leave at least one prompt token to compute when the first output token is still to be
      // sampled from the prefill's logits.
      const int max_match = s->n_committed == 0 ? s->n_prompt - 1 : s->len() - 1;
      // Requests that need no canonical values (and never roll back) may also reuse fast-lane
      // blocks of other such requests.
      const BlockManager::Match m =
          blocks_.match_prefix(*s, max_match, shares_fast_kv(config_.mode, *s));
      lookup = m;
      s->n_cached = m.positions;
      s->n_canonical = m.canonical;
      if (s->n_committed == 0) s->n_cached_hit = m.positions;
    }
    const int chunk = prefill_chunk(*s, budget);
    if (chunk <= 0 && s->needs_prefill()) break;
    const bool room =
        running_.empty() || future_blocks(*s, ratio) + reserved <= blocks_.num_available();
    if (!room || !blocks_.ensure(*s, s->n_cached + std::max(chunk, 0))) {
      blocks_.release(*s);
      s->n_cached = s->n_canonical = 0;
      break;
    }
    reserved += future_blocks(*s, ratio);
    if (lookup) blocks_.count_prefix_lookup(*lookup);
    waiting_.pop_front();
    running_.push_back(s);
    s->status = SeqStatus::kRunning;
    if (s->scheduled_time == 0) s->scheduled_time = now_seconds();
    if (chunk > 0) {
      work.prefill.push_back(PassEntry{s, WorkKind::kPrefill, s->n_cached, chunk});
      take_chunk(*s, chunk, budget);
    }
  }
}

}  // namespace llm42
