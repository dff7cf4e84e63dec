#include "tokenizer/utf8.h"

namespace llm42::utf8 {
namespace {

struct Scan {
  size_t need = 0;     // the length the lead byte announces; 0 when it is no lead byte
  size_t matched = 0;  // bytes from i that fit a well-formed character (<= need)
};

// Matches s[i...] against Table 3-7 of the Unicode Standard. The second byte's range depends on
// the lead byte (this is what rules out overlong forms, surrogates and code points past
// U+10FFFF); every later byte is 80..BF.
Scan scan(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<uint8_t>(s[i + k]); };
  const uint8_t lead = b(0);
  Scan r;
  uint8_t lo = 0x80, hi = 0xBF;
  if (lead < 0x80) return {1, 1};
  if (lead >= 0xC2 && lead <= 0xDF) {
    r.need = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    r.need = 3;
    if (lead == 0xE0) lo = 0xA0;
    if (lead == 0xED) hi = 0x9F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    r.need = 4;
    if (lead == 0xF0) lo = 0x90;
    if (lead == 0xF4) hi = 0x8F;
  } else {
    return r;
  }
  r.matched = 1;
  while (r.matched < r.need && i + r.matched < s.size()) {
    const uint8_t c = b(r.matched);
    const bool ok = r.matched == 1 ? (c >= lo && c <= hi) : (c >= 0x80 && c <= 0xBF);
    if (!ok) break;
    ++r.matched;
  }
  return r;
}

}  // namespace

void append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

size_t char_length(std::string_view s, size_t i) {
  const Scan r = scan(s, i);
  return r.need != 0 && r.matched == r.need ? r.need : 0;
}

char32_t decode(std::string_view s, size_t i, size_t& len) {
  const auto b = [&](size_t k) { return static_cast<char32_t>(static_cast<uint8_t>(s[i + k])); };
  const char32_t lead = b(0);
  if (lead < 0x80) {
    len = 1;
    return lead;
  }
  if (lead < 0xE0) {
    len = 2;
    return ((lead & 0x1F) << 6) | (b(1) & 0x3F);
  }
  if (lead < 0xF0) {
    len = 3;
    return ((lead & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
  }
  len = 4;
  return ((lead & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
}

bool is_valid(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    if (static_cast<uint8_t>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const size_t n = char_length(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::string sanitize(std::string_view s) {
  if (is_valid(s)) return std::string(s);
  std::string out;
  out.reserve(s.size() + 16);
  for (size_t i = 0; i < s.size();) {
    const Scan r = scan(s, i);
    if (r.need != 0 && r.matched == r.need) {
      out.append(s.substr(i, r.need));
      i += r.need;
    } else {
      out.append(kReplacementUtf8);
      i += r.matched > 0 ? r.matched : 1;
    }
  }
  return out;
}

size_t incomplete_tail(std::string_view s) {
  // A character is at most 4 bytes, so only the last 3 can start an incomplete one.
  const size_t from = s.size() > 3 ? s.size() - 3 : 0;
  for (size_t i = from; i < s.size(); ++i) {
    const Scan r = scan(s, i);
    if (r.need > 1 && i + r.matched == s.size() && r.matched < r.need) return s.size() - i;
  }
  return 0;
}

}  // namespace llm42::utf8
