// The template lexer: splits a template into text and the tokens of its `{{ }}` and `{% %}` tags,
// dropping `{# #}` comments and passing `{% raw %}` blocks through as text. It applies whitespace
// control exactly as jinja2's lexer does with transformers' settings (trim_blocks and
// lstrip_blocks on, keep_trailing_newline off):
//   - `\r\n` and `\r` become `\n`, and one newline at the very end of the template is dropped;
//   - `{%-`, `{{-`, `{#-` strip all whitespace before the tag; `-%}`, `-}}`, `-#}` all after it;
//   - trim_blocks: the first newline after `%}` or `#}` is removed (`+%}` keeps it);
//   - lstrip_blocks: spaces and tabs from the start of a line up to `{%` or `{#` are removed when
//     nothing else precedes the tag on its line (`{%+` keeps them); never before `{{`.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace llm42::jinja {

struct Token {
  enum class Type {
    kText,           // template text between tags
    kVariableBegin,  // {{
    kVariableEnd,    // }}
    kBlockBegin,     // {%
    kBlockEnd,       // %}
    kName,
    kString,  // value: the decoded literal
    kInteger,
    kFloat,
    kOperator,  // value: the operator, e.g. "==", "(", "|"
    kEnd,       // end of the template
  };
  Type type;
  std::string value;
  int64_t int_value = 0;
  double float_value = 0.0;
  uint32_t offset = 0;  // into the normalized source, for line and column
};

// The source as the lexer sees it (newlines normalized, one trailing newline dropped); token
// offsets index into it.
std::string normalize_source(std::string_view source);

// Tokenizes a normalized source. Throws llm42::Error naming `origin`, line and column on a
// lexical error (unterminated comment, string or tag, an unexpected character, bad escape).
std::vector<Token> tokenize(const std::string& source, const std::string& origin);

}  // namespace llm42::jinja
