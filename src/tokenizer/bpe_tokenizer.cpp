#include "tokenizer/bpe_tokenizer.h"

#include <algorithm>

#include "tokenizer/byte_level.h"
#include "tokenizer/utf8.h"

namespace llm42 {
namespace {

std::string replace_all(std::string s, std::string_view from, std::string_view to) {
  if (from.empty()) return s;
  for (size_t at = 0; (at = s.find(from, at)) != std::string::npos; at += to.size())
    s.replace(at, from.size(), to);
  return s;
}

// The byte of a "<0xAB>" token, as HF's ByteFallback decoder reads it (either case of hex).
int byte_of_fallback_piece(std::string_view t) {
  if (t.size() != 6 || !t.starts_with("<0x") || t.back() != '>') return -1;
  int v = 0;
  for (char c : t.substr(3, 2)) {
    v *= 16;
    if (c >= '0' && c <= '9')
      v += c - '0';
    else if (c >= 'a' && c <= 'f')
      v += c - 'a' + 10;
    else if (c >= 'A' && c <= 'F')
      v += c - 'A' + 10;
    else
      return -1;
  }
  return v;
}

}  // namespace

BpeTokenizer::BpeTokenizer(BpeTokenizerParts parts)
    : model_(std::move(parts.model)),
      normalizer_(std::move(parts.normalizer)),
      pre_tokenizer_(std::move(parts.pre_tokenizer)),
      prefix_(std::move(parts.prefix)),
      suffix_(std::move(parts.suffix)),
      decoder_(std::move(parts.decoder)) {
  bos_id_ = parts.bos_id;
  eos_ids_ = std::move(parts.eos_ids);
  int32_t n = model_->size();
  for (const AddedToken& t : parts.added_tokens) n = std::max(n, t.id + 1);
  std::vector<std::string> text(n);
  for (int32_t id = 0; id < model_->size(); ++id) text[id] = model_->piece(id);
  special_.assign(n, false);
  for (const AddedToken& t : parts.added_tokens) {
    text[t.id] = t.content;
    special_[t.id] = t.special;
  }
  bytes_.resize(n);
  fallback_.assign(n, -1);
  for (int32_t id = 0; id < n; ++id) {
    if (decoder_.byte_level) {
      // A token outside the byte alphabet (an added token such as "<|eot_id|>" is inside it,
      // one holding a newline is not) stands for its own text, as in HF's ByteLevel decoder.
      if (!byte_level::decode(text[id], bytes_[id])) bytes_[id] = text[id];
      continue;
    }
    std::string t = replace_all(text[id], decoder_.replace_from, decoder_.replace_to);
    if (decoder_.byte_fallback) fallback_[id] = static_cast<int16_t>(byte_of_fallback_piece(t));
    bytes_[id] = std::move(t);
  }
  added_ = AddedTokens(std::move(parts.added_tokens), normalizer_);
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text, bool add_special,
                                          bool parse_special, size_t max_tokens) const {
  const std::string clean = utf8::sanitize(text);
  std::vector<int32_t> ids;
  if (add_special) ids = prefix_;
  std::vector<TextPiece> raw, pieces;
  std::vector<std::string> words;
  added_.split(clean, false, parse_special, raw);
  for (const TextPiece& r : raw) {
    if (ids.size() > max_tokens) return ids;
    if (r.id >= 0) {
      ids.push_back(r.id);
      continue;
    }
    const std::string normalized = normalizer_.apply(r.text);
    pieces.clear();
    if (added_.has_normalized())
      added_.split(normalized, true, parse_special, pieces);
    else if (!normalized.empty())
      pieces.push_back({normalized, -1});
    for (const TextPiece& p : pieces) {
      if (p.id >= 0) {
        ids.push_back(p.id);
        continue;
      }
      words.clear();
      pre_tokenizer_.apply(p.text, words);
      for (const std::string& w : words) {
        model_->tokenize(w, ids);
        if (ids.size() > max_tokens) return ids;
      }
    }
  }
  if (add_special) ids.insert(ids.end(), suffix_.begin(), suffix_.end());
  return ids;
}

std::string BpeTokenizer::token_bytes(int32_t id, bool include_special) const {
  if (id < 0 || id >= vocab_size() || (special_[id] && !include_special)) return {};
  if (fallback_[id] >= 0) return std::string(1, static_cast<char>(fallback_[id]));
  return bytes_[id];
}

std::optional<int32_t> BpeTokenizer::token_id(std::string_view token_text) const {
  for (const AddedToken& t : added_.tokens())
    if (t.content == token_text) return t.id;
  return model_->find(token_text);
}

bool BpeTokenizer::is_special(int32_t id) const {
  return id >= 0 && id < vocab_size() && special_[id];
}

std::optional<uint8_t> BpeTokenizer::fallback_byte(int32_t id) const {
  if (id < 0 || id >= vocab_size() || fallback_[id] < 0) return std::nullopt;
  return static_cast<uint8_t>(fallback_[id]);
}

}  // namespace llm42
