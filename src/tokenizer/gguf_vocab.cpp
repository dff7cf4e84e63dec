// tokenizer_from_vocab: the vocabulary a GGUF file carries (tokenizer.ggml.*). Model "llama" is
// SentencePiece BPE with scores; "gpt2" is byte-level BPE with ranked merges, whose pre-tokenizer
// regex GGUF names by tokenizer.ggml.pre, as llama.cpp does.
#include "model/checkpoint.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/sentencepiece_vocab.h"
#include "util/error.h"

namespace llm42 {
namespace {

constexpr std::string_view kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

constexpr const char* kSource = "GGUF vocabulary (tokenizer.ggml.*)";

std::vector<int32_t> types_or_normal(const EmbeddedVocab& v) {
  if (v.token_types.empty())
    return std::vector<int32_t>(v.tokens.size(), SentencePieceVocab::kNormal);
  if (v.token_types.size() != v.tokens.size())
    fail("{}: {} tokens but {} token types", kSource, v.tokens.size(), v.token_types.size());
  return v.token_types;
}

std::unique_ptr<Tokenizer> byte_level_from_vocab(const EmbeddedVocab& v) {
  const int32_t n = static_cast<int32_t>(v.tokens.size());
  const std::vector<int32_t> types = types_or_normal(v);
  for (const auto& [name, id] : {std::pair("BOS", v.bos_id), {"EOS", v.eos_id}})
    if (id >= n || id < -1)
      fail("{}: {} id {} is outside the vocabulary of {} tokens", kSource, name, id, n);

  BpeTokenizerParts parts;
  BpeOptions o;
  std::vector<NormalizerStep> norm;
  PreTokenizerStep split;
  split.kind = PreTokenizerStep::Kind::kSplit;
  PreTokenizerStep bytes;
  bytes.kind = PreTokenizerStep::Kind::kByteLevel;
  const std::string& pre = v.pre;
  if (pre.empty() || pre == "default" || pre == "gpt2" || pre == "gpt-2") {
    bytes.regex = std::make_shared<const Regex>(kGpt2Pattern, "GPT-2 ByteLevel pattern");
    parts.pre_tokenizer = PreTokenizer({bytes});
  } else if (pre == "llama3" || pre == "llama-bpe" || pre == "smaug-bpe") {
    o.ignore_merges = true;
    split.regex = std::make_shared<const Regex>(kLlama3Pattern, "Llama 3 pre-tokenizer");
    parts.pre_tokenizer = PreTokenizer({split, bytes});
  } else if (pre == "qwen2") {
    norm.push_back({NormalizerStep::Kind::kNfc, {}, {}});
    split.regex = std::make_shared<const Regex>(kQwen2Pattern, "Qwen2 pre-tokenizer");
    parts.pre_tokenizer = PreTokenizer({split, bytes});
  } else {
    fail(
        "{}: tokenizer.ggml.pre '{}' is not supported (default, gpt2, llama-bpe, llama3, "
        "smaug-bpe, qwen2 are)",
        kSource, pre);
  }
  parts.normalizer = Normalizer(std::move(norm));

  for (int32_t id = 0; id < n; ++id) {
    if (types[id] == SentencePieceVocab::kControl || types[id] == SentencePieceVocab::kUserDefined)
      parts.added_tokens.push_back({v.tokens[id], id, types[id] == SentencePieceVocab::kControl});
  }
  parts.model = std::make_unique<BpeModel>(v.tokens, o);
  std::vector<std::pair<std::string, std::string>> merges;
  merges.reserve(v.merges.size());
  for (size_t i = 0; i < v.merges.size(); ++i) {
    const std::string& m = v.merges[i];
    const size_t sp = m.find(' ');
    if (sp == std::string::npos || m.find(' ', sp + 1) != std::string::npos)
      fail("{}: merge {} '{}' is not two tokens separated by one space", kSource, i, m);
    merges.emplace_back(m.substr(0, sp), m.substr(sp + 1));
  }
  std::string missing;
  if (!parts.model->add_ranked_merges(merges, missing))
    fail("{}: merge result or part '{}' is not in the vocabulary", kSource, missing);
  if (v.add_bos && v.bos_id >= 0) parts.prefix = {v.bos_id};
  parts.decoder.byte_level = true;
  parts.bos_id = v.bos_id;
  if (v.eos_id >= 0) parts.eos_ids = {v.eos_id};
  return std::make_unique<BpeTokenizer>(std::move(parts));
}

}  // namespace

std::unique_ptr<Tokenizer> tokenizer_from_vocab(const EmbeddedVocab& v) {
  if (v.tokens.empty()) fail("{}: the vocabulary is empty", kSource);
  if (v.model == "gpt2") return byte_level_from_vocab(v);
  if (v.model != "llama")
    fail("{}: tokenizer.ggml.model '{}' is not supported (llama, gpt2 are)", kSource, v.model);
  SentencePieceVocab sp;
  sp.pieces = v.tokens;
  sp.scores = v.scores.empty() ? std::vector<float>(v.tokens.size(), 0.0f) : v.scores;
  sp.types = types_or_normal(v);
  sp.bos_id = v.bos_id;
  sp.eos_id = v.eos_id;
  sp.unk_id = v.unk_id;
  sp.add_bos = v.add_bos;
  return make_sentencepiece_tokenizer(std::move(sp), kSource);
}

}  // namespace llm42
