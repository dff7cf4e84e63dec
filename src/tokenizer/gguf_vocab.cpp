// tokenizer_from_vocab: the vocabulary a GGUF file carries (tokenizer.ggml.*). Model "llama" is
// SentencePiece BPE with scores; "gpt2" is byte-level BPE with ranked merges, whose pre-tokenizer
// regex GGUF names by tokenizer.ggml.pre, as llama.cpp does.
#include <algorithm>

#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/embedded_vocab.h"
#include "tokenizer/sentencepiece_vocab.h"
#include "util/error.h"

namespace llm42 {
namespace {

// Byte-level BPE pre-tokenizers by tokenizer.ggml.pre, as llama.cpp sets them up (llama-vocab.cpp:
// the regexes it splits with, in order, then GPT-2's byte alphabet). Text that no regex matches
// stays a word of its own, as in llama.cpp and Hugging Face's Split(Isolated).
struct BytePre {
  std::vector<std::string_view> names;   // tokenizer.ggml.pre values
  const char* what;                      // for regex errors
  std::vector<std::string_view> splits;  // empty: ByteLevel's own GPT-2 regex
  bool nfc = false;                      // NFC-normalize first
  bool ignore_merges = false;            // a word that is a token is that token
};

constexpr std::string_view kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// SmolLM (and StarCoder): every digit alone, then GPT-2's words.
constexpr std::string_view kDigitPattern = R"(\p{N})";
constexpr std::string_view kGpt2WordsPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))";
// Mistral's Tekken (Nemo): llama.cpp's form of it, where an upper-case letter is any letter but
// a-z and a lower-case one any letter but A-Z (so a non-ASCII letter is both).
constexpr std::string_view kTekkenPattern =
    R"([^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

const std::vector<BytePre>& byte_pres() {
  static const std::vector<BytePre> kPres = {
      {{"", "default", "gpt2", "gpt-2"}, "GPT-2 ByteLevel pattern", {}},
      {{"llama3", "llama-bpe", "llama-v3", "smaug-bpe"},
       "Llama 3 pre-tokenizer",
       {kLlama3Pattern},
       false,
       true},
      {{"qwen2"}, "Qwen2 pre-tokenizer", {kQwen2Pattern}, true},
      {{"smollm"}, "SmolLM pre-tokenizer", {kDigitPattern, kGpt2WordsPattern}},
      {{"tekken"}, "Tekken pre-tokenizer", {kTekkenPattern}, false, true},
  };
  return kPres;
}

std::string byte_pre_names() {
  std::string s;
  for (const BytePre& p : byte_pres())
    for (std::string_view n : p.names)
      if (!n.empty()) s += (s.empty() ? "" : ", ") + std::string(n);
  return s;
}

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
  const auto& pres = byte_pres();
  const auto pre = std::find_if(pres.begin(), pres.end(), [&](const BytePre& p) {
    return std::find(p.names.begin(), p.names.end(), v.pre) != p.names.end();
  });
  if (pre == pres.end())
    fail("{}: tokenizer.ggml.pre '{}' is not supported ({} are)", kSource, v.pre, byte_pre_names());
  if (pre->nfc) norm.push_back({NormalizerStep::Kind::kNfc, {}, {}});
  o.ignore_merges = pre->ignore_merges;
  std::vector<PreTokenizerStep> steps;
  for (std::string_view pattern : pre->splits) {
    split.regex = std::make_shared<const Regex>(pattern, pre->what);
    steps.push_back(split);
  }
  if (pre->splits.empty()) bytes.regex = std::make_shared<const Regex>(kGpt2Pattern, pre->what);
  steps.push_back(bytes);
  parts.pre_tokenizer = PreTokenizer(std::move(steps));
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
