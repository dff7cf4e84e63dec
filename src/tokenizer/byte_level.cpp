#include "tokenizer/byte_level.h"

#include <array>

#include "tokenizer/utf8.h"

namespace llm42::byte_level {
namespace {

struct Alphabet {
  std::array<char32_t, 256> to_char{};
  std::array<std::string, 256> spelling;
  std::array<int16_t, 512> to_byte{};  // indexed by code point (all are below U+0200); -1: none

  Alphabet() {
    to_byte.fill(-1);
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      to_char[b] = printable ? static_cast<char32_t>(b) : next++;
      to_byte[to_char[b]] = static_cast<int16_t>(b);
      utf8::append(spelling[b], to_char[b]);
    }
  }
};

const Alphabet& alphabet() {
  static const Alphabet a;
  return a;
}

}  // namespace

void encode(std::string_view bytes, std::string& out) {
  const Alphabet& a = alphabet();
  for (char c : bytes) out += a.spelling[static_cast<uint8_t>(c)];
}

bool decode(std::string_view text, std::string& out) {
  const Alphabet& a = alphabet();
  const size_t start = out.size();
  for (size_t i = 0; i < text.size();) {
    const size_t len = utf8::char_length(text, i);
    size_t n = 0;
    const char32_t cp = len == 0 ? 0xFFFFFFFF : utf8::decode(text, i, n);
    if (cp >= a.to_byte.size() || a.to_byte[cp] < 0) {
      out.resize(start);
      return false;
    }
    out += static_cast<char>(a.to_byte[cp]);
    i += len;
  }
  return true;
}

}  // namespace llm42::byte_level
