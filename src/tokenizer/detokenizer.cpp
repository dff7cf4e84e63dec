#include <utility>

#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace llm42 {

Detokenizer::Detokenizer(const Tokenizer& tok, bool skip_special, bool continues_text)
    : tok_(tok), skip_special_(skip_special), at_start_(!continues_text) {}

std::string Detokenizer::close_fallback_run() {
  if (utf8::is_valid(fallback_)) return std::exchange(fallback_, {});
  std::string out;
  for (size_t i = 0; i < fallback_.size(); ++i) out += utf8::kReplacementUtf8;
  fallback_.clear();
  return out;
}

// Emits pending_ up to the last complete character (all of it when `final`).
std::string Detokenizer::release(bool final) {
  const size_t keep = final ? 0 : utf8::incomplete_tail(pending_);
  std::string out = utf8::sanitize(std::string_view(pending_).substr(0, pending_.size() - keep));
  pending_.erase(0, pending_.size() - keep);
  if (at_start_ && !out.empty()) {
    at_start_ = false;
    if (tok_.strips_leading_space() && out[0] == ' ') out.erase(0, 1);
  }
  return out;
}

std::string Detokenizer::push(int32_t id) {
  if (id < 0 || id >= tok_.vocab_size() || (skip_special_ && tok_.is_special(id))) return {};
  if (const auto b = tok_.fallback_byte(id)) {
    fallback_ += static_cast<char>(*b);
    return {};
  }
  pending_ += close_fallback_run();
  pending_ += tok_.token_bytes(id, true);
  return release(false);
}

std::string Detokenizer::flush() {
  pending_ += close_fallback_run();
  return release(true);
}

}  // namespace llm42
