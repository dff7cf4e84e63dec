#include "tokenizer/sentencepiece_vocab.h"

#include <cmath>

#include "tokenizer/bpe_tokenizer.h"
#include "util/error.h"

namespace llm42 {
namespace {
constexpr std::string_view kSpace = "\u2581";
}  // namespace

std::unique_ptr<Tokenizer> make_sentencepiece_tokenizer(SentencePieceVocab v,
                                                        const std::string& source) {
  const size_t n = v.pieces.size();
  if (n == 0) fail("{}: the vocabulary is empty", source);
  if (v.scores.size() != n) fail("{}: {} tokens but {} scores", source, n, v.scores.size());
  if (v.types.size() != n) fail("{}: {} tokens but {} token types", source, n, v.types.size());
  for (size_t id = 0; id < n; ++id)
    if (!std::isfinite(v.scores[id]))
      fail("{}: token {} ('{}') has score {}, not a finite number", source, id, v.pieces[id],
           v.scores[id]);
  for (const auto& [name, id] : {std::pair("BOS", v.bos_id), {"EOS", v.eos_id}, {"UNK", v.unk_id}})
    if (id >= static_cast<int64_t>(n) || id < -1)
      fail("{}: {} id {} is outside the vocabulary of {} tokens", source, name, id, n);

  BpeTokenizerParts parts;
  std::vector<std::string> model_pieces = v.pieces;
  for (size_t id = 0; id < n; ++id) {
    const int32_t type = v.types[id];
    if (type == SentencePieceVocab::kControl || type == SentencePieceVocab::kUnknown) {
      // Special tokens are never produced by merging text.
      if (!v.pieces[id].empty())
        parts.added_tokens.push_back({v.pieces[id], static_cast<int32_t>(id), true});
      model_pieces[id].clear();
    } else if (type == SentencePieceVocab::kUserDefined && !v.pieces[id].empty()) {
      parts.added_tokens.push_back({v.pieces[id], static_cast<int32_t>(id), false});
    }
  }
  BpeOptions o;
  o.byte_fallback = true;
  o.unk_id = v.unk_id;
  parts.model = std::make_unique<BpeModel>(std::move(model_pieces), o);
  parts.model->add_scored_merges(v.scores);
  parts.normalizer = Normalizer({{NormalizerStep::Kind::kPrepend, std::string(kSpace), {}},
                                 {NormalizerStep::Kind::kReplace, std::string(kSpace), " "}});
  if (v.add_bos && v.bos_id >= 0) parts.prefix = {v.bos_id};
  parts.decoder.replace_from = kSpace;
  parts.decoder.replace_to = " ";
  parts.decoder.byte_fallback = true;
  parts.decoder.strip_leading_space = true;
  parts.bos_id = v.bos_id;
  if (v.eos_id >= 0) parts.eos_ids = {v.eos_id};
  return std::make_unique<BpeTokenizer>(std::move(parts));
}

}  // namespace llm42
