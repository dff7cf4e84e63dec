// UTF-8 as the tokenizers need it: decoding code points, the replacement of invalid input, and
// finding where an incomplete character at the end of a byte stream begins.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace llm42::utf8 {

inline constexpr char32_t kReplacement = 0xFFFD;
inline constexpr std::string_view kReplacementUtf8 = "\xEF\xBF\xBD";

// Appends the UTF-8 encoding of `cp` (which must be a Unicode scalar value).
void append(std::string& out, char32_t cp);

// The length of the well-formed character starting at s[i], or 0 when the bytes there are not
// one (invalid or truncated). Well-formed means Unicode's Table 3-7: no overlong forms, no
// surrogates, nothing above U+10FFFF.
size_t char_length(std::string_view s, size_t i);

// Decodes the character at s[i], which must be well-formed (see char_length); sets `len`.
char32_t decode(std::string_view s, size_t i, size_t& len);

bool is_valid(std::string_view s);

// `s` with each maximal invalid subsequence replaced by U+FFFD: the rule of the Unicode
// Standard's "best practice for U+FFFD substitution", which Python's
// bytes.decode('utf-8', 'replace') and Rust's String::from_utf8_lossy follow. A maximal
// subsequence is the longest prefix of a well-formed character found at that position (at least
// one byte), so "\xE2\x82" gives one U+FFFD and "\xED\xA0\x80" (a surrogate) gives three.
std::string sanitize(std::string_view s);

// The number of bytes at the end of `s` that are a proper prefix of a well-formed character (a
// character that the next bytes could still complete); 0 when `s` ends on a boundary.
size_t incomplete_tail(std::string_view s);

}  // namespace llm42::utf8
