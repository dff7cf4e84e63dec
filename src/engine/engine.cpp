#include "engine/engine.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <random>

#include "core/version.h"
#include "engine/fingerprint.h"
#include "engine/verifier.h"
#include "util/digest.h"
#include "util/error.h"
#include "util/log.h"
#include "util/timer.h"

namespace llm42 {
namespace {

void validate_sampling(const SamplingParams& p) {
  if (!(p.temperature >= 0.0f && p.temperature <= 100.0f))
    fail("'temperature' = {}: must be in [0, 100]", p.temperature);
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) fail("'top_p' = {}: must be in (0, 1]", p.top_p);
  if (p.top_k < 0) fail("'top_k' = {}: must be 0 (off) or positive", p.top_k);
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) fail("'min_p' = {}: must be in [0, 1]", p.min_p);
  if (!(p.presence_penalty >= -2.0f && p.presence_penalty <= 2.0f))
    fail("'presence_penalty' = {}: must be in [-2, 2]", p.presence_penalty);
  if (!(p.frequency_penalty >= -2.0f && p.frequency_penalty <= 2.0f))
    fail("'frequency_penalty' = {}: must be in [-2, 2]", p.frequency_penalty);
  if (!(p.repetition_penalty > 0.0f && p.repetition_penalty <= 10.0f))
    fail("'repetition_penalty' = {}: must be in (0, 10]", p.repetition_penalty);
  if (p.top_logprobs < 0 || p.top_logprobs > 20)
    fail("'top_logprobs' = {}: must be in [0, 20]", p.top_logprobs);
}

// Whether the n sampled rows from `first` came from finite logits.
bool finite_rows(const PassResult& r, int first, int n) {
  return std::all_of(r.samples.begin() + first, r.samples.begin() + first + n, from_finite_logits);
}

// The first of the n sampled rows from `first` whose logits were not finite (its offset), or -1.
int first_nonfinite_row(const PassResult& r, int first, int n) {
  const auto begin = r.samples.begin() + first;
  const auto it = std::find_if_not(begin, begin + n, from_finite_logits);
  return it == begin + n ? -1 : static_cast<int>(it - begin);
}

}  // namespace

std::string_view finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::kNone:
      return "";
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kAbort:
      return "abort";
    case FinishReason::kError:
      return "error";
  }
  return "";
}

Engine::Engine(Transformer& model, const EngineConfig& config, const Tokenizer* tokenizer)
    : owned_model_(std::make_unique<ParallelModel>(model)),
      model_(*owned_model_),
      config_(config),
      tokenizer_(tokenizer) {
  init();
}

Engine::Engine(ParallelModel& model, const EngineConfig& config, const Tokenizer* tokenizer)
    : model_(model), config_(config), tokenizer_(tokenizer) {
  init();
}

void Engine::init() {
  if (config_.canonical_decode_threshold < 0) {
    // auto: on CUDA the canonical lane decodes as fast as the fast one (split-K-free GEMMs
    // autotuned per M bucket; docs/benchmarks.md), so any deterministic row makes the whole
    // decode step canonical and its tokens need no verification. On the CPU the canonical lane
    // gives up split-K and split-KV parallelism: decode fast and verify.
    config_.canonical_decode_threshold = model_.backend().device() == Device::kCUDA ? 0.0 : 1.01;
  }
  if (config_.kv_cache_memory_fraction == -1) {
    // auto: CUDA's free_memory() already leaves out 1 - --gpu-memory-fraction of the card and
    // a reserve for the workspaces that grow with the pass, and nothing else large is allocated
    // after the KV cache: give it most of that (a pool too small to hold --max-num-seqs
    // sequences preempts and recomputes them). On the CPU the pool shares RAM with the rest of
    // the machine.
    config_.kv_cache_memory_fraction = model_.backend().device() == Device::kCUDA ? 0.9 : 0.5;
  }
  config_.validate();
  const ModelConfig& mc = model_.config();
  max_seq_len_ = mc.max_seq_len;
  StopConditions stops{max_seq_len_, {mc.eos_ids.begin(), mc.eos_ids.end()}, tokenizer_};
  if (tokenizer_ != nullptr)
    for (int32_t id : tokenizer_->eos_ids())
      if (std::find(stops.eos_ids.begin(), stops.eos_ids.end(), id) == stops.eos_ids.end())
        stops.eos_ids.push_back(id);

  Backend& backend = model_.backend();
  const int bs = config_.block_size;
  const size_t block_bytes = model_.kv_block_bytes(bs);  // per rank: its KV heads
  const int64_t useful =
      static_cast<int64_t>(config_.max_num_seqs) * ((max_seq_len_ + bs - 1) / bs);
  int64_t n_blocks = config_.num_blocks;
  if (n_blocks == 0) {
    const double budget =
        static_cast<double>(model_.free_memory_per_rank()) * config_.kv_cache_memory_fraction;
    n_blocks = std::min<int64_t>(useful, static_cast<int64_t>(budget / block_bytes));
    if (n_blocks < (max_seq_len_ + bs - 1) / bs)
      fail(
          "KV cache: {:.1f} MiB available for {} blocks of {} KiB cannot hold one sequence of {} "
          "positions; lower --max-seq-len or raise --kv-cache-memory-fraction",
          budget / (1 << 20), n_blocks, block_bytes / 1024, max_seq_len_);
  }
  // Scratch blocks for padding rows (fixed-shape verification, graph buckets) live beyond the
  // managed pool.
  // Tensor-parallel passes run eagerly (no graph padding) unless asked for (--tp-cuda-graphs)
  // and their exchanges can be captured (NCCL).
  const bool graphs = backend.supports_graphs() &&
                      (model_.tp_size() == 1 ||
                       (config_.tp_cuda_graphs && model_.exchanges_capturable()));
  const int graph_max_batch = graphs ? config_.cuda_graph_max_batch : 0;
  const int n_scratch = std::max(config_.verify_schedule == VerifyMode::kFixedShape
                                     ? (config_.window * config_.group + bs - 1) / bs
                                     : 0,
                                 graph_max_batch > 0 ? 1 : 0);
  model_.allocate_kv(static_cast<int>(n_blocks) + n_scratch, bs);
  std::vector<int32_t> scratch;
  for (int i = 0; i < n_scratch; ++i) scratch.push_back(static_cast<int32_t>(n_blocks) + i);
  blocks_ = std::make_unique<BlockManager>(static_cast<int>(n_blocks), bs, config_.prefix_cache);
  scheduler_ = std::make_unique<Scheduler>(config_, *blocks_);
  verifier_ = std::make_unique<Verifier>(config_, *blocks_, std::move(stops));
  runner_ = std::make_unique<ModelRunner>(model_, std::move(scratch), graph_max_batch);
  stats_.kv_blocks_total = static_cast<int>(n_blocks);
  stats_.admission_reserve_ratio = scheduler_->reserve_ratio();
  graphs_at_start_ = model_.graph_stats();
  stats_snapshot_ = stats_;
  log_info(
      "engine: KV cache of {} blocks of {} positions ({} tokens, {:.2f} GiB{}), mode {}, W {}, "
      "G {}",
      n_blocks, bs, n_blocks * bs, static_cast<double>(model_.kv_bytes()) / (1 << 30),
      model_.tp_size() > 1 ? fmt::format(" over {} ranks", model_.tp_size()) : "",
      determinism_mode_name(config_.mode), config_.window, config_.group);
}

Engine::~Engine() {
  stop(false);
  model_.release_kv();
}

std::string Engine::fingerprint() const {
  const ModelWeights& w = model_.weights();
  // -m: the model's shape and numerics (dummy weights of two shapes share a seed), the context
  // length and the default seed, which answers depend on as well.
  const uint64_t m = Digest()
                         .add(model_config_digest(model_.config()))
                         .add(max_seq_len_)
                         .add(config_.default_seed)
                         .value();
  std::string fp = fmt::format("llm42-{}-w{:016x}-m{:016x}-{}-{}-{}", kVersion, w.content_hash, m,
                               dtype_name(w.dtype), model_.backend().kernel_id(),
                               determinism_mode_name(config_.mode));
  if (config_.mode == DeterminismMode::kDvr) {
    fp += fmt::format("-{}", verify_mode_name(config_.verify_schedule));
    // Fixed-shape answers depend on the padded pass shape, i.e. on W and G.
    if (config_.verify_schedule == VerifyMode::kFixedShape)
      fp += fmt::format("-W{}G{}", config_.window, config_.group);
  }
  return fp;
}

uint64_t Engine::add_request(Request req, OutputCallback on_output) {
  const ModelConfig& mc = model_.config();
  const int p = static_cast<int>(req.prompt.size());
  if (p == 0) fail("'prompt' is empty: at least one token is needed");
  for (size_t i = 0; i < req.prompt.size(); ++i)
    if (req.prompt[i] < 0 || req.prompt[i] >= mc.vocab_size)
      fail("'prompt' token {} at index {} is outside the vocabulary [0, {})", req.prompt[i], i,
           mc.vocab_size);
  if (req.max_tokens < 1) fail("'max_tokens' = {}: must be at least 1", req.max_tokens);
  if (req.prompt_logprobs < -1 || req.prompt_logprobs > kMaxTopLogprobs)
    fail("'prompt_logprobs' = {}: must be in [0, {}]", req.prompt_logprobs, kMaxTopLogprobs);
  if (req.min_tokens < 0 || req.min_tokens > req.max_tokens)
    fail("'min_tokens' = {}: must be in [0, max_tokens = {}]", req.min_tokens, req.max_tokens);
  // In 64 bits: max_tokens may be up to INT_MAX.
  const int64_t total = int64_t{p} + req.max_tokens;
  if (total > max_seq_len_)
    fail(
        "this model's maximum context length is {} tokens, but {} were requested ({} in the "
        "prompt, {} for the completion)",
        max_seq_len_, total, p, req.max_tokens);
  const int need = blocks_->blocks_for(static_cast<int>(total));
  if (need > blocks_->num_blocks())
    fail("the request needs {} KV blocks ({} tokens) but the KV cache has {} in all", need, total,
         blocks_->num_blocks());
  validate_sampling(req.sampling);
  if (!req.stop_strings.empty() && tokenizer_ == nullptr)
    fail("'stop' strings need a tokenizer, and this model has none");
  for (const std::string& s : req.stop_strings)
    if (s.empty()) fail("'stop' contains an empty string");
  for (int32_t id : req.stop_ids)
    if (id < 0 || id >= mc.vocab_size) fail("stop token id {} outside the vocabulary", id);

  auto seq = std::make_unique<Sequence>();
  seq->speculative = verifier_->speculates(req);
  if (req.sampling.seed) {
    seq->seed = *req.sampling.seed;
  } else if (req.deterministic) {
    seq->seed = config_.default_seed;
  } else {
    static thread_local std::mt19937_64 rng{std::random_device{}()};
    seq->seed = rng();
  }
  seq->tokens = req.prompt;
  seq->n_prompt = p;
  if (req.detokenize && tokenizer_ != nullptr) {
    // The output continues the prompt's text when the prompt has any (not only BOS).
    const bool continues = std::any_of(req.prompt.begin(), req.prompt.end(),
                                       [&](int32_t id) { return !tokenizer_->is_special(id); });
    seq->detok = std::make_unique<Detokenizer>(*tokenizer_, true, continues);
  }
  seq->req = std::move(req);
  seq->on_output = std::move(on_output);
  seq->arrival_time = now_seconds();
  std::lock_guard<std::mutex> lock(mu_);
  if (stop_ || drain_) fail("the engine is shutting down and accepts no new requests");
  seq->id = next_id_++;
  const uint64_t id = seq->id;
  inbox_.push_back(std::move(seq));
  cv_.notify_all();
  return id;
}

void Engine::abort(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  abort_inbox_.push_back(id);
  cv_.notify_all();
}

void Engine::drain_inbox() {
  std::vector<std::unique_ptr<Sequence>> added;
  std::vector<uint64_t> aborts;
  {
    std::lock_guard<std::mutex> lock(mu_);
    added.swap(inbox_);
    aborts.swap(abort_inbox_);
  }
  for (auto& s : added) {
    Sequence* raw = s.get();
    seqs_[raw->id] = std::move(s);
    scheduler_->add(raw);
    ++stats_.requests_added;
  }
  for (uint64_t id : aborts) {
    auto it = seqs_.find(id);
    if (it == seqs_.end()) continue;  // finished already
    finish(*it->second, FinishReason::kAbort);
  }
}

void Engine::finish(Sequence& s, FinishReason reason, std::string error) {
  if (s.status == SeqStatus::kFinished) return;
  s.status = SeqStatus::kFinished;
  s.finish_reason = reason;
  // Whatever was speculative is dropped: only committed tokens leave the engine.
  s.drop_speculative();
  blocks_->release(s);
  scheduler_->remove(&s);
  if (reason == FinishReason::kAbort) ++stats_.requests_aborted;
  s.error = std::move(error);
  emit(s);
}

void Engine::score_prompt(Sequence& s, int pos_begin, const SampledToken* scored, int n) {
  // Prompt token p + 1 is scored by position p. A recomputation (after a preemption) keeps the
  // first values: in the canonical lane they are the same, in the fast lane they may not be.
  if (s.prompt_logprobs.empty()) s.prompt_logprobs.resize(static_cast<size_t>(s.n_prompt - 1));
  for (int j = 0; j < n; ++j) {
    const int p = pos_begin + j;
    if (p < s.n_prompt_scored) continue;
    LLM42_ASSERT(p == s.n_prompt_scored, "prompt logprobs out of order");
    const SampledToken& t = scored[j];
    s.prompt_logprobs[static_cast<size_t>(p)] = TokenLogprob{t.id, t.logprob, t.top, t.rank};
    ++s.n_prompt_scored;
  }
}

void Engine::process_pass(const PassPlan& plan, const PassResult& result) {
  (plan.schedule == Schedule::kCanonical ? stats_.canonical_passes : stats_.fast_passes) += 1;
  // Tokens by the lane of their values: a canonical pass's fast entries, and fixed-shape
  // padding (in fast passes), count as fast.
  int64_t canonical_tokens = 0;
  for (const PassEntry& e : plan.entries)
    if (plan.lane(e) == Schedule::kCanonical) canonical_tokens += e.n_tokens;
  stats_.canonical_tokens += canonical_tokens;
  stats_.fast_tokens += plan.n_tokens() - canonical_tokens;
  if (plan.schedule == Schedule::kCanonical && canonical_tokens < plan.n_tokens())
    ++stats_.mixed_passes;
  bool has_verify = false;
  for (size_t i = 0; i < plan.entries.size(); ++i) {
    const PassEntry& e = plan.entries[i];
    Sequence& s = *e.seq;
    const int row = result.entry_first_row[i];
    const int prompt_row = result.entry_prompt_row[i];
    const int n_scored = prompt_rows(e);
    const int bad_prompt = prompt_row >= 0 ? first_nonfinite_row(result, prompt_row, n_scored) : -1;
    if (bad_prompt >= 0 ||
        (row >= 0 && !finite_rows(result, row, e.kind == WorkKind::kVerify ? e.n_tokens : 1))) {
      // The request fails; the others in the pass go on.
      ++stats_.requests_nonfinite;
      const int at = bad_prompt >= 0 ? e.pos_begin + bad_prompt : e.pos_begin + e.n_tokens - 1;
      finish(s, FinishReason::kError,
             fmt::format("the model produced non-finite logits (NaN or Inf) at position {}; "
                         "its weights or activations overflowed",
                         at));
      continue;
    }
    if (prompt_row >= 0)
      score_prompt(s, e.pos_begin, &result.samples[static_cast<size_t>(prompt_row)], n_scored);
    const int committed = s.n_committed;
    verifier_->apply(plan, i, result);
    stats_.output_tokens += s.n_committed - committed;
    if (e.kind == WorkKind::kPrefill) stats_.prefill_tokens += e.n_tokens;
    if (e.kind == WorkKind::kVerify) has_verify = true;
  }
  if (has_verify) {
    ++stats_.verify_passes;
    stats_.verify_pass_tokens += plan.n_tokens();
    ++stats_.verify_pass_sizes[plan.n_tokens()];
  }
}

void Engine::emit(Sequence& s) {
  const bool finished = s.status == SeqStatus::kFinished;
  if (s.final_sent || (s.n_emitted == s.n_committed && !finished)) return;
  s.final_sent = finished;
  RequestOutput out;
  out.request_id = s.id;
  if (!s.prompt_logprobs_sent && s.req.scores_prompt() && !s.scoring_prompt()) {
    out.prompt_logprobs = std::move(s.prompt_logprobs);
    s.prompt_logprobs_sent = true;
  }
  for (int i = s.n_emitted; i < s.n_committed; ++i) {
    out.tokens.push_back(s.tokens[static_cast<size_t>(s.n_prompt + i)]);
    if (s.req.logprobs) out.logprobs.push_back(s.out_logprobs[static_cast<size_t>(i)]);
  }
  s.n_emitted = s.n_committed;
  if (s.detok) {
    if (finished && s.finish_reason != FinishReason::kStop) s.text += s.detok->flush();
    const size_t upto = finished ? s.text.size() : releasable_text(s.text, s.req);
    if (upto > s.text_emitted) {
      out.text = s.text.substr(s.text_emitted, upto - s.text_emitted);
      s.text_emitted = upto;
    }
  }
  out.finished = finished;
  out.finish_reason = finished ? s.finish_reason : FinishReason::kNone;
  out.error = s.error;
  out.prompt_tokens = s.n_prompt;
  out.completion_tokens = s.n_committed;
  out.cached_tokens = s.n_cached_hit;
  out.verify = s.verify;
  out.arrival_time = s.arrival_time;
  out.first_token_time = s.first_token_time;
  out.scheduled_time = s.scheduled_time;
  if (s.on_output) s.on_output(std::move(out));
}

bool Engine::step() {
  const double t_begin = now_seconds();
  drain_inbox();
  const StepPlan plan = verifier_->assign_lanes(scheduler_->schedule());
  const double t_scheduled = now_seconds();
  const double pass_s = run_passes(plan);
  note_preemptions();
  ++stats_.steps;
  fail_stalled(!plan.empty());
  retire_and_emit();
  if (config_.check_integrity) {
    std::vector<const Sequence*> live;
    for (const Sequence* s : scheduler_->running()) live.push_back(s);
    for (const Sequence* s : scheduler_->waiting()) live.push_back(s);
    blocks_->check_integrity(live);
  }
  stats_.schedule_s += t_scheduled - t_begin;
  stats_.pass_s += pass_s;
  stats_.other_s += now_seconds() - t_scheduled - pass_s;
  publish_stats();
  return !scheduler_->idle() || !inbox_.empty() || !abort_inbox_.empty();
}

double Engine::run_passes(const StepPlan& plan) {
  double pass_s = 0;
  for (const PassPlan& pass : plan.passes) {
    const int64_t replays = model_.graph_stats().replays;
    const double t_pass = now_seconds();
    const PassResult result = runner_->run(pass);
    const double seconds = now_seconds() - t_pass;
    pass_s += seconds;
    stats_.pass_profile.add(pass.schedule, model_.graph_stats().replays != replays, pass.n_tokens(),
                            seconds);
    process_pass(pass, result);
  }
  return pass_s;
}

void Engine::note_preemptions() {
  const int64_t preemptions = scheduler_->num_preemptions();
  if (preemptions > stats_.preemptions && std::bit_floor(static_cast<uint64_t>(preemptions)) >
                                              static_cast<uint64_t>(stats_.preemptions)) {
    // At the 1st, 2nd, 4th, 8th, ... preemption: each one recomputes a sequence's prompt and
    // output when it resumes.
    const char* larger_pool = config_.num_blocks > 0 ? "--num-blocks"
                              : model_.backend().device() == Device::kCUDA
                                  ? "--kv-cache-memory-fraction, --gpu-memory-fraction"
                                  : "--kv-cache-memory-fraction";
    log_warn(
        "KV cache full: {} preemptions so far (the KV pool holds {} tokens); preempted requests "
        "recompute their prompt and output when they resume. A larger pool ({}), fewer "
        "running sequences (--max-num-seqs) or a reserve at admission (--admission-reserve) "
        "avoids it",
        preemptions, static_cast<int64_t>(blocks_->num_blocks()) * config_.block_size, larger_pool);
  }
  stats_.preemptions = preemptions;
}

void Engine::fail_stalled(bool scheduled_work) {
  for (Sequence* s : scheduler_->watch(scheduled_work)) {
    ++stats_.requests_stalled;
    const std::string error = fmt::format(
        "the engine made no progress on this request for {} steps (--max-stalled-steps): "
        "it was failed rather than left waiting",
        config_.max_stalled_steps);
    log(LogLevel::kError, "engine: request {}: {}", s->id, error);
    finish(*s, FinishReason::kError, error);
  }
}

void Engine::retire_and_emit() {
  std::vector<uint64_t> done;
  for (auto& [id, s] : seqs_) {
    if (s->status == SeqStatus::kFinished) {
      blocks_->release(*s);
      scheduler_->remove(s.get());
      if (s->finish_reason == FinishReason::kStop || s->finish_reason == FinishReason::kLength)
        scheduler_->on_finished(*s);
      emit(*s);
      done.push_back(id);
    } else {
      emit(*s);
    }
  }
  for (uint64_t id : done) {
    const Sequence& s = *seqs_[id];
    finished_verify_ += s.verify;
    stats_.prompt_tokens += s.n_prompt;
    ++stats_.requests_finished;
    seqs_.erase(id);
  }
}

void Engine::publish_stats() {
  stats_.verify = finished_verify_;
  for (const auto& [id, s] : seqs_) stats_.verify += s->verify;
  stats_.running = static_cast<int>(scheduler_->running().size());
  stats_.waiting = static_cast<int>(scheduler_->waiting().size());
  stats_.kv_blocks_used = blocks_->num_used();
  stats_.admission_reserve_ratio = scheduler_->reserve_ratio();
  stats_.prefix_cache_hits = blocks_->prefix_hits();
  stats_.prefix_cache_queries = blocks_->prefix_queries();
  const Transformer::GraphStats g = model_.graph_stats();
  stats_.graph_passes = g.replays - graphs_at_start_.replays;
  stats_.graph_captures = g.captures - graphs_at_start_.captures;
  std::lock_guard<std::mutex> lock(mu_);
  stats_snapshot_ = stats_;
  ++steps_done_;
  cv_.notify_all();
}

void Engine::run_until_idle() {
  while (step()) {
  }
}

bool Engine::has_work() const {
  std::lock_guard<std::mutex> lock(mu_);
  return !inbox_.empty() || !abort_inbox_.empty() || stats_snapshot_.running > 0 ||
         stats_snapshot_.waiting > 0;
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_snapshot_;
}

void Engine::wait_for_step() {
  std::unique_lock<std::mutex> lock(mu_);
  const int64_t target = steps_done_ + 2;
  cv_.wait(lock, [&] { return steps_done_ >= target || stop_ || !thread_.joinable(); });
}

void Engine::start() {
  LLM42_ASSERT(!thread_.joinable(), "engine started twice");
  thread_ = std::thread([this] { loop(); });
}

void Engine::loop() {
  bool more = false;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || more || !inbox_.empty() || !abort_inbox_.empty(); });
      if (stop_ && !more && inbox_.empty() && abort_inbox_.empty()) break;
      if (stop_ && !drain_) {
        // Abort everything still queued or running.
        for (auto& s : inbox_) abort_inbox_.push_back(s->id);
        for (auto& [id, s] : seqs_) abort_inbox_.push_back(id);
      }
    }
    try {
      more = step();
    } catch (const std::exception& e) {
      // A failing pass must not take the other requests down silently: every live request
      // finishes with the error, and the engine keeps serving new ones.
      log(LogLevel::kError, "engine step failed: {}", e.what());
      for (auto& [id, s] : seqs_) finish(*s, FinishReason::kError, e.what());
      seqs_.clear();
      more = false;
    }
  }
}

void Engine::stop(bool drain) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    drain_ = drain;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

}  // namespace llm42
