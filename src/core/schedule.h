// The schedule of a forward pass (DESIGN.md §2). Every kernel that reduces takes one.
//
//   kFast      : whatever is quickest for this shape and load (split-K and split-KV chosen from
//                the batch). Not batch-invariant.
//   kCanonical : every reduction's order depends only on the model's fixed dimensions and the
//                token's absolute position, never on the batch. Batch-invariant.
#pragma once

#include <string_view>

namespace llm42 {

enum class Schedule : unsigned char { kFast, kCanonical };

// The lane of one entry of a pass (a sequence's rows): canonical only in a canonical pass, and
// only when the entry does not ask for fast attention (a canonical pass may carry such entries;
// docs/engine.md, "Lanes per mode").
inline Schedule entry_lane(Schedule pass, bool fast_attention) {
  return pass == Schedule::kCanonical && !fast_attention ? Schedule::kCanonical : Schedule::kFast;
}

inline std::string_view schedule_name(Schedule s) {
  return s == Schedule::kFast ? "fast" : "canonical";
}

}  // namespace llm42
