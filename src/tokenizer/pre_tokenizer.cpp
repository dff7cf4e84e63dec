#include "tokenizer/pre_tokenizer.h"

#include "tokenizer/byte_level.h"

namespace llm42 {
namespace {

struct Span {
  size_t begin, end;
  bool match;
};

// The whole of `text` as alternating gaps and matches, in order (HF's Pattern::find_matches).
std::vector<Span> find_matches(const Regex& regex, std::string_view text, bool invert) {
  std::vector<Span> spans;
  size_t prev = 0;
  for (const auto& [b, e] : regex.find_all(text)) {
    if (prev != b) spans.push_back({prev, b, invert});
    spans.push_back({b, e, !invert});
    prev = e;
  }
  if (prev != text.size()) spans.push_back({prev, text.size(), invert});
  return spans;
}

// Applies the behavior to the spans (HF's NormalizedString::split); `match` afterwards means
// "remove this span".
std::vector<Span> apply_behavior(std::vector<Span> spans, SplitBehavior behavior) {
  std::vector<Span> out;
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (Span& s : spans) s.match = false;
      return spans;
    case SplitBehavior::kRemoved:
      return spans;
    case SplitBehavior::kContiguous:
      for (const Span& s : spans) {
        if (s.match == previous_match && !out.empty())
          out.back().end = s.end;
        else
          out.push_back({s.begin, s.end, false});
        previous_match = s.match;
      }
      return out;
    case SplitBehavior::kMergedWithPrevious:
      for (const Span& s : spans) {
        if (s.match && !previous_match && !out.empty())
          out.back().end = s.end;
        else
          out.push_back({s.begin, s.end, false});
        previous_match = s.match;
      }
      return out;
    case SplitBehavior::kMergedWithNext:
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->match && !previous_match && !out.empty())
          out.back().begin = it->begin;
        else
          out.push_back({it->begin, it->end, false});
        previous_match = it->match;
      }
      return {out.rbegin(), out.rend()};
  }
  return out;
}

void split(const PreTokenizerStep& step, std::string_view text, std::vector<std::string>& out) {
  for (const Span& s : apply_behavior(find_matches(*step.regex, text, step.invert), step.behavior))
    if (!s.match && s.end > s.begin) out.emplace_back(text.substr(s.begin, s.end - s.begin));
}

}  // namespace

void PreTokenizer::apply(std::string_view text, std::vector<std::string>& out) const {
  if (text.empty()) return;
  std::vector<std::string> pieces{std::string(text)}, next;
  for (const PreTokenizerStep& step : steps_) {
    next.clear();
    for (std::string& piece : pieces) {
      switch (step.kind) {
        case PreTokenizerStep::Kind::kSplit:
          split(step, piece, next);
          break;
        case PreTokenizerStep::Kind::kByteLevel: {
          if (step.add_prefix_space && piece[0] != ' ') piece = " " + piece;
          std::vector<std::string> words;
          if (step.regex != nullptr)
            split(step, piece, words);
          else
            words.push_back(std::move(piece));
          for (const std::string& w : words) {
            std::string mapped;
            mapped.reserve(w.size() * 2);
            byte_level::encode(w, mapped);
            next.push_back(std::move(mapped));
          }
          break;
        }
      }
    }
    pieces.swap(next);
  }
  for (std::string& p : pieces)
    if (!p.empty()) out.push_back(std::move(p));
}

}  // namespace llm42
