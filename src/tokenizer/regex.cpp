#include "tokenizer/regex.h"

#include <pcre2.h>

#include "util/error.h"

namespace llm42 {

struct Regex::Impl {
  pcre2_code* code = nullptr;
  bool jit = false;
};

namespace {

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  if (pcre2_get_error_message(code, buf, sizeof(buf)) < 0) return "error " + std::to_string(code);
  return reinterpret_cast<const char*>(buf);
}

// Match data sized for the pattern; freed when the search ends.
struct MatchData {
  explicit MatchData(const pcre2_code* code)
      : md(pcre2_match_data_create_from_pattern(code, nullptr)) {
    if (md == nullptr) throw std::bad_alloc();
  }
  ~MatchData() { pcre2_match_data_free(md); }
  MatchData(const MatchData&) = delete;
  MatchData& operator=(const MatchData&) = delete;
  pcre2_match_data* md;
};

struct ClassAdditions {
  const char* name;
  const char* ranges;
};

#include "tokenizer/unicode_classes_data.inc"

// The members of a Unicode class as Oniguruma (Unicode 16) sees it, written for the inside of a
// PCRE2 character class: PCRE2's own property plus what later Unicode versions added to it.
std::string class_members(std::string_view name) {
  std::string out = fmt::format("\\p{{{}}}", name);
  for (const ClassAdditions& a : kClassAdditions)
    if (name == a.name) out += a.ranges;
  return out;
}

// Oniguruma's \w: letters, marks, decimal and letter numbers, connector punctuation, and a few
// symbols it counts too (superscript digits, vulgar fractions, circled and squared letters).
std::string word_members() {
  return class_members("L") + class_members("M") + class_members("Nd") + class_members("Nl") +
         "\\p{Pc}\\x{B2}\\x{B3}\\x{B9}\\x{BC}-\\x{BE}\\x{24B6}-\\x{24E9}\\x{1F130}-\\x{1F149}"
         "\\x{1F150}-\\x{1F169}\\x{1F170}-\\x{1F189}";
}

bool has_additions(std::string_view name) {
  for (const ClassAdditions& a : kClassAdditions)
    if (name == a.name) return true;
  return false;
}

// Hugging Face runs these patterns with Oniguruma, whose tables are Unicode 16 (PCRE2 10.42's are
// Unicode 14), whose \s is Unicode's White_Space (PCRE2's also takes U+180E) and whose \w and \d
// are wider than PCRE2's. So those escapes and the general-category properties are spelled out.
std::string to_pcre2_syntax(std::string_view p, const std::string& what) {
  std::string out;
  bool in_class = false;
  // Members of a class, placed inside the enclosing class or in a class of their own.
  const auto put = [&](const std::string& members, bool negated, char escape) {
    if (!in_class)
      out += fmt::format("[{}{}]", negated ? "^" : "", members);
    else if (!negated)
      out += members;
    else
      fail("{}: \\{} inside a character class is not supported", what, escape);
  };
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char e = p[++i];
      if (e == 'Q') {  // \Q...\E is literal: copied as it is
        const size_t end = p.find("\\E", i);
        const size_t stop = end == std::string_view::npos ? p.size() : end + 2;
        out.append(p.substr(i - 1, stop - (i - 1)));
        i = stop - 1;
      } else if (e == 's' || e == 'S') {
        out += e == 's' ? "\\p{White_Space}" : "\\P{White_Space}";
      } else if (e == 'w' || e == 'W') {
        put(word_members(), e == 'W', e);
      } else if (e == 'd' || e == 'D') {
        put(class_members("Nd"), e == 'D', e);
      } else if ((e == 'p' || e == 'P') && i + 1 < p.size()) {
        // \pL or \p{Name}
        std::string_view name = p.substr(i + 1, 1);
        size_t len = 1;
        if (p[i + 1] == '{') {
          const size_t close = p.find('}', i + 1);
          if (close == std::string_view::npos) fail("{}: unclosed \\{}{{ in /{}/", what, e, p);
          name = p.substr(i + 2, close - i - 2);
          len = close - i;
        }
        if (has_additions(name)) {
          put(class_members(name), e == 'P', e);
        } else {
          out += '\\';
          out += e;
          out.append(p.substr(i + 1, len));
        }
        i += len;
      } else {
        out += c;
        out += e;
      }
      continue;
    }
    if (c == '[' && !in_class) {
      in_class = true;
      out += c;
      // A ']' right after '[' or '[^' is a literal member, not the end of the class.
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];
      continue;
    }
    if (c == ']' && in_class) in_class = false;
    out += c;
  }
  return out;
}

}  // namespace

Regex::Regex(std::string_view pattern, const std::string& what, bool literal)
    : impl_(std::make_unique<Impl>()), pattern_(pattern), what_(what) {
  const std::string translated = literal ? std::string(pattern) : to_pcre2_syntax(pattern, what);
  int err = 0;
  PCRE2_SIZE offset = 0;
  impl_->code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                    PCRE2_UTF | PCRE2_UCP | (literal ? PCRE2_LITERAL : 0u), &err, &offset, nullptr);
  if (impl_->code == nullptr)
    fail("{}: regex /{}/ does not compile with PCRE2 (as /{}/) at offset {}: {}", what, pattern,
         translated, offset, pcre2_message(err));
  // The interpreter gives the same matches, only slower, so a failed JIT is no error.
  impl_->jit = pcre2_jit_compile(impl_->code, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() {
  if (impl_ != nullptr) pcre2_code_free(impl_->code);
}

bool Regex::search(std::string_view text, size_t start, size_t& begin, size_t& end) const {
  MatchData data(impl_->code);
  const auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  const int rc =
      impl_->jit ? pcre2_jit_match(impl_->code, subject, text.size(), start, 0, data.md, nullptr)
                 : pcre2_match(impl_->code, subject, text.size(), start, PCRE2_NO_UTF_CHECK,
                               data.md, nullptr);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0)
    fail("{}: regex /{}/ failed on a {}-byte text: {}", what_, pattern_, text.size(),
         pcre2_message(rc));
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data.md);
  begin = ov[0];
  end = ov[1];
  return true;
}

std::vector<std::pair<size_t, size_t>> Regex::find_all(std::string_view text) const {
  std::vector<std::pair<size_t, size_t>> out;
  MatchData data(impl_->code);
  const auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t start = 0;
  while (start <= text.size()) {
    const int rc =
        impl_->jit ? pcre2_jit_match(impl_->code, subject, text.size(), start, 0, data.md, nullptr)
                   : pcre2_match(impl_->code, subject, text.size(), start, PCRE2_NO_UTF_CHECK,
                                 data.md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0)
      fail("{}: regex /{}/ failed on a {}-byte text: {}", what_, pattern_, text.size(),
           pcre2_message(rc));
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data.md);
    out.emplace_back(ov[0], ov[1]);
    if (ov[1] > ov[0]) {
      start = ov[1];
    } else {
      // After an empty match, step over one character, as Oniguruma's and Rust's iterators do.
      if (ov[1] >= text.size()) break;
      start = ov[1] + 1;
      while (start < text.size() && (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80) ++start;
    }
  }
  return out;
}

}  // namespace llm42
