// Python's `str` operations on UTF-8 text, for the template interpreter. Python strings are
// sequences of code points, so lengths, indices and slices here count code points, not bytes, and
// "whitespace" is Python's `str.isspace()` set (which `strip()` and `split()` use).
//
// Case mapping (upper, lower, title, capitalize) covers ASCII and Latin-1; other letters are left
// unchanged, where Python would map them too. The templates in scope only change the case of their
// own ASCII literals.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace llm42::jinja::unicode {

// Decodes UTF-8; an invalid byte decodes to U+FFFD (templates and JSON input are valid UTF-8, so
// this only keeps malformed text from crashing the interpreter).
std::u32string decode(std::string_view s);
std::string encode(std::u32string_view s);
void append(std::string& out, char32_t cp);

// The code point at s[i] and its byte length (U+FFFD and 1 for an invalid byte).
char32_t decode_at(std::string_view s, size_t i, size_t& len);

// The number of code points.
size_t length(std::string_view s);

bool is_space(char32_t c);

// str.strip / lstrip / rstrip: `chars` null strips whitespace, otherwise any of its code points.
std::string strip(std::string_view s, const std::string* chars, bool left, bool right);

// str.split / rsplit: `sep` null splits on runs of whitespace and drops empty pieces; `maxsplit`
// negative means no limit. Throws EvalError on an empty separator.
std::vector<std::string> split(std::string_view s, const std::string* sep, long maxsplit);
std::vector<std::string> rsplit(std::string_view s, const std::string* sep, long maxsplit);

// str.replace; `count` negative replaces all. An empty `old` inserts `new_text` between code
// points, as Python does.
std::string replace(std::string_view s, std::string_view old, std::string_view new_text,
                    long count);

// str.splitlines: lines split at \n, \r\n, \r and Python's other line boundaries (\v, \f,
// \x1c-\x1e, \x85, U+2028, U+2029), with the boundaries kept when `keepends` is set.
std::vector<std::string> splitlines(std::string_view s, bool keepends);

std::string upper(std::string_view s);
std::string lower(std::string_view s);
// str.title: a cased letter after a cased letter is lowercased, any other is uppercased.
std::string title(std::string_view s);
// str.capitalize: first code point uppercased, the rest lowercased.
std::string capitalize(std::string_view s);

// str.find: the code-point index of the first occurrence at or after `start`, or -1.
long find(std::string_view s, std::string_view sub);

}  // namespace llm42::jinja::unicode
