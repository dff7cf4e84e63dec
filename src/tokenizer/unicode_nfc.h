// Unicode Normalization Form C (canonical decomposition, then canonical composition), as the
// NFC normalizer of Hugging Face tokenizers applies it (Qwen2, Qwen3). Its tables are those of
// Unicode 9.0, the version Hugging Face's normalization crate carries, so that characters added
// later are left alone exactly as it leaves them.
#pragma once

#include <string>
#include <string_view>

namespace llm42 {

// `text` must be valid UTF-8. Text made only of code points below U+0300 is returned unchanged
// without decoding, which is the common case.
std::string nfc(std::string_view text);

}  // namespace llm42
