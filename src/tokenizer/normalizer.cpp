#include "tokenizer/normalizer.h"

#include "tokenizer/unicode_nfc.h"

namespace llm42 {
namespace {

std::string replace_all(std::string_view text, std::string_view pattern, std::string_view with) {
  std::string out;
  out.reserve(text.size());
  size_t from = 0;
  for (size_t at; (at = text.find(pattern, from)) != std::string_view::npos;
       from = at + pattern.size()) {
    out.append(text.substr(from, at - from));
    out.append(with);
  }
  out.append(text.substr(from));
  return out;
}

}  // namespace

std::string Normalizer::apply(std::string_view text) const {
  std::string s(text);
  for (const NormalizerStep& step : steps_) {
    switch (step.kind) {
      case NormalizerStep::Kind::kNfc:
        s = nfc(s);
        break;
      case NormalizerStep::Kind::kPrepend:
        if (!s.empty()) s.insert(0, step.text);
        break;
      case NormalizerStep::Kind::kReplace:
        if (!step.pattern.empty()) s = replace_all(s, step.pattern, step.text);
        break;
    }
  }
  return s;
}

}  // namespace llm42
