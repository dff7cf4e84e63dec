#include "engine/model_runner.h"

#include "util/error.h"

namespace llm42 {

ModelRunner::ModelRunner(Transformer& model, const KvCache& cache,
                         std::vector<int32_t> scratch_blocks)
    : model_(model), cache_(cache), scratch_blocks_(std::move(scratch_blocks)) {}

PassResult ModelRunner::run(const PassPlan& plan) {
  const int bs = cache_.block_size;
  PassInput& in = input_;
  in = PassInput{};
  in.schedule = plan.schedule;
  PassResult result;
  result.vocab = model_.config().vocab_size;

  auto add_seq = [&](const std::vector<int32_t>& blocks, int pos_begin, int n,
                     const int32_t* tokens) {
    PassSeq ps;
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
  };

  for (const PassEntry& e : plan.entries) {
    const Sequence& s = *e.seq;
    const int first_row = in.n_tokens();
    add_seq(s.blocks, e.pos_begin, e.n_tokens, s.tokens.data() + e.pos_begin);
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
      for (int r = logits_from; r < last; ++r) in.logit_rows.push_back(r);
    }
  }
  if (plan.pad_to > in.n_tokens()) {
    // Fixed-shape verification: dummy rows at positions [0, pad) over the scratch blocks; they
    // read and write only those blocks and produce no logits.
    const int pad = plan.pad_to - in.n_tokens();
    LLM42_ASSERT(static_cast<int>(scratch_blocks_.size()) * bs >= pad, "scratch too small");
    const std::vector<int32_t> pad_tokens(static_cast<size_t>(pad), 0);
    add_seq(scratch_blocks_, 0, pad, pad_tokens.data());
  }

  const Tensor logits = model_.forward(in, cache_);
  result.logits.resize(static_cast<size_t>(logits.numel()));
  if (!result.logits.empty())
    model_.backend().copy_to_host(result.logits.data(), logits.data, logits.nbytes());
  model_.backend().synchronize();
  return result;
}

}  // namespace llm42
