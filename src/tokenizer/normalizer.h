// Text normalization before pre-tokenization: the Hugging Face normalizers the supported
// tokenizers use, applied in order to each piece of text between added tokens.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace llm42 {

struct NormalizerStep {
  enum class Kind {
    kNfc,      // Unicode NFC (Qwen)
    kPrepend,  // `text` before non-empty input (SentencePiece's dummy prefix U+2581)
    kReplace,  // every occurrence of `pattern` by `text` (SentencePiece: " " by U+2581)
  };
  Kind kind;
  std::string text;
  std::string pattern;
};

class Normalizer {
 public:
  Normalizer() = default;
  explicit Normalizer(std::vector<NormalizerStep> steps) : steps_(std::move(steps)) {}

  // `text` must be valid UTF-8; so is the result.
  std::string apply(std::string_view text) const;
  bool empty() const { return steps_.empty(); }

 private:
  std::vector<NormalizerStep> steps_;
};

}  // namespace llm42
