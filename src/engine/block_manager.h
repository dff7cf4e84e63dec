// The block manager: a paged KV cache of fixed-size blocks with reference counts and a prefix
// cache of full blocks.
//
// A block is free, owned by sequences (ref > 0), or cached with ref 0 (evictable, least recently
// used first). Cached blocks are keyed by a chain hash of (parent block hash, the block's
// tokens, its lane); the tokens are stored too, so a hash collision can never share the wrong
// KV. Two lanes (DESIGN.md §3): canonical blocks serve every request; fast-lane blocks, written
// by requests that do not need canonical values and never roll back, serve only such requests,
// and only after the canonical part of a chain (KV after a fast-lane position is fast-lane KV).
#pragma once

#include <cstdint>
#include <list>
#include <unordered_map>
#include <vector>

#include "engine/sequence.h"

namespace llm42 {

class BlockManager {
 public:
  BlockManager(int num_blocks, int block_size, bool prefix_cache);

  int block_size() const { return block_size_; }
  int num_blocks() const { return num_blocks_; }
  // Blocks that can be handed out now: free plus evictable cached ones.
  int num_available() const { return static_cast<int>(free_.size() + lru_.size()); }
  int num_used() const { return num_blocks_ - num_available(); }
  int blocks_for(int positions) const { return (positions + block_size_ - 1) / block_size_; }

  // Makes seq.blocks cover positions [0, n_positions). Returns false, changing nothing, when
  // there are not enough blocks.
  bool ensure(Sequence& seq, int n_positions);
  struct Match {
    int positions = 0;  // covered by cached blocks
    int canonical = 0;  // of them, by canonical blocks (a prefix)
  };
  // Attaches cached blocks matching the start of seq.tokens (at most `max_positions` positions)
  // to a sequence that holds no blocks yet: canonical blocks, then, with `fast_ok`, fast-lane
  // ones.
  Match match_prefix(Sequence& seq, int max_positions, bool fast_ok);
  // Counts a lookup (and a hit when m matched any block) for prefix_queries()/prefix_hits():
  // once per admission (a resumed request counts again), not per attempt (a request that waits
  // retries every step).
  void count_prefix_lookup(const Match& m);
  // Publishes seq's full blocks to the prefix cache: those below `canonical_positions` as
  // canonical, the following ones below `fast_positions` as fast-lane blocks.
  void publish(Sequence& seq, int canonical_positions, int fast_positions);
  // Releases seq's blocks beyond those covering [0, n_positions).
  void truncate(Sequence& seq, int n_positions);
  // Releases every block of seq.
  void release(Sequence& seq);

  // Checks every invariant against the live sequences; aborts with a message when one breaks.
  void check_integrity(const std::vector<const Sequence*>& live) const;

  int64_t prefix_hits() const { return prefix_hits_; }
  int64_t prefix_queries() const { return prefix_queries_; }

 private:
  struct CachedBlock {
    uint64_t hash;
    uint64_t parent;
    std::vector<int32_t> tokens;
    bool fast = false;  // fast-lane KV
  };
  int take_block();  // from the free list, else evicts the least recently used cached block
  void unref(int block);
  uint64_t chain_hash(uint64_t parent, const int32_t* tokens, bool fast) const;

  int num_blocks_;
  int block_size_;
  bool prefix_cache_;
  std::vector<int> ref_;
  std::vector<int> free_;  // stack of free block ids
  std::list<int> lru_;     // cached blocks with ref 0, least recently used first
  std::vector<std::list<int>::iterator> lru_pos_;
  std::vector<bool> in_lru_;
  std::unordered_map<uint64_t, int> by_hash_;  // chain hash -> block
  std::vector<CachedBlock> cached_;            // per block; hash 0 = not cached
  int64_t prefix_hits_ = 0;
  int64_t prefix_queries_ = 0;
};

}  // namespace llm42
