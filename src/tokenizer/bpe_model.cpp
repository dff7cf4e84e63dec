#include "tokenizer/bpe_model.h"

#include <queue>
#include <utility>

#include "tokenizer/utf8.h"

namespace llm42 {

BpeModel::BpeModel(std::vector<std::string> pieces, BpeOptions options)
    : pieces_(std::move(pieces)), options_(options), small_char_ids_(0x800, -1) {
  ids_.reserve(pieces_.size());
  for (int32_t id = 0; id < size(); ++id) {
    const std::string& p = pieces_[id];
    if (p.empty()) continue;
    ids_.emplace(p, id);  // keeps the first (lowest) id of a duplicated text
    if (size_t len = utf8::char_length(p, 0); len == p.size()) {
      size_t n = 0;
      const char32_t cp = utf8::decode(p, 0, n);
      if (cp < small_char_ids_.size() && small_char_ids_[cp] < 0) small_char_ids_[cp] = id;
    }
  }
  for (int b = 0; b < 256; ++b) {
    const int32_t* id = ids_.find(byte_piece(static_cast<uint8_t>(b)));
    byte_ids_[b] = id == nullptr ? -1 : *id;
  }
}

std::string BpeModel::byte_piece(uint8_t b) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  return std::string("<0x") + kHex[b >> 4] + kHex[b & 15] + ">";
}

bool BpeModel::add_ranked_merges(const std::vector<std::pair<std::string, std::string>>& merges,
                                 std::string& missing) {
  merges_.reserve(merges.size());
  std::string joined;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [left, right] = merges[rank];
    joined.assign(left).append(right);
    const auto l = find(left), r = find(right), m = find(joined);
    if (!l || !r || !m) {
      missing = !l ? left : !r ? right : joined;
      return false;
    }
    // A pair listed twice keeps its first (best) rank.
    merges_.emplace(key(*l, *r), Merge{static_cast<float>(rank), *m});
  }
  return true;
}

void BpeModel::add_scored_merges(const std::vector<float>& scores) {
  for (int32_t id = 0; id < size(); ++id) {
    const std::string& p = pieces_[id];
    if (find(p) != id) continue;
    for (size_t k = 1; k < p.size(); ++k) {
      const auto l = find(std::string_view(p).substr(0, k));
      const auto r = find(std::string_view(p).substr(k));
      if (l && r) merges_.emplace(key(*l, *r), Merge{-scores[id], id});
    }
  }
}

std::optional<int32_t> BpeModel::find(std::string_view piece) const {
  const int32_t* id = ids_.find(piece);
  if (id == nullptr) return std::nullopt;
  return *id;
}

int32_t BpeModel::char_id(char32_t cp, std::string_view text) const {
  if (cp < small_char_ids_.size()) return small_char_ids_[cp];
  const int32_t* id = ids_.find(text);
  return id == nullptr ? -1 : *id;
}

void BpeModel::merge_word(std::string_view word, std::vector<int32_t>& out) const {
  std::vector<int32_t> ids;
  ids.reserve(word.size());
  int32_t pending_unk = -1;  // a (fused) unknown token not yet added
  for (size_t i = 0; i < word.size();) {
    size_t len = 0;
    const char32_t cp = utf8::decode(word, i, len);
    const int32_t id = char_id(cp, word.substr(i, len));
    if (id >= 0) {
      if (pending_unk >= 0) ids.push_back(std::exchange(pending_unk, -1));
      ids.push_back(id);
    } else if (options_.byte_fallback && [&] {
                 for (size_t k = i; k < i + len; ++k)
                   if (byte_ids_[static_cast<uint8_t>(word[k])] < 0) return false;
                 return true;
               }()) {
      // As in HF, byte tokens do not flush a pending unknown token.
      for (size_t k = i; k < i + len; ++k) ids.push_back(byte_ids_[static_cast<uint8_t>(word[k])]);
    } else if (options_.unk_id >= 0) {
      if (pending_unk >= 0 && !options_.fuse_unk) ids.push_back(pending_unk);
      pending_unk = options_.unk_id;
    }
    i += len;
  }
  if (pending_unk >= 0) ids.push_back(pending_unk);

  const int n = static_cast<int>(ids.size());
  std::vector<int32_t> prev(n), next(n);
  std::vector<bool> alive(n, true);
  for (int i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  struct Candidate {
    float cost;
    int32_t pos;
    int32_t result;
  };
  const auto worse = [](const Candidate& a, const Candidate& b) {
    return a.cost != b.cost ? a.cost > b.cost : a.pos > b.pos;
  };
  std::priority_queue<Candidate, std::vector<Candidate>, decltype(worse)> queue(worse);
  const auto consider = [&](int32_t pos) {
    if (pos < 0 || next[pos] < 0) return;
    const Merge* m = merges_.find(key(ids[pos], ids[next[pos]]));
    if (m != nullptr) queue.push({m->cost, pos, m->result});
  };
  for (int i = 0; i + 1 < n; ++i) consider(i);
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    const int32_t pos = top.pos, right = next[pos];
    if (!alive[pos] || right < 0) continue;
    // A stale entry: this pair has changed since it was queued.
    const Merge* m = merges_.find(key(ids[pos], ids[right]));
    if (m == nullptr || m->result != top.result) continue;
    ids[pos] = top.result;
    alive[right] = false;
    next[pos] = next[right];
    if (next[pos] >= 0) prev[next[pos]] = pos;
    consider(prev[pos]);
    consider(pos);
  }
  for (int i = 0; i < n; ++i)
    if (alive[i]) out.push_back(ids[i]);
}

void BpeModel::tokenize(std::string_view word, std::vector<int32_t>& out) const {
  if (options_.ignore_merges) {
    if (const auto id = find(word)) {
      out.push_back(*id);
      return;
    }
  }
  const bool cacheable = word.size() < kCacheMaxWordBytes;
  if (cacheable) {
    std::lock_guard lock(cache_mutex_);
    if (const auto it = cache_.find(word); it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t from = out.size();
  merge_word(word, out);
  if (cacheable) {
    std::lock_guard lock(cache_mutex_);
    if (cache_.size() >= kCacheEntries) cache_.clear();
    cache_.emplace(std::string(word), std::vector<int32_t>(out.begin() + from, out.end()));
  }
}

}  // namespace llm42
