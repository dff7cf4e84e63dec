// The template parser: tokens to a syntax tree, following jinja2's grammar and operator
// precedence (lowest first): `x if c else y`; or; and; not; comparisons, `in`, `not in`; + -;
// ~; * / // %; **; unary - +; then postfix `.attr`, `[key]`, `[a:b:c]`, `(args)`, `|filter`,
// `is test`. Statements: if/elif/else, for (with `if` filter and `else`), set (also `ns.x`,
// tuples, and block set), macro, filter blocks, with, break, continue, and transformers'
// `generation` tag.
#pragma once

#include <string>
#include <vector>

#include "chat/jinja/ast.h"
#include "chat/jinja/lexer.h"

namespace llm42::jinja {

// Throws llm42::Error naming `origin`, line and column (computed from `source`, the normalized
// text the tokens index) on a syntax error.
Body parse(const std::vector<Token>& tokens, const std::string& source, const std::string& origin);

}  // namespace llm42::jinja
