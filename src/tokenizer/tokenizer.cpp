#include "tokenizer/tokenizer.h"

#include "tokenizer/utf8.h"

namespace llm42 {

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::string out, run;  // run: the bytes of the current run of byte-fallback tokens
  const auto end_run = [&] {
    if (utf8::is_valid(run)) {
      out += run;
    } else {
      for (size_t i = 0; i < run.size(); ++i) out += utf8::kReplacementUtf8;
    }
    run.clear();
  };
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size() || (skip_special && is_special(id))) continue;
    if (const auto b = fallback_byte(id)) {
      run += static_cast<char>(*b);
      continue;
    }
    end_run();
    out += token_bytes(id, true);
  }
  end_run();
  out = utf8::sanitize(out);
  if (strips_leading_space() && !out.empty() && out[0] == ' ') out.erase(0, 1);
  return out;
}

}  // namespace llm42
