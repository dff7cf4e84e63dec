#include "engine/scheduler.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <optional>

#include "util/error.h"
#include "util/timer.h"

namespace llm42 {

int PassPlan::n_tokens() const {
  int n = 0;
  for (const PassEntry& e : entries) n += e.n_tokens;
  return std::max(n, pad_to);
}

bool token_finishes(const Sequence& seq, int32_t token, int output_index, int max_seq_len,
                    const std::vector<int32_t>& eos_ids) {
  const Request& r = seq.req;
  if (r.may_stop_at(output_index)) {
    if (!r.ignore_eos && std::find(eos_ids.begin(), eos_ids.end(), token) != eos_ids.end())
      return true;
    if (std::find(r.stop_ids.begin(), r.stop_ids.end(), token) != r.stop_ids.end()) return true;
  }
  if (output_index + 1 >= r.max_tokens) return true;
  return seq.n_prompt + output_index + 1 >= max_seq_len;
}

Scheduler::Scheduler(const EngineConfig& config, BlockManager& blocks, int max_seq_len)
    : config_(config), blocks_(blocks), max_seq_len_(max_seq_len) {}

bool Scheduler::fixed_shape() const {
  return config_.mode == DeterminismMode::kDvr &&
         config_.verify_schedule == VerifyMode::kFixedShape;
}

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

bool Scheduler::ready_to_verify(const Sequence& seq) const {
  return seq.speculative && seq.n_spec() > 0 &&
         (seq.n_spec() >= config_.window || seq.spec_finished);
}

void Scheduler::preempt(Sequence* seq, StepPlan& plan) {
  blocks_.release(*seq);
  // The speculative tail is dropped; prompt + committed tokens are re-prefilled on resumption
  // (in the canonical lane for deterministic requests), which restores the same KV.
  seq->tokens.resize(static_cast<size_t>(seq->n_prompt + seq->n_committed));
  seq->out_logprobs.resize(static_cast<size_t>(seq->n_committed));
  seq->spec_finished = false;
  seq->n_cached = 0;
  seq->n_canonical = 0;
  seq->status = SeqStatus::kWaiting;
  std::erase(running_, seq);
  waiting_.push_front(seq);
  plan.preempted.push_back(seq);
  ++num_preemptions_;
}

Sequence* Scheduler::preempt_one(StepPlan& plan) {
  // The most recently admitted sequence yields (first come, first served). Sequences earlier in
  // running_ were scheduled already this step, and they are never the victim.
  LLM42_ASSERT(!running_.empty());
  Sequence* victim = running_.back();
  preempt(victim, plan);
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

StepPlan Scheduler::schedule() {
  StepPlan plan;
  const DeterminismMode mode = config_.mode;
  const bool fixed = fixed_shape();
  const int group_tokens = config_.window * config_.group;
  int budget = config_.max_num_batched_tokens;
  int score_rows = config_.max_prompt_logprobs_rows;  // logits rows left for prompt logprobs

  std::vector<PassEntry> prefill, fast_prefill, decode, verify;
  std::vector<PassEntry> isolated_prefill;  // fixed-shape: deterministic prefill, a pass each

  // Prefill lane: fast in off mode and for fixed-shape's non-speculative requests; in dvr mode
  // canonical for deterministic requests and fast attention for the others (in the step's pass);
  // canonical in global mode.
  auto prefill_entry = [&](Sequence* s, int chunk) {
    PassEntry e{s, WorkKind::kPrefill, s->n_cached, chunk};
    if (mode == DeterminismMode::kOff || (fixed && !s->speculative)) {
      fast_prefill.push_back(e);
    } else if (fixed) {
      isolated_prefill.push_back(e);
    } else {
      e.fast_attention = shares_fast_kv(mode, *s);
      prefill.push_back(e);
    }
  };
  // The chunk a sequence's prefill takes now. Fixed-shape deterministic prefill is chunked by
  // prefill_chunk alone so that its passes do not depend on load; it waits for budget instead.
  // A prefill that computes prompt logprobs takes a logits row for each of its positions
  // before the last prompt token: its chunk fits the rows left (whole in fixed-shape mode).
  auto prefill_chunk = [&](const Sequence* s) {
    const int remaining = s->prefill_target() - s->n_cached;
    const bool scoring = s->scoring_prompt() && s->n_cached < s->n_prompt - 1;
    if (fixed && s->speculative) {
      // At most the whole step's budget, or it would never fit.
      int chunk = std::min({remaining, config_.prefill_chunk, config_.max_num_batched_tokens});
      if (scoring) chunk = std::min(chunk, config_.max_prompt_logprobs_rows);
      return chunk <= budget && (!scoring || chunk <= score_rows) ? chunk : 0;
    }
    return std::min({remaining, config_.prefill_chunk, budget, scoring ? score_rows : remaining});
  };
  auto take_chunk = [&](const Sequence* s, int chunk) {
    budget -= chunk;
    if (s->scoring_prompt())
      score_rows -= std::max(0, std::min(s->n_cached + chunk, s->n_prompt - 1) - s->n_cached);
  };
  // The tokens s's work takes this step when it cannot be split (a verification window, a
  // fixed-shape deterministic prefill chunk); 0 when it takes whatever budget is left.
  auto whole_cost = [&](const Sequence& s) {
    if (s.needs_prefill()) {
      if (!fixed || !s.speculative) return 0;
      const int chunk = std::min(
          {s.prefill_target() - s.n_cached, config_.prefill_chunk, config_.max_num_batched_tokens});
      return s.scoring_prompt() ? std::min(chunk, config_.max_prompt_logprobs_rows) : chunk;
    }
    if (!ready_to_verify(s)) return 0;
    return fixed ? group_tokens : s.n_spec();
  };
  // Makes room for `positions` KV positions of s, preempting newer sequences; false when s
  // itself had to be preempted.
  auto reserve = [&](Sequence* s, int positions) {
    while (!blocks_.ensure(*s, positions)) {
      if (preempt_one(plan) == s) return false;
    }
    return true;
  };

  // The oldest running sequence whose work cannot be split has its tokens held for it until its
  // turn, so that the decode rows and chunks of older sequences cannot starve it step after step
  // (EngineConfig::validate makes every such cost fit in the budget).
  // A held prefill chunk that computes prompt logprobs holds its logits rows too.
  Sequence* held_for = nullptr;
  int held = 0;
  int held_rows = 0;
  for (Sequence* s : running_) {
    held = whole_cost(*s);
    if (held > 0) {
      held_for = s;
      if (s->needs_prefill() && s->scoring_prompt())
        held_rows = std::max(0, std::min(s->n_cached + held, s->n_prompt - 1) - s->n_cached);
      break;
    }
  }
  budget -= held;
  score_rows -= held_rows;

  int verify_windows = 0;
  for (size_t i = 0; i < running_.size(); ++i) {
    Sequence* s = running_[i];
    if (s == held_for) {
      budget += held;
      score_rows += held_rows;
      held = 0;
      held_rows = 0;
    }
    if (budget <= 0) {
      if (held == 0) break;
      continue;
    }
    if (s->needs_prefill()) {
      const int chunk = prefill_chunk(s);
      if (chunk <= 0) continue;
      if (!reserve(s, s->n_cached + chunk)) break;  // s was the newest: nothing after it
      prefill_entry(s, chunk);
      take_chunk(s, chunk);
    } else if (ready_to_verify(*s)) {
      const int k = s->n_spec();
      int cost = k;
      if (fixed) cost = verify_windows % config_.group == 0 ? group_tokens : 0;
      if (cost > budget) continue;
      // The window's KV positions exist already (written by the fast decode steps).
      verify.push_back(PassEntry{s, WorkKind::kVerify, s->n_prompt + s->n_committed - 1, k});
      ++verify_windows;
      budget -= cost;
    } else {
      if (!reserve(s, s->n_cached + 1)) break;
      decode.push_back(PassEntry{s, WorkKind::kDecode, s->n_cached, 1});
      budget -= 1;
    }
  }

  budget += held;  // held_for was preempted before its turn
  score_rows += held_rows;

  // KV blocks a sequence will still need: the rest of its prompt (certain), and reserve_ratio()
  // of the output tokens max_tokens still allows after the committed ones (at most
  // kOutputReserveCap of them; a speculative tail already holds its blocks and counts in them).
  const double ratio = reserve_ratio();
  auto future_blocks = [&](const Sequence& s) {
    const int out_left = std::clamp(s.req.max_tokens - s.n_committed, 0, kOutputReserveCap);
    const int positions = std::max(s.len(), s.n_prompt + s.n_committed +
                                                static_cast<int>(std::ceil(ratio * out_left)));
    return std::max(0, blocks_.blocks_for(positions) - static_cast<int>(s.blocks.size()));
  };
  int reserved = 0;  // by the running sequences; only admission needs it
  if (!waiting_.empty())
    for (const Sequence* s : running_) reserved += future_blocks(*s);

  // Admission, first come first served, while the budget, the sequence cap and the KV allow.
  while (!waiting_.empty() && budget > 0 &&
         static_cast<int>(running_.size()) < config_.max_num_seqs) {
    Sequence* s = waiting_.front();
    // A request for prompt logprobs computes its whole prompt.
    const bool cache_ok =
        config_.prefix_cache && !(fixed && s->speculative) && !s->req.scores_prompt();
    std::optional<BlockManager::Match> lookup;
    if (s->blocks.empty() && cache_ok) {
      // Leave at least one prompt token to compute when the first output token is still to be
      // sampled from the prefill's logits.
      const int max_match = s->n_committed == 0 ? s->n_prompt - 1 : s->len() - 1;
      // Requests that need no canonical values (and never roll back) may also reuse fast-lane
      // blocks of other such requests.
      const BlockManager::Match m = blocks_.match_prefix(*s, max_match, shares_fast_kv(mode, *s));
      lookup = m;
      s->n_cached = m.positions;
      s->n_canonical = m.canonical;
      if (s->n_committed == 0) s->n_cached_hit = m.positions;
    }
    const int chunk = prefill_chunk(s);
    if (chunk <= 0 && s->needs_prefill()) break;
    const bool room =
        running_.empty() || future_blocks(*s) + reserved <= blocks_.num_available();
    if (!room || !blocks_.ensure(*s, s->n_cached + std::max(chunk, 0))) {
      blocks_.release(*s);
      s->n_cached = s->n_canonical = 0;
      break;
    }
    reserved += future_blocks(*s);
    if (lookup) blocks_.count_prefix_lookup(*lookup);
    waiting_.pop_front();
    running_.push_back(s);
    s->status = SeqStatus::kRunning;
    if (s->scheduled_time == 0) s->scheduled_time = now_seconds();
    if (chunk > 0) {
      prefill_entry(s, chunk);
      take_chunk(s, chunk);
    }
  }

  // Assemble the passes.
  auto add_pass = [&](Schedule sched, std::vector<PassEntry> entries, int pad_to = 0) {
    if (entries.empty()) return;
    plan.passes.push_back(PassPlan{sched, std::move(entries), pad_to});
  };
  if (mode == DeterminismMode::kOff || mode == DeterminismMode::kGlobal) {
    const Schedule sched = mode == DeterminismMode::kOff ? Schedule::kFast : Schedule::kCanonical;
    std::vector<PassEntry> all = std::move(mode == DeterminismMode::kOff ? fast_prefill : prefill);
    all.insert(all.end(), decode.begin(), decode.end());
    add_pass(sched, std::move(all));
    return plan;
  }

  // Verification groups of up to G requests, in arrival order.
  auto verify_group = [&](size_t g) {
    const auto first = verify.begin() + static_cast<std::ptrdiff_t>(g);
    return std::vector<PassEntry>(
        first, first + static_cast<std::ptrdiff_t>(std::min(verify.size() - g,
                                                             static_cast<size_t>(config_.group))));
  };
  if (fixed) {
    // Fixed-shape (the paper's mechanism): unmodified fast kernels everywhere; deterministic
    // prefill isolated in passes of its own; verification groups padded to G x W tokens.
    fast_prefill.insert(fast_prefill.end(), decode.begin(), decode.end());
    add_pass(Schedule::kFast, std::move(fast_prefill));
    for (const PassEntry& e : isolated_prefill) add_pass(Schedule::kFast, {e});
    for (size_t g = 0; g < verify.size(); g += static_cast<size_t>(config_.group))
      add_pass(Schedule::kFast, verify_group(g), group_tokens);
    return plan;
  }

  // dvr: deterministic decode rows with no speculative tail are canonical entries (committed at
  // once) when enough of the decode rows are deterministic (threshold 0: any one), else
  // speculative fast entries; other requests' decode rows are always fast entries. Everything
  // goes into one pass with the prefill chunks and the first verification group: canonical when
  // any entry is. Its GEMMs are then canonical for every row (per bucket as fast as the fast
  // lane's at batch sizes beyond a few rows, docs/benchmarks.md) and only the fast entries'
  // attention differs, where two passes would read every weight twice.
  bool canonical_decode = false;
  if (!decode.empty()) {
    const auto n_det = std::count_if(decode.begin(), decode.end(),
                                     [](const PassEntry& e) { return e.seq->speculative; });
    canonical_decode = n_det > 0 && static_cast<double>(n_det) >=
                                        config_.canonical_decode_threshold *
                                            static_cast<double>(decode.size());
  }
  std::vector<PassEntry> pass = std::move(prefill);
  for (PassEntry e : decode) {
    e.fast_attention = !(canonical_decode && e.seq->speculative && e.seq->n_spec() == 0);
    pass.push_back(e);
  }
  // The first verification group joins the step's pass; the others get canonical passes.
  for (size_t g = 0; g < verify.size(); g += static_cast<size_t>(config_.group)) {
    std::vector<PassEntry> group = verify_group(g);
    if (g == 0) {
      pass.insert(pass.end(), group.begin(), group.end());
    } else {
      add_pass(Schedule::kCanonical, std::move(group));
    }
  }
  const bool any_canonical = std::any_of(pass.begin(), pass.end(),
                                         [](const PassEntry& e) { return !e.fast_attention; });
  add_pass(any_canonical ? Schedule::kCanonical : Schedule::kFast, std::move(pass));
  return plan;
}

}  // namespace llm42
