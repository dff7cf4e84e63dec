// A compiled PCRE2 pattern for the pre-tokenizers' splitting rules, which Hugging Face writes for
// Oniguruma: UTF-8 with Unicode properties (PCRE2_UTF | PCRE2_UCP), \s and \w given Oniguruma's
// meaning, JIT-compiled when PCRE2 supports it. Thread-safe: each search uses its own match data.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace llm42 {

class Regex {
 public:
  // Throws llm42::Error with PCRE2's message and the offset in the pattern; `what` names where
  // the pattern comes from (e.g. "tokenizer.json: pre_tokenizer.pretokenizers[0].pattern").
  // A `literal` pattern matches its own text (Hugging Face's {"String": ...} patterns).
  Regex(std::string_view pattern, const std::string& what, bool literal = false);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // The [begin, end) byte ranges of successive non-overlapping matches in `text`, which must be
  // valid UTF-8. After an empty match the search resumes one character later, as Oniguruma's
  // iterator does. Throws llm42::Error when PCRE2 gives up (match or heap limit).
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;

  // The first match at or after `start`, if any (an empty one counts).
  bool search(std::string_view text, size_t start, size_t& begin, size_t& end) const;

  const std::string& pattern() const { return pattern_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string pattern_;
  std::string what_;
};

}  // namespace llm42
