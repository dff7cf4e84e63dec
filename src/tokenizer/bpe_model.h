// The BPE model: one pre-token ("word") to ids. The word's characters are looked up one by one
// (a character missing from the vocabulary becomes its byte tokens <0xAB> with byte fallback,
// else the unknown token), then adjacent symbols are merged, best merge first, until no pair
// can merge. "Best" is the lowest rank of Hugging Face's ranked merges, or for SentencePiece
// vocabularies the highest score of the merged piece; ties go to the leftmost pair. A priority
// queue over pair positions keeps this O(n log n) in the word's length.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/flat_map.h"

namespace llm42 {

struct BpeOptions {
  bool byte_fallback = false;  // unknown characters become <0xAB> tokens
  int32_t unk_id = -1;         // otherwise this token (none: the character is dropped, as HF does)
  bool fuse_unk = false;       // consecutive unknown characters give one unknown token
  bool ignore_merges = false;  // a word that is itself in the vocabulary is emitted as is
};

class BpeModel {
 public:
  // `pieces[id]` is the token text of each id (empty for ids the model does not define).
  BpeModel(std::vector<std::string> pieces, BpeOptions options);

  // Ranked merges: rank r merges (left, right) into the piece left+right, which must exist.
  // Returns false with `missing` set to the first piece that is not in the vocabulary.
  bool add_ranked_merges(const std::vector<std::pair<std::string, std::string>>& merges,
                         std::string& missing);
  // SentencePiece merges: every split of a piece into two pieces is a merge whose priority is
  // the piece's score (higher first); for one text held by several ids the lowest id wins.
  void add_scored_merges(const std::vector<float>& scores);

  // Appends the ids of `word` (valid UTF-8, not empty). Thread-safe.
  void tokenize(std::string_view word, std::vector<int32_t>& out) const;

  std::optional<int32_t> find(std::string_view piece) const;
  // The text of the byte-fallback token of `b`: "<0xAB>".
  static std::string byte_piece(uint8_t b);
  const std::string& piece(int32_t id) const { return pieces_[id]; }
  int32_t size() const { return static_cast<int32_t>(pieces_.size()); }

 private:
  struct Merge {
    float cost;  // lower merges first: the rank, or minus the score
    int32_t result;
  };
  static uint64_t key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
           static_cast<uint32_t>(right);
  }
  int32_t char_id(char32_t cp, std::string_view text) const;
  void merge_word(std::string_view word, std::vector<int32_t>& out) const;

  std::vector<std::string> pieces_;
  BpeOptions options_;
  FlatMap<std::string_view, int32_t> ids_;  // views into pieces_
  std::vector<int32_t> small_char_ids_;     // code points below 0x800: id or -1
  int32_t byte_ids_[256];                   // <0xAB> tokens, or -1
  FlatMap<uint64_t, Merge> merges_;

  // Words seen before, up to a bound; cleared when full so that the cache follows the text.
  static constexpr size_t kCacheEntries = 1 << 16;
  static constexpr size_t kCacheMaxWordBytes = 256;
  mutable std::mutex cache_mutex_;
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
  };
  mutable std::unordered_map<std::string, std::vector<int32_t>, Hash, std::equal_to<>> cache_;
};

}  // namespace llm42
