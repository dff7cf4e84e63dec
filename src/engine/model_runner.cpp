#include "engine/model_runner.h"

#include <algorithm>

#include "util/error.h"

namespace llm42 {

ModelRunner::ModelRunner(ParallelModel& model, std::vector<int32_t> scratch_blocks,
                         int graph_max_batch)
    : model_(model),
      scratch_blocks_(std::move(scratch_blocks)),
      graph_max_batch_(graph_max_batch) {
  LLM42_ASSERT(graph_max_batch_ == 0 || !scratch_blocks_.empty(),
               "graph padding rows need a scratch block");
}

int ModelRunner::graph_bucket(int n) {
  if (n <= 8) {
    int b = 1;
    while (b < n) b *= 2;
    return b;
  }
  return (n + 7) / 8 * 8;
}

int prompt_rows(const PassEntry& e) {
  return e.kind == WorkKind::kPrefill ? e.seq->prompt_rows(e.pos_begin, e.n_tokens) : 0;
}

void ModelRunner::add_rows(const std::vector<int32_t>& blocks, int pos_begin, int n,
                           const int32_t* tokens, bool fast_attention) {
  const int bs = model_.kv().block_size;
  PassInput& in = input_;
  PassSeq ps;
  ps.fast_attention = fast_attention;
  ps.q_begin = in.n_tokens();
  ps.q_len = n;
  ps.pos_begin = pos_begin;
  ps.block_begin = static_cast<int32_t>(in.block_tables.size());
  ps.n_blocks = (pos_begin + n + bs - 1) / bs;
  LLM42_ASSERT(ps.n_blocks <= static_cast<int>(blocks.size()), "{} blocks for {} positions",
               blocks.size(), pos_begin + n);
  in.block_tables.insert(in.block_tables.end(), blocks.begin(), blocks.begin() + ps.n_blocks);
  for (int i = 0; i < n; ++i) {
    const int pos = pos_begin + i;
    in.tokens.push_back(tokens[i]);
    in.positions.push_back(pos);
    in.slots.push_back(blocks[pos / bs] * bs + pos % bs);
  }
  in.seqs.push_back(ps);
}

void ModelRunner::pack(const PassPlan& plan, PassResult& result) {
  PassInput& in = input_;
  for (const PassEntry& e : plan.entries) {
    const Sequence& s = *e.seq;
    const int first_row = in.n_tokens();
    add_rows(s.blocks, e.pos_begin, e.n_tokens, s.tokens.data() + e.pos_begin, e.fast_lane);
    const int n_scored = prompt_rows(e);
    result.entry_prompt_row.push_back(n_scored > 0 ? static_cast<int>(in.logit_rows.size()) : -1);
    for (int i = 0; i < n_scored; ++i) {
      in.logit_rows.push_back(first_row + i);
      row_owner_.push_back({&s, 0, s.tokens[static_cast<size_t>(e.pos_begin + i + 1)]});
    }
    int logits_from = -1;
    switch (e.kind) {
      case WorkKind::kPrefill:
        // Logits only when this chunk ends the prompt and output token 0 is still to be drawn.
        if (s.n_committed == 0 && e.pos_begin + e.n_tokens == s.n_prompt)
          logits_from = first_row + e.n_tokens - 1;
        break;
      case WorkKind::kDecode:
        logits_from = first_row;
        break;
      case WorkKind::kVerify:
        logits_from = first_row;
        break;
    }
    if (logits_from < 0) {
      result.entry_first_row.push_back(-1);
    } else {
      result.entry_first_row.push_back(static_cast<int>(in.logit_rows.size()));
      const int last = e.kind == WorkKind::kVerify ? first_row + e.n_tokens : logits_from + 1;
      // The row at absolute position p predicts the token at p + 1: output index p + 1 - P.
      for (int r = logits_from; r < last; ++r) {
        in.logit_rows.push_back(r);
        row_owner_.push_back({&s, in.positions[r] + 1 - s.n_prompt});
      }
    }
  }
}

void ModelRunner::pad_for_graph(const PassPlan& plan) {
  PassInput& in = input_;
  const bool decode_only =
      !plan.entries.empty() && std::all_of(plan.entries.begin(), plan.entries.end(),
                                           [](const PassEntry& e) { return e.kind == WorkKind::kDecode; });
  const int bucket = graph_bucket(in.n_tokens());
  if (plan.pad_to != 0 || !decode_only || in.n_tokens() > graph_max_batch_ ||
      bucket > model_.max_tokens() || bucket > model_.max_logit_rows())
    return;
  // Dummy decode rows at position 0 of a scratch block (they all write the same K/V there, and
  // read only it) up to the bucket, each with a logits row, so that every pass of the bucket has
  // the same shape. Their samples are not drawn.
  const std::vector<int32_t> scratch{scratch_blocks_.front()};
  const int32_t pad_token = 0;
  while (in.n_tokens() < bucket) {
    in.logit_rows.push_back(in.n_tokens());
    row_owner_.push_back({});
    add_rows(scratch, 0, 1, &pad_token, true);
  }
  in.graph = true;
}

void ModelRunner::pad_to_fixed_shape(const PassPlan& plan, PassResult& result) {
  PassInput& in = input_;
  if (plan.pad_to <= in.n_tokens()) return;
  // Dummy rows at positions [0, pad) over the scratch blocks; they read and write only those
  // blocks. Logits are computed for every row of the padded pass, so that the LM head GEMM has
  // the same shape whichever windows share the pass.
  const int bs = model_.kv().block_size;
  const int pad = plan.pad_to - in.n_tokens();
  LLM42_ASSERT(static_cast<int>(scratch_blocks_.size()) * bs >= pad, "scratch too small");
  const std::vector<int32_t> pad_tokens(static_cast<size_t>(pad), 0);
  add_rows(scratch_blocks_, 0, pad, pad_tokens.data(), true);
  LLM42_ASSERT(in.logit_rows.size() == row_owner_.size());
  std::vector<RowOwner> owners(static_cast<size_t>(in.n_tokens()));
  for (size_t i = 0; i < in.logit_rows.size(); ++i)
    owners[static_cast<size_t>(in.logit_rows[i])] = row_owner_[i];
  for (size_t e = 0; e < plan.entries.size(); ++e) {
    for (int* row : {&result.entry_first_row[e], &result.entry_prompt_row[e]})
      if (*row >= 0) *row = in.logit_rows[static_cast<size_t>(*row)];
  }
  in.logit_rows.resize(static_cast<size_t>(in.n_tokens()));
  for (int r = 0; r < in.n_tokens(); ++r) in.logit_rows[static_cast<size_t>(r)] = r;
  row_owner_ = std::move(owners);
}

PassResult ModelRunner::run(const PassPlan& plan) {
  input_ = PassInput{};
  input_.schedule = plan.schedule;
  row_owner_.clear();
  PassResult result;
  pack(plan, result);
  pad_for_graph(plan);
  pad_to_fixed_shape(plan, result);
  const Tensor logits = model_.forward(input_);
  sample(logits, result);
  return result;
}

void ModelRunner::sample(const Tensor& logits, PassResult& result) {
  const int vocab = model_.config().vocab_size;
  Backend& backend = model_.backend();
  result.samples.resize(row_owner_.size());
  sample_rows_.clear();
  std::vector<int> device_rows;
  for (size_t r = 0; r < row_owner_.size(); ++r) {
    const auto [s, index, score] = row_owner_[r];
    if (s == nullptr) continue;  // a padding row
    const SamplingParams& p = s->req.sampling;
    if (score >= 0) {
      SampleRow row;
      row.logit_row = static_cast<int32_t>(r);
      row.score_token = score;
      row.top_logprobs = s->req.prompt_logprobs;
      sample_rows_.push_back(row);
      device_rows.push_back(static_cast<int>(r));
      continue;
    }
    if (p.has_penalties()) {
      // Host path: this row's logits and the token history.
      host_row_.resize(static_cast<size_t>(vocab));
      backend.copy_to_host(host_row_.data(), logits.ptr<float>() + r * vocab,
                           static_cast<size_t>(vocab) * sizeof(float));
      const std::span<const int32_t> all(s->tokens);
      const TokenHistory history{all.subspan(0, static_cast<size_t>(s->n_prompt)),
                                 all.subspan(static_cast<size_t>(s->n_prompt),
                                             static_cast<size_t>(index))};
      result.samples[r] = sample_token(host_row_.data(), vocab, p, s->seed,
                                       static_cast<int64_t>(s->n_prompt) + index, history);
      continue;
    }
    SampleRow row;
    row.logit_row = static_cast<int32_t>(r);
    row.temperature = p.temperature;
    row.top_k = p.top_k;
    row.top_p = p.top_p;
    row.min_p = p.min_p;
    row.seed = s->seed;
    row.position = static_cast<int64_t>(s->n_prompt) + index;
    row.top_logprobs = p.top_logprobs;
    sample_rows_.push_back(row);
    device_rows.push_back(static_cast<int>(r));
  }
  if (!sample_rows_.empty()) backend.sample(logits, sample_rows_, sample_out_);
  for (size_t i = 0; i < device_rows.size(); ++i) {
    const SampleResult& o = sample_out_[i];
    SampledToken& t = result.samples[static_cast<size_t>(device_rows[i])];
    t.id = o.token;
    t.logprob = o.logprob;
    t.rank = o.rank;
    for (int j = 0; j < o.n_top; ++j) t.top.emplace_back(o.top_ids[j], o.top_logprobs[j]);
  }
}

}  // namespace llm42
