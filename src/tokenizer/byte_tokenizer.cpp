// make_byte_tokenizer: one token per byte, for dummy models that come without a tokenizer. Byte
// b is id b + 3; ids 0..2 and 259.. are control tokens (BOS and EOS among them), written
// "<s>", "</s>" and "<ctrl_N>" and never produced from text.
#include <algorithm>

#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"
#include "util/error.h"

namespace llm42 {
namespace {

constexpr int kFirstByte = 3;
constexpr int kByteTokens = 256;

class ByteTokenizer final : public Tokenizer {
 public:
  ByteTokenizer(int vocab_size, int bos_id, int eos_id) : vocab_size_(vocab_size) {
    bos_id_ = bos_id;
    eos_ids_ = {eos_id};
  }

  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special,
                              size_t max_tokens) const override {
    // One id a byte: only the bytes that can matter are sanitized and encoded.
    const size_t keep =
        max_tokens == SIZE_MAX ? text.size() : std::min(text.size(), max_tokens + 1);
    const std::string clean = utf8::sanitize(text.substr(0, keep));
    std::vector<int32_t> ids;
    ids.reserve(clean.size() + 1);
    if (add_special) ids.push_back(bos_id_);
    for (char c : clean) {
      if (ids.size() > max_tokens) break;
      ids.push_back(kFirstByte + static_cast<uint8_t>(c));
    }
    return ids;
  }

  std::string token_bytes(int32_t id, bool include_special) const override {
    if (id < 0 || id >= vocab_size_) return {};
    if (!is_special(id)) return std::string(1, static_cast<char>(id - kFirstByte));
    return include_special ? control_name(id) : std::string();
  }

  int vocab_size() const override { return vocab_size_; }
  std::string_view kind() const override { return "byte"; }

  std::optional<int32_t> token_id(std::string_view text) const override {
    if (text.size() == 1) return kFirstByte + static_cast<uint8_t>(text[0]);
    if (text == "<s>") return bos_id_;
    if (text == "</s>") return eos_ids_[0];
    if (text.starts_with("<ctrl_") && text.ends_with(">")) {
      const std::string digits(text.substr(6, text.size() - 7));
      if (digits.empty() || digits.size() > 9 ||
          digits.find_first_not_of("0123456789") != std::string::npos)
        return std::nullopt;
      const int32_t id = std::stoi(digits);
      if (is_special(id) && control_name(id) == text) return id;
    }
    return std::nullopt;
  }

  bool is_special(int32_t id) const override {
    return id >= 0 && id < vocab_size_ && (id < kFirstByte || id >= kFirstByte + kByteTokens);
  }

 private:
  std::string control_name(int32_t id) const {
    if (id == bos_id_) return "<s>";
    if (id == eos_ids_[0]) return "</s>";
    return "<ctrl_" + std::to_string(id) + ">";
  }

  int vocab_size_;
};

}  // namespace

std::unique_ptr<Tokenizer> make_byte_tokenizer(int vocab_size, int bos_id, int eos_id) {
  if (vocab_size < kFirstByte + kByteTokens)
    fail("byte tokenizer: vocab_size {} is below {} (3 control ids and 256 bytes)", vocab_size,
         kFirstByte + kByteTokens);
  for (const auto& [name, id] : {std::pair("BOS", bos_id), {"EOS", eos_id}}) {
    if (id < 0 || id >= vocab_size)
      fail("byte tokenizer: {} id {} is outside the vocabulary of {}", name, id, vocab_size);
    if (id >= kFirstByte && id < kFirstByte + kByteTokens)
      fail("byte tokenizer: {} id {} is a byte token (bytes are ids 3..258)", name, id);
  }
  return std::make_unique<ByteTokenizer>(vocab_size, bos_id, eos_id);
}

}  // namespace llm42
