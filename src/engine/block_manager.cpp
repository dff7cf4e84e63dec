#include "engine/block_manager.h"

#include <xxhash.h>

#include <algorithm>

#include "util/error.h"

namespace llm42 {

BlockManager::BlockManager(int num_blocks, int block_size, bool prefix_cache)
    : num_blocks_(num_blocks),
      block_size_(block_size),
      prefix_cache_(prefix_cache),
      ref_(static_cast<size_t>(num_blocks), 0),
      lru_pos_(static_cast<size_t>(num_blocks)),
      in_lru_(static_cast<size_t>(num_blocks), false),
      cached_(static_cast<size_t>(num_blocks)) {
  LLM42_ASSERT(num_blocks > 0 && block_size > 0);
  // Lowest ids are handed out first.
  for (int b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

uint64_t BlockManager::chain_hash(uint64_t parent, const int32_t* tokens, bool fast) const {
  // The lane is part of the key: a fast-lane block never answers a canonical lookup.
  constexpr uint64_t kFastLaneSeed = 0x9e3779b97f4a7c15ull;
  const uint64_t h = XXH64(tokens, sizeof(int32_t) * static_cast<size_t>(block_size_),
                           fast ? parent ^ kFastLaneSeed : parent);
  return h == 0 ? 1 : h;  // 0 marks "not cached"
}

int BlockManager::take_block() {
  int b;
  if (!free_.empty()) {
    b = free_.back();
    free_.pop_back();
  } else {
    LLM42_ASSERT(!lru_.empty(), "no block to take");
    b = lru_.front();
    lru_.pop_front();
    in_lru_[b] = false;
    by_hash_.erase(cached_[b].hash);
    cached_[b] = CachedBlock{};
  }
  LLM42_ASSERT(ref_[b] == 0);
  ref_[b] = 1;
  return b;
}

void BlockManager::unref(int b) {
  LLM42_ASSERT(ref_[b] > 0, "block {} released twice", b);
  if (--ref_[b] > 0) return;
  if (cached_[b].hash != 0) {
    lru_.push_back(b);
    lru_pos_[b] = std::prev(lru_.end());
    in_lru_[b] = true;
  } else {
    free_.push_back(b);
  }
}

bool BlockManager::ensure(Sequence& seq, int n_positions) {
  const int need = blocks_for(n_positions) - static_cast<int>(seq.blocks.size());
  if (need <= 0) return true;
  if (need > num_available()) return false;
  for (int i = 0; i < need; ++i) seq.blocks.push_back(take_block());
  return true;
}

BlockManager::Match BlockManager::match_prefix(Sequence& seq, int max_positions, bool fast_ok) {
  LLM42_ASSERT(seq.blocks.empty());
  seq.block_hashes.clear();
  if (!prefix_cache_) return {};
  const int n_full = std::min(max_positions, seq.len()) / block_size_;
  // The cached block with these tokens after `parent` in the given lane, or -1.
  auto find = [&](uint64_t h, uint64_t parent, const int32_t* toks, bool fast) {
    auto it = by_hash_.find(h);
    if (it == by_hash_.end()) return -1;
    const CachedBlock& cb = cached_[it->second];
    if (cb.parent != parent || cb.fast != fast ||
        !std::equal(cb.tokens.begin(), cb.tokens.end(), toks))
      return -1;
    return it->second;
  };
  Match m;
  uint64_t parent = 0;
  bool fast = false;  // the chain went on through a fast-lane block: canonical ones cannot follow
  for (int i = 0; i < n_full; ++i) {
    const int32_t* toks = seq.tokens.data() + static_cast<size_t>(i) * block_size_;
    uint64_t h = 0;
    int b = -1;
    if (!fast) {
      h = chain_hash(parent, toks, false);
      b = find(h, parent, toks, false);
    }
    if (b < 0 && fast_ok) {
      h = chain_hash(parent, toks, true);
      b = find(h, parent, toks, true);
      fast = b >= 0;
    }
    if (b < 0) break;
    if (in_lru_[b]) {
      lru_.erase(lru_pos_[b]);
      in_lru_[b] = false;
    }
    ++ref_[b];
    seq.blocks.push_back(b);
    seq.block_hashes.push_back(h);
    parent = h;
    m.positions += block_size_;
    if (!fast) m.canonical += block_size_;
  }
  return m;
}

void BlockManager::count_prefix_lookup(const Match& m) {
  if (!prefix_cache_) return;
  ++prefix_queries_;
  if (m.positions > 0) ++prefix_hits_;
}

void BlockManager::publish(Sequence& seq, int canonical_positions, int fast_positions) {
  if (!prefix_cache_) return;
  LLM42_ASSERT(canonical_positions <= fast_positions);
  const int n_canonical = std::min(canonical_positions, seq.len()) / block_size_;
  const int n_full = std::min(fast_positions, seq.len()) / block_size_;
  while (static_cast<int>(seq.block_hashes.size()) < n_full) {
    const size_t i = seq.block_hashes.size();
    const bool fast = static_cast<int>(i) >= n_canonical;
    const uint64_t parent = i == 0 ? 0 : seq.block_hashes[i - 1];
    const int32_t* toks = seq.tokens.data() + i * static_cast<size_t>(block_size_);
    const uint64_t h = chain_hash(parent, toks, fast);
    const int b = seq.blocks[i];
    if (!by_hash_.contains(h) && cached_[b].hash == 0) {
      by_hash_[h] = b;
      cached_[b] = CachedBlock{h, parent, std::vector<int32_t>(toks, toks + block_size_), fast};
    }
    seq.block_hashes.push_back(h);
  }
}

void BlockManager::truncate(Sequence& seq, int n_positions) {
  const size_t keep = static_cast<size_t>(blocks_for(n_positions));
  while (seq.blocks.size() > keep) {
    const int b = seq.blocks.back();
    seq.blocks.pop_back();
    // A published block lies wholly below the canonical frontier, which never moves back past
    // committed tokens (fast-lane blocks come only from requests that never roll back), so
    // truncation only ever drops unpublished blocks.
    LLM42_ASSERT(seq.block_hashes.size() <= seq.blocks.size(), "truncating a published block");
    unref(b);
  }
}

void BlockManager::release(Sequence& seq) {
  for (auto it = seq.blocks.rbegin(); it != seq.blocks.rend(); ++it) unref(*it);
  seq.blocks.clear();
  seq.block_hashes.clear();
}

void BlockManager::check_integrity(const std::vector<const Sequence*>& live) const {
  std::vector<int> refs(static_cast<size_t>(num_blocks_), 0);
  for (const Sequence* s : live) {
    LLM42_ASSERT(static_cast<int>(s->blocks.size()) >= blocks_for(s->n_cached),
                 "seq {} holds {} blocks for {} cached positions", s->id, s->blocks.size(),
                 s->n_cached);
    LLM42_ASSERT(s->block_hashes.size() <= s->blocks.size());
    for (int b : s->blocks) {
      LLM42_ASSERT(b >= 0 && b < num_blocks_, "seq {} has block id {}", s->id, b);
      ++refs[b];
    }
    for (size_t i = 0; i < s->block_hashes.size(); ++i) {
      // A sequence's published prefix must still be what the cache says it is.
      const CachedBlock& cb = cached_[s->blocks[i]];
      if (cb.hash == s->block_hashes[i])
        LLM42_ASSERT(std::equal(cb.tokens.begin(), cb.tokens.end(),
                                s->tokens.begin() + static_cast<std::ptrdiff_t>(i) * block_size_),
                     "seq {} block {} differs from its cached tokens", s->id, i);
    }
    // Blocks shared with another sequence must be published (never written again).
    for (size_t i = s->block_hashes.size(); i < s->blocks.size(); ++i)
      LLM42_ASSERT(ref_[s->blocks[i]] == 1 || cached_[s->blocks[i]].hash != 0,
                   "seq {} writes shared block {}", s->id, s->blocks[i]);
  }
  std::vector<char> seen(static_cast<size_t>(num_blocks_), 0);
  for (int b : free_) {
    LLM42_ASSERT(!seen[b], "block {} twice in the free list", b);
    seen[b] = 1;
    LLM42_ASSERT(ref_[b] == 0 && cached_[b].hash == 0 && !in_lru_[b], "free block {} in use", b);
  }
  for (int b : lru_) {
    LLM42_ASSERT(!seen[b], "block {} both free and evictable", b);
    seen[b] = 1;
    LLM42_ASSERT(ref_[b] == 0 && cached_[b].hash != 0 && in_lru_[b], "evictable block {}", b);
  }
  for (int b = 0; b < num_blocks_; ++b) {
    LLM42_ASSERT(ref_[b] == refs[b], "block {} has ref {} but {} owners", b, ref_[b], refs[b]);
    if (ref_[b] == 0) LLM42_ASSERT(seen[b], "block {} is neither owned, free nor cached", b);
    if (cached_[b].hash != 0) {
      auto it = by_hash_.find(cached_[b].hash);
      LLM42_ASSERT(it != by_hash_.end() && it->second == b, "cache index lost block {}", b);
    }
  }
  LLM42_ASSERT(by_hash_.size() <= static_cast<size_t>(num_blocks_));
}

}  // namespace llm42
