// An open-addressing hash map (linear probing, power-of-two capacity) for the tokenizer's two
// hot lookups: token text -> id and merge pair -> merge. Insert-only, which is all a vocabulary
// needs; much faster than std::unordered_map's node per entry on these sizes (10^5..10^6).
#pragma once

#include <xxhash.h>

#include <cstdint>
#include <string_view>
#include <vector>

#include "util/hash.h"

namespace llm42 {

struct FlatHash {
  uint64_t operator()(uint64_t k) const { return mix64(k); }
  uint64_t operator()(std::string_view s) const { return XXH3_64bits(s.data(), s.size()); }
};

template <typename Key, typename Value>
class FlatMap {
 public:
  void reserve(size_t n) {
    if (n * 2 > slots_.size()) rehash(capacity_for(n));
  }

  // Inserts (key, value) unless the key is present; returns false when it was.
  bool emplace(const Key& key, const Value& value) {
    if ((size_ + 1) * 2 > slots_.size()) rehash(capacity_for(size_ + 1));
    Slot& s = probe(key);
    if (s.used) return false;
    s = {key, value, true};
    ++size_;
    return true;
  }

  const Value* find(const Key& key) const {
    if (slots_.empty()) return nullptr;
    const Slot& s = const_cast<FlatMap*>(this)->probe(key);
    return s.used ? &s.value : nullptr;
  }

  size_t size() const { return size_; }

 private:
  struct Slot {
    Key key{};
    Value value{};
    bool used = false;
  };

  static size_t capacity_for(size_t n) {
    size_t c = 16;
    while (c < n * 2) c *= 2;
    return c;
  }

  // The slot holding `key`, or the empty slot where it would go.
  Slot& probe(const Key& key) {
    const size_t mask = slots_.size() - 1;
    for (size_t i = FlatHash()(key) & mask;; i = (i + 1) & mask) {
      Slot& s = slots_[i];
      if (!s.used || s.key == key) return s;
    }
  }

  void rehash(size_t capacity) {
    std::vector<Slot> old(capacity);
    old.swap(slots_);
    for (const Slot& s : old)
      if (s.used) probe(s.key) = s;
  }

  std::vector<Slot> slots_;
  size_t size_ = 0;
};

}  // namespace llm42
