// Pre-tokenization: cutting normalized text into the words that BPE sees, as Hugging Face's
// pre-tokenizers do. Steps run in order, each on every piece the previous one left.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/regex.h"

namespace llm42 {

// What happens to the matches of a Split pattern (HF's SplitDelimiterBehavior).
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct PreTokenizerStep {
  enum class Kind {
    kSplit,      // cut on `regex` matches, treated per `behavior` (matches flipped by `invert`)
    kByteLevel,  // optional leading space, optional GPT-2 regex split, then GPT-2 byte alphabet
  };
  Kind kind = Kind::kSplit;
  std::shared_ptr<const Regex> regex;  // kSplit; kByteLevel when use_regex
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;
  bool add_prefix_space = false;  // kByteLevel: a space before each piece not starting with one
};

// The pattern GPT-2's ByteLevel pre-tokenizer splits with when `use_regex` is set.
inline constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class PreTokenizer {
 public:
  PreTokenizer() = default;
  explicit PreTokenizer(std::vector<PreTokenizerStep> steps) : steps_(std::move(steps)) {}

  // Appends the non-empty words of `text` (valid UTF-8). With no steps the text is one word.
  void apply(std::string_view text, std::vector<std::string>& out) const;

 private:
  std::vector<PreTokenizerStep> steps_;
};

}  // namespace llm42
