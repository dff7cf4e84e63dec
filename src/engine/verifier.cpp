#include "engine/verifier.h"

#include <algorithm>

#include "util/error.h"
#include "util/hash.h"

namespace llm42 {
namespace {

bool fixed_shape(const EngineConfig& config) {
  return config.mode == DeterminismMode::kDvr && config.verify_schedule == VerifyMode::kFixedShape;
}

// Verification groups of up to G windows, in arrival order.
std::vector<std::vector<PassEntry>> verify_groups(const std::vector<PassEntry>& verify, int g) {
  std::vector<std::vector<PassEntry>> groups;
  for (size_t i = 0; i < verify.size(); i += static_cast<size_t>(g)) {
    const auto first = verify.begin() + static_cast<std::ptrdiff_t>(i);
    groups.emplace_back(first, first + static_cast<std::ptrdiff_t>(
                                           std::min(verify.size() - i, static_cast<size_t>(g))));
  }
  return groups;
}

void add_pass(StepPlan& plan, Schedule schedule, std::vector<PassEntry> entries, int pad_to = 0) {
  if (entries.empty()) return;
  plan.passes.push_back(PassPlan{schedule, std::move(entries), pad_to});
}

}  // namespace

bool ready_to_verify(const EngineConfig& config, const Sequence& seq) {
  return seq.speculative && seq.n_spec() > 0 &&
         (seq.n_spec() >= config.window || seq.spec_finished);
}

bool isolated_prefill(const EngineConfig& config, const Sequence& seq) {
  return fixed_shape(config) && seq.speculative;
}

int window_cost(const EngineConfig& config, int n, int k) {
  if (!fixed_shape(config)) return k;
  return n % config.group == 0 ? config.window * config.group : 0;
}

bool uses_prefix_cache(const EngineConfig& config, const Sequence& seq) {
  return config.prefix_cache && !isolated_prefill(config, seq);
}

int injected_mismatch_position(const VerifyOptions& opts, uint64_t seed, int64_t window_position,
                               int k) {
  if (opts.inject_mismatch_rate <= 0.0 || k <= 0) return -1;
  const uint64_t stream = seed ^ 0x6661756c74ULL;  // "fault"
  if (counter_uniform(stream, static_cast<uint64_t>(window_position), 0) >=
      opts.inject_mismatch_rate)
    return -1;
  if (opts.inject_position >= 0) return std::min(opts.inject_position, k - 1);
  const double u = counter_uniform(stream, static_cast<uint64_t>(window_position), 1);
  return static_cast<int>(u * k);
}

Verifier::Verifier(const EngineConfig& config, BlockManager& blocks, StopConditions stops)
    : config_(config), blocks_(blocks), stops_(std::move(stops)) {}

bool Verifier::speculates(const Request& req) const {
  return req.deterministic && config_.mode == DeterminismMode::kDvr;
}

StepPlan Verifier::assign_lanes(StepWork work) const {
  StepPlan plan;
  switch (config_.mode) {
    case DeterminismMode::kOff:
    case DeterminismMode::kGlobal: {
      // off: one fast pass. global: one canonical pass (the batch-invariant baseline).
      std::vector<PassEntry> all = std::move(work.prefill);
      all.insert(all.end(), work.decode.begin(), work.decode.end());
      add_pass(plan,
               config_.mode == DeterminismMode::kOff ? Schedule::kFast : Schedule::kCanonical,
               std::move(all));
      break;
    }
    case DeterminismMode::kDvr:
      if (fixed_shape(config_)) {
        fixed_shape_passes(std::move(work), plan);
      } else {
        invariant_passes(std::move(work), plan);
      }
      break;
  }
  return plan;
}

void Verifier::fixed_shape_passes(StepWork work, StepPlan& plan) const {
  // The paper's mechanism: unmodified fast kernels everywhere; deterministic prefill isolated in
  // passes of its own; verification groups padded to G x W tokens.
  std::vector<PassEntry> pass, isolated;
  for (const PassEntry& e : work.prefill)
    (isolated_prefill(config_, *e.seq) ? isolated : pass).push_back(e);
  pass.insert(pass.end(), work.decode.begin(), work.decode.end());
  add_pass(plan, Schedule::kFast, std::move(pass));
  for (const PassEntry& e : isolated) add_pass(plan, Schedule::kFast, {e});
  for (std::vector<PassEntry>& group : verify_groups(work.verify, config_.group))
    add_pass(plan, Schedule::kFast, std::move(group), config_.window * config_.group);
}

void Verifier::invariant_passes(StepWork work, StepPlan& plan) const {
  // Prefill is canonical for deterministic requests and fast attention for the others.
  // Deterministic decode rows with no speculative tail are canonical entries (committed at once)
  // when enough of the decode rows are deterministic (threshold 0: any one), else speculative
  // fast entries; other requests' decode rows are always fast entries. Everything goes into one
  // pass with the prefill chunks and the first verification group: canonical when any entry is.
  // Its GEMMs are then canonical for every row (per bucket as fast as the fast lane's at batch
  // sizes beyond a few rows, docs/benchmarks.md) and only the fast entries' attention differs,
  // where two passes would read every weight twice.
  const DeterminismMode mode = config_.mode;
  std::vector<PassEntry> pass = std::move(work.prefill);
  for (PassEntry& e : pass) e.fast_lane = shares_fast_kv(mode, *e.seq);
  bool canonical_decode = false;
  if (!work.decode.empty()) {
    const auto n_det = std::count_if(work.decode.begin(), work.decode.end(),
                                     [](const PassEntry& e) { return e.seq->speculative; });
    canonical_decode = n_det > 0 && static_cast<double>(n_det) >=
                                        config_.canonical_decode_threshold *
                                            static_cast<double>(work.decode.size());
  }
  for (PassEntry e : work.decode) {
    e.fast_lane = !(canonical_decode && e.seq->speculative && e.seq->n_spec() == 0);
    pass.push_back(e);
  }
  // The first verification group joins the step's pass; the others get canonical passes.
  std::vector<std::vector<PassEntry>> groups = verify_groups(work.verify, config_.group);
  for (size_t g = 0; g < groups.size(); ++g) {
    if (g == 0) {
      pass.insert(pass.end(), groups[g].begin(), groups[g].end());
    } else {
      add_pass(plan, Schedule::kCanonical, std::move(groups[g]));
    }
  }
  const bool any_canonical =
      std::any_of(pass.begin(), pass.end(), [](const PassEntry& e) { return !e.fast_lane; });
  add_pass(plan, any_canonical ? Schedule::kCanonical : Schedule::kFast, std::move(pass));
}

void Verifier::apply(const PassPlan& plan, size_t i, const PassResult& result) {
  const PassEntry& e = plan.entries[i];
  Sequence& s = *e.seq;
  const int row = result.entry_first_row[i];
  const bool canonical = plan.lane(e) == Schedule::kCanonical;
  switch (e.kind) {
    case WorkKind::kPrefill:
      on_prefill(s, e, result, row, canonical);
      break;
    case WorkKind::kDecode:
      on_decode(s, result, row, canonical);
      break;
    case WorkKind::kVerify:
      on_verify(s, e, result, row);
      break;
  }
  publish(s);
}

void Verifier::advance_canonical(Sequence& s, int from, bool canonical) const {
  // KV written from position `from` on is canonical (shareable as such through the prefix
  // cache) only when every position before it is; in off mode there is one lane.
  if ((canonical && s.n_canonical == from) || config_.mode == DeterminismMode::kOff)
    s.n_canonical = s.n_cached;
}

void Verifier::on_prefill(Sequence& s, const PassEntry& e, const PassResult& r, int row,
                          bool canonical) {
  s.n_cached = e.pos_begin + e.n_tokens;
  advance_canonical(s, e.pos_begin, canonical);
  if (row < 0) return;
  // Output token 0 comes from the prefill (canonical in dvr and global modes): committed at once.
  const SampledToken& t = r.samples[static_cast<size_t>(row)];
  s.commit(t.id, TokenLogprob{t.id, t.logprob, t.top}, stops_);
}

void Verifier::on_decode(Sequence& s, const PassResult& r, int row, bool canonical) {
  const int from = s.n_cached;
  s.n_cached += 1;
  const SampledToken& t = r.samples[static_cast<size_t>(row)];
  TokenLogprob lp{t.id, t.logprob, t.top};
  // A canonical token over a canonical prefix needs no verification.
  if (!s.speculative || (canonical && s.n_spec() == 0)) {
    advance_canonical(s, from, canonical);
    if (s.speculative) ++s.verify.canonical_decode_tokens;
    s.commit(t.id, std::move(lp), stops_);
    return;
  }
  s.append_speculative(t.id, std::move(lp), stops_);
}

void Verifier::on_verify(Sequence& s, const PassEntry& e, const PassResult& r, int row) {
  const int k = e.n_tokens;
  LLM42_ASSERT(k == s.n_spec() && e.pos_begin == s.n_prompt + s.n_committed - 1);
  std::vector<int32_t> spec(s.tokens.end() - k, s.tokens.end());
  const SampledToken* predicted = &r.samples[static_cast<size_t>(row)];
  auto predict = [&](int i) { return predicted[i].id; };
  const VerifyOptions opts{config_.inject_mismatch_rate, config_.inject_mismatch_position,
                           config_.verify_no_rollback};
  const VerifyDecision d = decide_commit(spec, predict, opts, s.seed, e.pos_begin);

  ++s.verify.windows_verified;
  ++s.verify.verify_passes;
  s.verify.verify_tokens += k;
  // Roll everything speculative back, then commit the confirmed prefix and the correction.
  std::vector<TokenLogprob> spec_lp(s.out_logprobs.end() - k, s.out_logprobs.end());
  s.drop_speculative();
  bool done = false;
  for (int i = 0; i < d.n_match && !done; ++i) {
    // Logprobs of committed tokens come from the canonical lane (except with no_rollback).
    TokenLogprob lp = config_.verify_no_rollback
                          ? spec_lp[static_cast<size_t>(i)]
                          : TokenLogprob{spec[i], predicted[i].logprob, predicted[i].top};
    done = s.commit(spec[i], std::move(lp), stops_);
  }
  if (d.mismatch && !done) {
    const SampledToken& t = predicted[d.n_match];
    done = s.commit(t.id, TokenLogprob{t.id, t.logprob, t.top}, stops_);
  }
  if (d.mismatch) {
    ++s.verify.rollbacks;
    s.verify.tokens_rolled_back += k - d.n_match;
  }
  // KV: the window's positions up to the new last token are canonical now; the rest is freed.
  s.n_cached = s.len() - 1;
  s.n_canonical = s.n_cached;
  if (!done) blocks_.truncate(s, s.n_cached);
}

void Verifier::publish(Sequence& s) {
  if (s.status != SeqStatus::kFinished && uses_prefix_cache(config_, s))
    blocks_.publish(s, s.n_canonical, shares_fast_kv(config_.mode, s) ? s.n_cached : s.n_canonical);
}

}  // namespace llm42
