#include "tokenizer/added_tokens.h"

#include <algorithm>

#include "tokenizer/utf8.h"

namespace llm42 {
namespace {

// Unicode's White_Space property, which is what \s means to the Rust regex crate that Hugging
// Face uses for lstrip and rstrip.
bool is_white_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

// The start of the whitespace run that ends `text`.
size_t trailing_space_start(std::string_view text) {
  size_t i = text.size();
  while (i > 0) {
    size_t b = i - 1;
    while (b > 0 && (static_cast<uint8_t>(text[b]) & 0xC0) == 0x80) --b;
    size_t len = 0;
    if (!is_white_space(utf8::decode(text, b, len))) break;
    i = b;
  }
  return i;
}

// The length of the whitespace run that starts `text`.
size_t leading_space_length(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    size_t len = 0;
    if (!is_white_space(utf8::decode(text, i, len))) break;
    i += len;
  }
  return i;
}

}  // namespace

void AddedTokens::Trie::insert(std::string_view s, int32_t token) {
  if (s.empty()) return;
  int32_t node = 0;
  for (char ch : s) {
    const auto b = static_cast<uint8_t>(ch);
    auto& next = nodes[node].next;
    auto it = std::lower_bound(next.begin(), next.end(), std::pair<uint8_t, int32_t>(b, -1));
    if (it != next.end() && it->first == b) {
      node = it->second;
    } else {
      const auto child = static_cast<int32_t>(nodes.size());
      next.insert(it, {b, child});
      nodes.emplace_back();
      node = child;
    }
  }
  // Two tokens with one content: the first one listed wins, as in a map built in order.
  if (nodes[node].token < 0) nodes[node].token = token;
  first_byte[static_cast<uint8_t>(s[0])] = true;
}

int32_t AddedTokens::Trie::longest(std::string_view text, size_t i, size_t& len) const {
  int32_t node = 0, found = -1;
  for (size_t k = i; k < text.size(); ++k) {
    const auto b = static_cast<uint8_t>(text[k]);
    const auto& next = nodes[node].next;
    auto it = std::lower_bound(next.begin(), next.end(), std::pair<uint8_t, int32_t>(b, -1));
    if (it == next.end() || it->first != b) break;
    node = it->second;
    if (nodes[node].token >= 0) {
      found = nodes[node].token;
      len = k + 1 - i;
    }
  }
  return found;
}

AddedTokens::AddedTokens(std::vector<AddedToken> tokens, const Normalizer& normalizer)
    : tokens_(std::move(tokens)) {
  bool any_single_word = false;
  for (size_t t = 0; t < tokens_.size(); ++t) {
    const AddedToken& tok = tokens_[t];
    if (tok.normalized)
      normalized_.insert(normalizer.apply(tok.content), static_cast<int32_t>(t));
    else
      raw_.insert(tok.content, static_cast<int32_t>(t));
    any_single_word |= tok.single_word;
  }
  if (any_single_word) word_ = std::make_unique<Regex>("^\\w", "added token single_word check");
}

bool AddedTokens::word_char_before(std::string_view text, size_t end) const {
  if (end == 0) return false;
  size_t b = end - 1;
  while (b > 0 && (static_cast<uint8_t>(text[b]) & 0xC0) == 0x80) --b;
  size_t begin = 0, stop = 0;
  return word_->search(text.substr(b, end - b), 0, begin, stop);
}

bool AddedTokens::word_char_after(std::string_view text, size_t begin) const {
  size_t b = 0, e = 0;
  return begin < text.size() && word_->search(text.substr(begin), 0, b, e);
}

void AddedTokens::split(std::string_view text, bool normalized, bool parse_special,
                        std::vector<TextPiece>& out) const {
  const Trie& trie = normalized ? normalized_ : raw_;
  size_t emitted = 0;  // text before this has been given out
  size_t i = 0;
  while (i < text.size() && !trie.empty()) {
    size_t len = 0;
    const int32_t t =
        trie.first_byte[static_cast<uint8_t>(text[i])] ? trie.longest(text, i, len) : -1;
    if (t < 0) {
      ++i;
      continue;
    }
    const AddedToken& tok = tokens_[t];
    size_t begin = i, end = i + len;
    // Matching resumes after the match even when it is not taken, as an Aho-Corasick
    // leftmost-longest iterator does.
    i = end;
    if (tok.special && !parse_special) continue;
    if (tok.single_word && (word_char_before(text, begin) || word_char_after(text, end))) continue;
    if (tok.lstrip) begin = std::max(trailing_space_start(text.substr(0, begin)), emitted);
    if (tok.rstrip) end += leading_space_length(text.substr(end));
    begin = std::max(begin, emitted);
    if (begin > emitted) out.push_back({text.substr(emitted, begin - emitted), -1});
    out.push_back({text.substr(begin, end - begin), tok.id});
    emitted = end;
    i = std::max(i, end);
  }
  if (emitted < text.size()) out.push_back({text.substr(emitted), -1});
}

}  // namespace llm42
