#include "chat/jinja/unicode.h"

#include "chat/jinja/error.h"

namespace llm42::jinja::unicode {

namespace {

constexpr char32_t kReplacement = 0xFFFD;

// The length of the well-formed UTF-8 character at s[i] and its value; 0 when malformed.
size_t decode_one(std::string_view s, size_t i, char32_t& cp) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned char c = b(0);
  if (c < 0x80) {
    cp = c;
    return 1;
  }
  size_t n = 0;
  char32_t min = 0;
  if ((c & 0xE0) == 0xC0) {
    n = 2, cp = c & 0x1F, min = 0x80;
  } else if ((c & 0xF0) == 0xE0) {
    n = 3, cp = c & 0x0F, min = 0x800;
  } else if ((c & 0xF8) == 0xF0) {
    n = 4, cp = c & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((b(k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b(k) & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

bool is_cased(char32_t c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == 0xAA || c == 0xB5 ||
         c == 0xBA || (c >= 0xC0 && c <= 0xFF && c != 0xD7 && c != 0xF7);
}

bool is_upper(char32_t c) {
  return (c >= 'A' && c <= 'Z') || (c >= 0xC0 && c <= 0xDE && c != 0xD7);
}

char32_t to_lower(char32_t c) { return is_upper(c) ? c + 0x20 : c; }

// Appends the uppercase (or, with `title`, titlecase) form, which may be two code points.
void append_upper(std::u32string& out, char32_t c, bool title) {
  if ((c >= 'a' && c <= 'z') || (c >= 0xE0 && c <= 0xFE && c != 0xF7)) {
    out.push_back(c - 0x20);
  } else if (c == 0xDF) {
    out.append(title ? U"Ss" : U"SS");
  } else if (c == 0xFF) {
    out.push_back(0x178);
  } else if (c == 0xB5) {
    out.push_back(0x39C);
  } else {
    out.push_back(c);
  }
}

bool in_set(char32_t c, const std::u32string* set) {
  return set == nullptr ? is_space(c) : set->find(c) != std::u32string::npos;
}

}  // namespace

void append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

char32_t decode_at(std::string_view s, size_t i, size_t& len) {
  char32_t cp = 0;
  len = decode_one(s, i, cp);
  if (len != 0) return cp;
  len = 1;
  return kReplacement;
}

std::u32string decode(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    char32_t cp = 0;
    const size_t n = decode_one(s, i, cp);
    out.push_back(n == 0 ? kReplacement : cp);
    i += n == 0 ? 1 : n;
  }
  return out;
}

std::string encode(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) append(out, c);
  return out;
}

size_t length(std::string_view s) {
  size_t n = 0;
  for (size_t i = 0; i < s.size();) {
    char32_t cp = 0;
    const size_t len = decode_one(s, i, cp);
    i += len == 0 ? 1 : len;
    ++n;
  }
  return n;
}

bool is_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
         c == 0x202F || c == 0x205F || c == 0x3000;
}

std::string strip(std::string_view s, const std::string* chars, bool left, bool right) {
  const std::u32string text = decode(s);
  std::u32string set;
  if (chars != nullptr) set = decode(*chars);
  const std::u32string* setp = chars != nullptr ? &set : nullptr;
  size_t begin = 0;
  size_t end = text.size();
  if (left)
    while (begin < end && in_set(text[begin], setp)) ++begin;
  if (right)
    while (end > begin && in_set(text[end - 1], setp)) --end;
  return encode(std::u32string_view(text).substr(begin, end - begin));
}

std::vector<std::string> split(std::string_view s, const std::string* sep, long maxsplit) {
  std::vector<std::string> out;
  if (sep != nullptr) {
    if (sep->empty()) eval_fail("empty separator");
    size_t pos = 0;
    while (maxsplit < 0 || static_cast<long>(out.size()) < maxsplit) {
      const size_t hit = s.find(*sep, pos);
      if (hit == std::string_view::npos) break;
      out.emplace_back(s.substr(pos, hit - pos));
      pos = hit + sep->size();
    }
    out.emplace_back(s.substr(pos));
    return out;
  }
  const std::u32string text = decode(s);
  size_t i = 0;
  while (true) {
    while (i < text.size() && is_space(text[i])) ++i;
    if (i == text.size()) break;
    if (maxsplit >= 0 && static_cast<long>(out.size()) == maxsplit) {
      // The last piece keeps its inner whitespace but not the trailing run.
      size_t end = text.size();
      while (end > i && is_space(text[end - 1])) --end;
      out.push_back(encode(std::u32string_view(text).substr(i, end - i)));
      break;
    }
    const size_t start = i;
    while (i < text.size() && !is_space(text[i])) ++i;
    out.push_back(encode(std::u32string_view(text).substr(start, i - start)));
  }
  return out;
}

std::vector<std::string> rsplit(std::string_view s, const std::string* sep, long maxsplit) {
  std::vector<std::string> out;
  if (sep != nullptr) {
    if (sep->empty()) eval_fail("empty separator");
    size_t end = s.size();
    while (maxsplit < 0 || static_cast<long>(out.size()) < maxsplit) {
      if (end < sep->size()) break;
      const size_t hit = s.rfind(*sep, end - sep->size());
      if (hit == std::string_view::npos) break;
      out.emplace_back(s.substr(hit + sep->size(), end - hit - sep->size()));
      end = hit;
    }
    out.emplace_back(s.substr(0, end));
    return {out.rbegin(), out.rend()};
  }
  const std::u32string text = decode(s);
  size_t i = text.size();
  while (true) {
    while (i > 0 && is_space(text[i - 1])) --i;
    if (i == 0) break;
    if (maxsplit >= 0 && static_cast<long>(out.size()) == maxsplit) {
      size_t begin = 0;
      while (begin < i && is_space(text[begin])) ++begin;
      out.push_back(encode(std::u32string_view(text).substr(begin, i - begin)));
      break;
    }
    const size_t end = i;
    while (i > 0 && !is_space(text[i - 1])) --i;
    out.push_back(encode(std::u32string_view(text).substr(i, end - i)));
  }
  return {out.rbegin(), out.rend()};
}

std::string replace(std::string_view s, std::string_view old, std::string_view new_text,
                    long count) {
  std::string out;
  if (old.empty()) {
    const std::u32string text = decode(s);
    long done = 0;
    for (char32_t c : text) {
      if (count < 0 || done < count) {
        out.append(new_text);
        ++done;
      }
      append(out, c);
    }
    if (count < 0 || done < count) out.append(new_text);
    return out;
  }
  size_t pos = 0;
  long done = 0;
  while (count < 0 || done < count) {
    const size_t hit = s.find(old, pos);
    if (hit == std::string_view::npos) break;
    out.append(s.substr(pos, hit - pos));
    out.append(new_text);
    pos = hit + old.size();
    ++done;
  }
  out.append(s.substr(pos));
  return out;
}

std::vector<std::string> splitlines(std::string_view s, bool keepends) {
  const auto is_break = [](char32_t c) {
    return c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || (c >= 0x1C && c <= 0x1E) ||
           c == 0x85 || c == 0x2028 || c == 0x2029;
  };
  const std::u32string text = decode(s);
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if (!is_break(text[i])) continue;
    size_t end = i + 1;
    if (text[i] == '\r' && end < text.size() && text[end] == '\n') ++end;
    lines.push_back(encode(std::u32string_view(text).substr(start, (keepends ? end : i) - start)));
    start = end;
    i = end - 1;
  }
  if (start < text.size()) lines.push_back(encode(std::u32string_view(text).substr(start)));
  return lines;
}

std::string upper(std::string_view s) {
  std::u32string out;
  for (char32_t c : decode(s)) append_upper(out, c, false);
  return encode(out);
}

std::string lower(std::string_view s) {
  std::u32string out = decode(s);
  for (char32_t& c : out) c = to_lower(c);
  return encode(out);
}

std::string title(std::string_view s) {
  std::u32string out;
  bool previous_cased = false;
  for (char32_t c : decode(s)) {
    if (previous_cased) {
      out.push_back(to_lower(c));
    } else {
      append_upper(out, c, true);
    }
    previous_cased = is_cased(c);
  }
  return encode(out);
}

std::string capitalize(std::string_view s) {
  std::u32string out;
  bool first = true;
  for (char32_t c : decode(s)) {
    if (first) {
      append_upper(out, c, true);
      first = false;
    } else {
      out.push_back(to_lower(c));
    }
  }
  return encode(out);
}

long find(std::string_view s, std::string_view sub) {
  const size_t hit = s.find(sub);
  if (hit == std::string_view::npos) return -1;
  return static_cast<long>(length(s.substr(0, hit)));
}

}  // namespace llm42::jinja::unicode
