#include "chat/jinja/lexer.h"

#include <array>
#include <cctype>
#include <charconv>

#include "chat/jinja/error.h"
#include "chat/jinja/unicode.h"

namespace llm42::jinja {

namespace {

enum class TagKind { kVariable, kBlock, kComment };

// Python's `\s` (what jinja2's whitespace_re and str.rstrip() match) at s[i]: its byte length,
// or 0 when s[i] is not whitespace.
size_t whitespace_at(std::string_view s, size_t i) {
  size_t len = 0;
  return unicode::is_space(unicode::decode_at(s, i, len)) ? len : 0;
}

size_t skip_whitespace(std::string_view s, size_t i) {
  while (i < s.size()) {
    const size_t n = whitespace_at(s, i);
    if (n == 0) break;
    i += n;
  }
  return i;
}

// Python's str.rstrip() of text.
std::string_view rstrip(std::string_view text) {
  size_t keep = 0;
  for (size_t i = 0; i < text.size();) {
    size_t len = 0;
    const bool space = unicode::is_space(unicode::decode_at(text, i, len));
    i += len;
    if (!space) keep = i;
  }
  return text.substr(0, keep);
}

bool all_whitespace(std::string_view text) { return skip_whitespace(text, 0) == text.size(); }

bool is_name_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool is_name_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

class Lexer {
 public:
  Lexer(const std::string& src, const std::string& origin) : src_(src), origin_(origin) {}

  std::vector<Token> run() {
    size_t pos = 0;
    while (pos < src_.size()) pos = lex_text(pos);
    push(Token::Type::kEnd, "", static_cast<uint32_t>(src_.size()));
    return std::move(tokens_);
  }

 private:
  [[noreturn]] void error(size_t offset, const std::string& message) {
    fail_at(origin_, src_, static_cast<uint32_t>(offset), message);
  }

  void push(Token::Type type, std::string value, size_t offset) {
    Token t;
    t.type = type;
    t.value = std::move(value);
    t.offset = static_cast<uint32_t>(offset);
    tokens_.push_back(std::move(t));
  }

  // Text up to the next tag, then the tag; returns the position after it.
  size_t lex_text(size_t pos) {
    size_t start = pos;
    TagKind kind = TagKind::kVariable;
    while (true) {
      start = src_.find('{', start);
      if (start == std::string::npos || start + 1 >= src_.size()) {
        emit_text(src_.substr(pos), pos);
        return src_.size();
      }
      const char c = src_[start + 1];
      if (c == '{' || c == '%' || c == '#') {
        kind = c == '{' ? TagKind::kVariable : (c == '%' ? TagKind::kBlock : TagKind::kComment);
        break;
      }
      ++start;
    }
    size_t after = start + 2;
    char sign = 0;
    if (after < src_.size() && (src_[after] == '-' || src_[after] == '+')) sign = src_[after++];

    std::string_view text = std::string_view(src_).substr(pos, start - pos);
    text = strip_before_tag(text, sign, kind != TagKind::kVariable);
    emit_text(std::string(text), pos);
    line_starting_ = false;

    if (kind == TagKind::kBlock) {
      const size_t raw_end = match_raw_begin(after);
      if (raw_end != 0) return lex_raw(raw_end);
    }
    if (kind == TagKind::kComment) return lex_comment(start, after);
    push(kind == TagKind::kVariable ? Token::Type::kVariableBegin : Token::Type::kBlockBegin, "",
         start);
    return lex_tag(after, kind);
  }

  // The whitespace control that applies to the text before a tag (jinja2's OptionalLStrip).
  std::string_view strip_before_tag(std::string_view text, char sign, bool lstrip_applies) {
    if (sign == '-') return rstrip(text);
    if (sign == '+' || !lstrip_applies) return text;
    const size_t nl = text.rfind('\n');
    const size_t line_begin = nl == std::string_view::npos ? 0 : nl + 1;
    if ((line_begin > 0 || line_starting_) && all_whitespace(text.substr(line_begin)))
      return text.substr(0, line_begin);
    return text;
  }

  void emit_text(std::string text, size_t offset) {
    if (!text.empty()) push(Token::Type::kText, std::move(text), offset);
  }

  // The end of `{% raw %}` (or its `-%}` form) when the block tag starting before `pos` is one,
  // else 0.
  size_t match_raw_begin(size_t pos) {
    size_t i = skip_whitespace(src_, pos);
    if (src_.compare(i, 3, "raw") != 0) return 0;
    i = skip_whitespace(src_, i + 3);
    if (src_.compare(i, 3, "-%}") == 0) return skip_whitespace(src_, i + 3);
    if (src_.compare(i, 2, "%}") == 0) return i + 2;
    return 0;
  }

  size_t lex_raw(size_t pos) {
    line_starting_ = pos > 0 && src_[pos - 1] == '\n';
    size_t search = pos;
    while (true) {
      const size_t open = src_.find("{%", search);
      if (open == std::string::npos) error(pos, "missing end of raw directive");
      size_t i = open + 2;
      char sign = 0;
      if (i < src_.size() && (src_[i] == '-' || src_[i] == '+')) sign = src_[i++];
      i = skip_whitespace(src_, i);
      if (src_.compare(i, 6, "endraw") == 0) {
        i = skip_whitespace(src_, i + 6);
        const size_t end = match_block_end(i);
        if (end != 0) {
          std::string_view text = std::string_view(src_).substr(pos, open - pos);
          emit_text(std::string(strip_before_tag(text, sign, true)), pos);
          line_starting_ = src_[end - 1] == '\n';
          return end;
        }
      }
      search = open + 2;
    }
  }

  size_t lex_comment(size_t start, size_t pos) {
    for (size_t i = pos; i + 1 < src_.size(); ++i) {
      size_t end = 0;
      if (src_[i] == '+' && src_.compare(i + 1, 2, "#}") == 0) {
        end = i + 3;
      } else if (src_[i] == '-' && src_.compare(i + 1, 2, "#}") == 0) {
        end = skip_whitespace(src_, i + 3);
      } else if (src_[i] == '#' && src_[i + 1] == '}') {
        end = i + 2;
        if (end < src_.size() && src_[end] == '\n') ++end;
      }
      if (end != 0) {
        line_starting_ = src_[end - 1] == '\n';
        return end;
      }
    }
    error(start, "missing end of comment tag");
  }

  // The end of a block-closing `%}` at `i` (with `+`, `-` and trim_blocks applied), else 0.
  size_t match_block_end(size_t i) {
    if (src_.compare(i, 3, "+%}") == 0) return i + 3;
    if (src_.compare(i, 3, "-%}") == 0) return skip_whitespace(src_, i + 3);
    if (src_.compare(i, 2, "%}") == 0) {
      i += 2;
      if (i < src_.size() && src_[i] == '\n') ++i;
      return i;
    }
    return 0;
  }

  size_t match_variable_end(size_t i) {
    if (src_.compare(i, 3, "-}}") == 0) return skip_whitespace(src_, i + 3);
    if (src_.compare(i, 2, "}}") == 0) return i + 2;
    return 0;
  }

  size_t lex_tag(size_t pos, TagKind kind) {
    std::vector<char> balance;  // the closing brackets expected, innermost last
    while (true) {
      if (pos >= src_.size())
        error(pos, kind == TagKind::kBlock ? "unexpected end of template, expected '%}'"
                                           : "unexpected end of template, expected '}}'");
      if (balance.empty()) {
        const size_t end =
            kind == TagKind::kBlock ? match_block_end(pos) : match_variable_end(pos);
        if (end != 0) {
          push(kind == TagKind::kBlock ? Token::Type::kBlockEnd : Token::Type::kVariableEnd, "",
               pos);
          line_starting_ = src_[end - 1] == '\n';
          return end;
        }
      }
      const size_t ws = skip_whitespace(src_, pos);
      if (ws != pos) {
        pos = ws;
        continue;
      }
      pos = lex_token(pos, balance);
    }
  }

  size_t lex_token(size_t pos, std::vector<char>& balance) {
    const char c = src_[pos];
    if (is_digit(c)) {
      const size_t end = lex_float(pos);
      if (end != 0) return end;
      return lex_integer(pos);
    }
    if (is_name_start(c)) {
      size_t end = pos + 1;
      while (end < src_.size() && is_name_char(src_[end])) ++end;
      push(Token::Type::kName, src_.substr(pos, end - pos), pos);
      return end;
    }
    if (c == '\'' || c == '"') return lex_string(pos);
    return lex_operator(pos, balance);
  }

  // Digits with single underscores between them: "1_000". Returns the end, or `pos` if none.
  size_t digits(size_t pos) {
    if (pos >= src_.size() || !is_digit(src_[pos])) return pos;
    size_t i = pos + 1;
    while (i < src_.size()) {
      if (is_digit(src_[i])) {
        ++i;
      } else if (src_[i] == '_' && i + 1 < src_.size() && is_digit(src_[i + 1])) {
        i += 2;
      } else {
        break;
      }
    }
    return i;
  }

  static std::string without_underscores(std::string_view s) {
    std::string out;
    for (char c : s)
      if (c != '_') out.push_back(c);
    return out;
  }

  // A float literal (jinja2's float_re: a fraction, an exponent, or both) or 0.
  size_t lex_float(size_t pos) {
    if (pos > 0 && src_[pos - 1] == '.') return 0;
    size_t i = digits(pos);
    bool fraction = false;
    if (i < src_.size() && src_[i] == '.') {
      const size_t f = digits(i + 1);
      if (f != i + 1) {
        fraction = true;
        i = f;
      }
    }
    bool exponent = false;
    if (i < src_.size() && (src_[i] == 'e' || src_[i] == 'E')) {
      size_t e = i + 1;
      if (e < src_.size() && (src_[e] == '+' || src_[e] == '-')) ++e;
      const size_t end = digits(e);
      if (end != e) {
        exponent = true;
        i = end;
      }
    }
    if (!fraction && !exponent) return 0;
    Token t;
    t.type = Token::Type::kFloat;
    t.value = src_.substr(pos, i - pos);
    t.float_value = std::strtod(without_underscores(t.value).c_str(), nullptr);
    t.offset = static_cast<uint32_t>(pos);
    tokens_.push_back(std::move(t));
    return i;
  }

  size_t lex_integer(size_t pos) {
    size_t i = pos;
    int base = 10;
    if (src_[pos] == '0' && pos + 1 < src_.size()) {
      const char p = static_cast<char>(std::tolower(static_cast<unsigned char>(src_[pos + 1])));
      base = p == 'b' ? 2 : (p == 'o' ? 8 : (p == 'x' ? 16 : 10));
    }
    std::string text;
    if (base != 10) {
      i = pos + 2;
      const auto ok = [&](char ch) {
        const int d = std::isdigit(static_cast<unsigned char>(ch))
                          ? ch - '0'
                          : (std::isxdigit(static_cast<unsigned char>(ch))
                                 ? std::tolower(static_cast<unsigned char>(ch)) - 'a' + 10
                                 : 99);
        return d < base;
      };
      while (i < src_.size() &&
             (ok(src_[i]) || (src_[i] == '_' && i + 1 < src_.size() && ok(src_[i + 1]))))
        ++i;
      text = without_underscores(src_.substr(pos + 2, i - pos - 2));
      if (text.empty()) {
        base = 10;
        i = pos;
      }
    }
    if (base == 10) {
      if (src_[pos] == '0') {
        // jinja2 reads a leading zero only as "0" (or "0_0..."): "01" is 0 followed by 1.
        i = pos + 1;
        while (i + 1 < src_.size() && (src_[i] == '0' || (src_[i] == '_' && src_[i + 1] == '0')))
          i += src_[i] == '_' ? 2 : 1;
      } else {
        i = digits(pos);
      }
      text = without_underscores(src_.substr(pos, i - pos));
    }
    Token t;
    t.type = Token::Type::kInteger;
    t.value = src_.substr(pos, i - pos);
    const auto res = std::from_chars(text.data(), text.data() + text.size(), t.int_value, base);
    if (res.ec != std::errc())
      error(pos, "integer literal " + t.value + " does not fit in 64 bits");
    t.offset = static_cast<uint32_t>(pos);
    tokens_.push_back(std::move(t));
    return i;
  }

  size_t lex_string(size_t pos) {
    const char quote = src_[pos];
    size_t i = pos + 1;
    while (i < src_.size() && src_[i] != quote) i += src_[i] == '\\' ? 2 : 1;
    if (i >= src_.size()) error(pos, "unterminated string literal");
    push(Token::Type::kString, decode_escapes(src_.substr(pos + 1, i - pos - 1), pos), pos);
    return i + 1;
  }

  // Python's "unicode-escape" decoding, which jinja2 applies to string literals.
  std::string decode_escapes(std::string_view s, size_t offset) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] != '\\' || i + 1 >= s.size()) {
        out.push_back(s[i]);
        continue;
      }
      const char e = s[++i];
      switch (e) {
        case '\n':
          break;  // a line continuation
        case '\\':
        case '\'':
        case '"':
          out.push_back(e);
          break;
        case 'a':
          out.push_back('\a');
          break;
        case 'b':
          out.push_back('\b');
          break;
        case 'f':
          out.push_back('\f');
          break;
        case 'n':
          out.push_back('\n');
          break;
        case 'r':
          out.push_back('\r');
          break;
        case 't':
          out.push_back('\t');
          break;
        case 'v':
          out.push_back('\v');
          break;
        case 'x':
        case 'u':
        case 'U': {
          const size_t n = e == 'x' ? 2 : (e == 'u' ? 4 : 8);
          uint32_t cp = 0;
          const auto res = std::from_chars(s.data() + i + 1, s.data() + std::min(s.size(), i + 1 + n),
                                           cp, 16);
          if (res.ec != std::errc() || res.ptr != s.data() + i + 1 + n || i + 1 + n > s.size())
            error(offset, fmt::format("truncated \\{} escape in string literal", e));
          if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            error(offset, "illegal Unicode character in string literal");
          unicode::append(out, cp);
          i += n;
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            uint32_t cp = 0;
            size_t k = 0;
            while (k < 3 && i + k < s.size() && s[i + k] >= '0' && s[i + k] <= '7')
              cp = cp * 8 + static_cast<uint32_t>(s[i + k++] - '0');
            unicode::append(out, cp);
            i += k - 1;
          } else {
            // Unknown escapes keep their backslash, as in Python.
            out.push_back('\\');
            out.push_back(e);
          }
      }
    }
    return out;
  }

  size_t lex_operator(size_t pos, std::vector<char>& balance) {
    static constexpr std::array<std::string_view, 6> kTwo = {"//", "**", "==", "!=", ">=", "<="};
    for (std::string_view op : kTwo) {
      if (src_.compare(pos, 2, op) == 0) {
        push(Token::Type::kOperator, std::string(op), pos);
        return pos + 2;
      }
    }
    const char c = src_[pos];
    static constexpr std::string_view kOne = "+-/*%~[](){}><=.:|,;";
    if (kOne.find(c) == std::string_view::npos)
      error(pos, fmt::format("unexpected character '{}'",
                             unicode::encode(unicode::decode(src_.substr(pos, 4)).substr(0, 1))));
    if (c == '(') balance.push_back(')');
    if (c == '[') balance.push_back(']');
    if (c == '{') balance.push_back('}');
    if (c == ')' || c == ']' || c == '}') {
      if (balance.empty()) error(pos, fmt::format("unexpected '{}'", c));
      if (balance.back() != c)
        error(pos, fmt::format("unexpected '{}', expected '{}'", c, balance.back()));
      balance.pop_back();
    }
    push(Token::Type::kOperator, std::string(1, c), pos);
    return pos + 1;
  }

  const std::string& src_;
  const std::string& origin_;
  std::vector<Token> tokens_;
  bool line_starting_ = true;
};

}  // namespace

std::string normalize_source(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out.push_back(source[i]);
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

std::vector<Token> tokenize(const std::string& source, const std::string& origin) {
  return Lexer(source, origin).run();
}

}  // namespace llm42::jinja
