// Added tokens (tokenizer.json `added_tokens`, GGUF control and user-defined tokens): strings
// that are cut out of the text before normalization and BPE and become one id each, as Hugging
// Face's AddedVocabulary does it. Matching is leftmost-longest over all of them; a match of a
// special token is ignored when special tokens are not parsed (HF's `encode_special_tokens`).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/normalizer.h"
#include "tokenizer/regex.h"

namespace llm42 {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;      // skipped by decode(skip_special); not parsed with parse_special off
  bool lstrip = false;       // the match takes the whitespace on its left
  bool rstrip = false;       // the match takes the whitespace on its right
  bool single_word = false;  // only matches when no word character touches it
  bool normalized = false;   // matched in normalized text, against the normalized content
};

// A piece of the text: plain text (id < 0) or one added token.
struct TextPiece {
  std::string_view text;
  int32_t id = -1;
};

class AddedTokens {
 public:
  AddedTokens() = default;
  // `normalizer` gives the form in which `normalized` tokens are matched.
  AddedTokens(std::vector<AddedToken> tokens, const Normalizer& normalizer);

  // Cuts `text` on the tokens matched in raw text (normalized == false) or in normalized text
  // (normalized == true), appending the pieces in order; empty text pieces are left out.
  void split(std::string_view text, bool normalized, bool parse_special,
             std::vector<TextPiece>& out) const;

  const std::vector<AddedToken>& tokens() const { return tokens_; }
  bool has_normalized() const { return !normalized_.empty(); }

 private:
  // A byte trie over the contents of one group of tokens.
  struct Trie {
    struct Node {
      std::vector<std::pair<uint8_t, int32_t>> next;  // (byte, node), sorted by byte
      int32_t token = -1;                             // index into tokens_ ending here
    };
    std::vector<Node> nodes{Node{}};
    bool first_byte[256] = {};
    bool empty() const { return nodes.size() == 1; }
    void insert(std::string_view s, int32_t token);
    // The longest token that starts at text[i]: its index and length, or -1.
    int32_t longest(std::string_view text, size_t i, size_t& len) const;
  };

  bool word_char_before(std::string_view text, size_t end) const;
  bool word_char_after(std::string_view text, size_t begin) const;

  std::vector<AddedToken> tokens_;
  Trie raw_, normalized_;
  std::unique_ptr<Regex> word_;  // \w, only when some token is single_word
};

}  // namespace llm42
