#include "chat/jinja/parser.h"

#include <fmt/format.h>

#include <algorithm>
#include <initializer_list>

#include "chat/jinja/builtins.h"
#include "chat/jinja/error.h"

namespace llm42::jinja {

namespace {

// Deeper nesting than this (of blocks, of an expression's tree, or of the parser's recursion) is
// refused rather than risking the stack: a left-deep chain such as `1 + 1 + ...` or `a.b.c...`
// is parsed by a loop but is as deep as it is long, and everything after the parser recurses
// over the tree.
constexpr int kMaxNesting = 200;

// The depth of `e` from the depths its direct children already carry.
int subtree_depth(const Expr& e) {
  int d = 0;
  const auto take = [&d](const ExprPtr& c) {
    if (c) d = std::max(d, c->depth);
  };
  const auto take_args = [&take](const Arguments& a) {
    for (const ExprPtr& p : a.positional) take(p);
    for (const auto& [_, v] : a.keyword) take(v);
    take(a.star);
    take(a.star_star);
  };
  switch (e.kind) {
    case Expr::Kind::kConst:
    case Expr::Kind::kName:
    case Expr::Kind::kNamespaceRef:
      break;
    case Expr::Kind::kAttribute:
      take(static_cast<const AttributeExpr&>(e).object);
      break;
    case Expr::Kind::kItem:
      take(static_cast<const ItemExpr&>(e).object);
      take(static_cast<const ItemExpr&>(e).key);
      break;
    case Expr::Kind::kSlice: {
      const auto& n = static_cast<const SliceExpr&>(e);
      take(n.start);
      take(n.stop);
      take(n.step);
      break;
    }
    case Expr::Kind::kCall:
      take(static_cast<const CallExpr&>(e).callee);
      take_args(static_cast<const CallExpr&>(e).args);
      break;
    case Expr::Kind::kFilter:
      take(static_cast<const FilterExpr&>(e).operand);
      take_args(static_cast<const FilterExpr&>(e).args);
      break;
    case Expr::Kind::kTest:
      take(static_cast<const TestExpr&>(e).operand);
      take_args(static_cast<const TestExpr&>(e).args);
      break;
    case Expr::Kind::kUnary:
      take(static_cast<const UnaryExpr&>(e).operand);
      break;
    case Expr::Kind::kBinary:
      take(static_cast<const BinaryExpr&>(e).left);
      take(static_cast<const BinaryExpr&>(e).right);
      break;
    case Expr::Kind::kConcat:
      for (const ExprPtr& p : static_cast<const ConcatExpr&>(e).parts) take(p);
      break;
    case Expr::Kind::kCompare:
      take(static_cast<const CompareExpr&>(e).first);
      for (const auto& [_, x] : static_cast<const CompareExpr&>(e).rest) take(x);
      break;
    case Expr::Kind::kCondition: {
      const auto& n = static_cast<const ConditionExpr&>(e);
      take(n.test);
      take(n.then);
      take(n.otherwise);
      break;
    }
    case Expr::Kind::kList:
      for (const ExprPtr& x : static_cast<const ListExpr&>(e).items) take(x);
      break;
    case Expr::Kind::kDict:
      for (const auto& [k, v] : static_cast<const DictExpr&>(e).items) {
        take(k);
        take(v);
      }
      break;
  }
  return d + 1;
}

std::string describe(const Token& t) {
  switch (t.type) {
    case Token::Type::kText:
      return "template text";
    case Token::Type::kVariableBegin:
      return "begin of print statement";
    case Token::Type::kVariableEnd:
      return "end of print statement";
    case Token::Type::kBlockBegin:
      return "begin of statement block";
    case Token::Type::kBlockEnd:
      return "end of statement block";
    case Token::Type::kName:
    case Token::Type::kOperator:
    case Token::Type::kInteger:
    case Token::Type::kFloat:
      return "'" + t.value + "'";
    case Token::Type::kString:
      return "string literal";
    case Token::Type::kEnd:
      return "end of template";
  }
  return "token";
}

class Parser {
 public:
  Parser(const std::vector<Token>& tokens, const std::string& source, const std::string& origin)
      : t_(tokens), source_(source), origin_(origin) {}

  Body parse_template() {
    Body body = parse_body({});
    if (cur().type != Token::Type::kEnd) error(cur(), "unexpected " + describe(cur()));
    return body;
  }

 private:
  // ---- token stream ----
  const Token& cur() const { return t_[pos_]; }
  const Token& peek() const { return t_[std::min(pos_ + 1, t_.size() - 1)]; }
  const Token& advance() {
    const Token& t = t_[pos_];
    if (pos_ + 1 < t_.size()) ++pos_;
    return t;
  }
  bool is_op(const char* op) const {
    return cur().type == Token::Type::kOperator && cur().value == op;
  }
  bool is_name(const char* name) const {
    return cur().type == Token::Type::kName && cur().value == name;
  }
  bool skip_op(const char* op) {
    if (!is_op(op)) return false;
    advance();
    return true;
  }
  bool skip_name(const char* name) {
    if (!is_name(name)) return false;
    advance();
    return true;
  }
  void expect_op(const char* op) {
    if (!skip_op(op)) error(cur(), fmt::format("expected '{}', got {}", op, describe(cur())));
  }
  void expect_name_value(const char* name) {
    if (!skip_name(name)) error(cur(), fmt::format("expected '{}', got {}", name, describe(cur())));
  }
  const Token& expect_type(Token::Type type, const char* what) {
    if (cur().type != type) error(cur(), fmt::format("expected {}, got {}", what, describe(cur())));
    return advance();
  }
  void expect_block_end() { expect_type(Token::Type::kBlockEnd, "end of statement block"); }

  [[noreturn]] void error(const Token& at, const std::string& message) {
    fail_at(origin_, source_, at.offset, message);
  }

  // A finished node: its depth is set from its children's and bounded. A node is finished after
  // its children and before its parent, so no tree deeper than the bound is ever built.
  template <typename T>
  std::unique_ptr<T> sized(std::unique_ptr<T> e) {
    e->depth = subtree_depth(*e);
    if (e->depth > kMaxNesting)
      fail_at(origin_, source_, e->offset,
              fmt::format("expression nested more than {} levels deep", kMaxNesting));
    return e;
  }

  struct DepthGuard {
    explicit DepthGuard(Parser& p) : p_(p) {
      if (++p_.depth_ > kMaxNesting)
        p_.error(p_.cur(), fmt::format("template nested more than {} levels deep", kMaxNesting));
    }
    ~DepthGuard() { --p_.depth_; }
    Parser& p_;
  };

  // ---- statements ----

  // Statements until a block tag whose name is one of `end_names`; stops before that name
  // (the current token is then the name) or at the end of the template.
  Body parse_body(std::initializer_list<const char*> end_names) {
    DepthGuard guard(*this);
    Body body;
    while (true) {
      const Token& t = cur();
      switch (t.type) {
        case Token::Type::kText:
          body.push_back(std::make_unique<TextStmt>(t.offset, t.value));
          advance();
          break;
        case Token::Type::kVariableBegin: {
          advance();
          ExprPtr e = parse_tuple(true, {}, false);
          expect_type(Token::Type::kVariableEnd, "end of print statement");
          body.push_back(std::make_unique<OutputStmt>(t.offset, std::move(e)));
          break;
        }
        case Token::Type::kBlockBegin: {
          advance();
          if (cur().type == Token::Type::kName) {
            for (const char* end : end_names)
              if (cur().value == end) return body;
          }
          body.push_back(parse_statement());
          expect_block_end();
          break;
        }
        case Token::Type::kEnd:
          if (end_names.size() != 0) {
            std::string expected;
            for (const char* end : end_names)
              expected += (expected.empty() ? "'" : " or '") + std::string(end) + "'";
            error(t, fmt::format("unexpected end of template, expected {} to close the block",
                                 expected));
          }
          return body;
        default:
          error(t, "unexpected " + describe(t));
      }
    }
  }

  StmtPtr parse_statement() {
    const Token& t = cur();
    if (t.type != Token::Type::kName) error(t, "tag name expected");
    const std::string& tag = t.value;
    if (tag == "if") return parse_if();
    if (tag == "for") return parse_for();
    if (tag == "set") return parse_set();
    if (tag == "macro") return parse_macro();
    if (tag == "filter") return parse_filter_block();
    if (tag == "with") return parse_with();
    if (tag == "generation") return parse_generation();
    if (tag == "break" || tag == "continue") {
      if (loop_depth_ == 0) error(t, fmt::format("'{}' outside of a for loop", tag));
      advance();
      return std::make_unique<LoopControlStmt>(t.offset, tag == "break");
    }
    error(t, fmt::format("unknown tag '{}'", tag));
  }

  // The body of a block after its opening tag: `%}`, statements, and the closing tag name
  // (consumed when `drop` is set).
  Body parse_block_body(std::initializer_list<const char*> end_names, bool drop) {
    skip_op(":");
    expect_block_end();
    Body body = parse_body(end_names);
    if (drop) advance();
    return body;
  }

  StmtPtr parse_if() {
    auto node = std::make_unique<IfStmt>(advance().offset);
    while (true) {
      ExprPtr test = parse_tuple(false, {}, false);
      Body body = parse_block_body({"elif", "else", "endif"}, false);
      node->branches.emplace_back(std::move(test), std::move(body));
      const std::string next = advance().value;
      if (next == "elif") continue;
      if (next == "else") node->otherwise = parse_block_body({"endif"}, true);
      break;
    }
    return node;
  }

  StmtPtr parse_for() {
    auto node = std::make_unique<ForStmt>(advance().offset);
    node->target = parse_assign_target({"in"}, false);
    expect_name_value("in");
    node->iterable = parse_tuple(false, {"recursive"}, false);
    if (skip_name("if")) node->filter = parse_expression(true);
    if (is_name("recursive")) error(cur(), "recursive for loops are not supported");
    ++loop_depth_;
    node->body = parse_block_body({"endfor", "else"}, false);
    --loop_depth_;
    if (advance().value == "else") node->otherwise = parse_block_body({"endfor"}, true);
    return node;
  }

  StmtPtr parse_set() {
    const uint32_t offset = advance().offset;
    ExprPtr target = parse_assign_target({}, true);
    if (skip_op("=")) return std::make_unique<SetStmt>(offset, std::move(target),
                                                       parse_tuple(true, {}, false));
    auto node = std::make_unique<SetBlockStmt>(offset);
    node->target = std::move(target);
    if (is_op("|")) node->filter = parse_filters(nullptr, false);
    node->body = parse_block_body({"endset"}, true);
    return node;
  }

  StmtPtr parse_macro() {
    auto node = std::make_unique<MacroStmt>(advance().offset);
    node->name = expect_type(Token::Type::kName, "macro name").value;
    expect_op("(");
    while (!is_op(")")) {
      if (!node->params.empty()) expect_op(",");
      const Token& p = expect_type(Token::Type::kName, "parameter name");
      node->params.push_back(p.value);
      if (skip_op("=")) {
        node->defaults.push_back(parse_expression(true));
      } else if (!node->defaults.empty()) {
        error(p, "non-default argument follows default argument");
      }
    }
    expect_op(")");
    const int saved_loops = loop_depth_;
    loop_depth_ = 0;
    node->body = parse_block_body({"endmacro"}, true);
    loop_depth_ = saved_loops;
    return node;
  }

  StmtPtr parse_filter_block() {
    auto node = std::make_unique<FilterBlockStmt>(advance().offset);
    node->filter = parse_filters(nullptr, true);
    node->body = parse_block_body({"endfilter"}, true);
    return node;
  }

  StmtPtr parse_with() {
    auto node = std::make_unique<WithStmt>(advance().offset);
    while (cur().type != Token::Type::kBlockEnd) {
      if (!node->targets.empty()) expect_op(",");
      node->targets.push_back(parse_assign_target({}, false));
      expect_op("=");
      node->values.push_back(parse_expression(true));
    }
    node->body = parse_block_body({"endwith"}, true);
    return node;
  }

  StmtPtr parse_generation() {
    auto node = std::make_unique<ScopeStmt>(advance().offset);
    node->body = parse_block_body({"endgeneration"}, true);
    return node;
  }

  // A name, a tuple of names, or (with `namespace_ref`) `ns.attr`.
  ExprPtr parse_assign_target(std::initializer_list<const char*> extra_end, bool namespace_ref) {
    const Token& start = cur();
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) expect_op(",");
      if (is_tuple_end(extra_end)) break;
      items.push_back(parse_target_primary(namespace_ref));
      if (!is_op(",")) break;
      is_tuple = true;
    }
    if (items.empty()) error(cur(), "expected an assignment target, got " + describe(cur()));
    if (!is_tuple) return std::move(items[0]);
    auto tuple = std::make_unique<ListExpr>(start.offset, true);
    for (ExprPtr& e : items) {
      if (e->kind != Expr::Kind::kName) error(start, "can only assign to names in a tuple");
      tuple->items.push_back(std::move(e));
    }
    return tuple;
  }

  ExprPtr parse_target_primary(bool namespace_ref) {
    const Token& t = cur();
    if (t.type != Token::Type::kName || t.value == "true" || t.value == "false" ||
        t.value == "True" || t.value == "False" || t.value == "none" || t.value == "None")
      error(t, "cannot assign to " + describe(t));
    advance();
    if (namespace_ref && is_op(".")) {
      advance();
      const Token& attr = expect_type(Token::Type::kName, "attribute name");
      return std::make_unique<NamespaceRefExpr>(t.offset, t.value, attr.value);
    }
    return std::make_unique<NameExpr>(t.offset, t.value);
  }

  // ---- expressions ----

  bool is_tuple_end(std::initializer_list<const char*> extra_end) const {
    const Token& t = cur();
    if (t.type == Token::Type::kVariableEnd || t.type == Token::Type::kBlockEnd ||
        (t.type == Token::Type::kOperator && t.value == ")"))
      return true;
    if (t.type == Token::Type::kName)
      for (const char* e : extra_end)
        if (t.value == e) return true;
    return false;
  }

  // Expressions separated by commas: a tuple when there is a comma, else the one expression.
  ExprPtr parse_tuple(bool with_condition, std::initializer_list<const char*> extra_end,
                      bool explicit_parens) {
    const Token& start = cur();
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) expect_op(",");
      if (is_tuple_end(extra_end)) break;
      items.push_back(parse_expression(with_condition));
      if (!is_op(",")) break;
      is_tuple = true;
    }
    if (!is_tuple) {
      if (!items.empty()) return std::move(items[0]);
      if (!explicit_parens) error(cur(), "expected an expression, got " + describe(cur()));
    }
    auto tuple = std::make_unique<ListExpr>(start.offset, true);
    tuple->items = std::move(items);
    return sized(std::move(tuple));
  }

  ExprPtr parse_expression(bool with_condition) {
    DepthGuard guard(*this);
    return with_condition ? parse_condition() : parse_or();
  }

  ExprPtr parse_condition() {
    ExprPtr expr = parse_or();
    while (is_name("if")) {
      const uint32_t offset = advance().offset;
      ExprPtr test = parse_or();
      ExprPtr otherwise;
      if (skip_name("else")) {
        DepthGuard guard(*this);
        otherwise = parse_condition();
      }
      expr = sized(std::make_unique<ConditionExpr>(offset, std::move(test), std::move(expr),
                                                   std::move(otherwise)));
    }
    return expr;
  }

  ExprPtr parse_or() {
    ExprPtr left = parse_and();
    while (is_name("or")) {
      const uint32_t offset = advance().offset;
      left = sized(
          std::make_unique<BinaryExpr>(offset, BinaryExprOp::kOr, std::move(left), parse_and()));
    }
    return left;
  }

  ExprPtr parse_and() {
    ExprPtr left = parse_not();
    while (is_name("and")) {
      const uint32_t offset = advance().offset;
      left = sized(
          std::make_unique<BinaryExpr>(offset, BinaryExprOp::kAnd, std::move(left), parse_not()));
    }
    return left;
  }

  ExprPtr parse_not() {
    if (is_name("not")) {
      DepthGuard guard(*this);
      const uint32_t offset = advance().offset;
      return sized(std::make_unique<UnaryExpr>(offset, UnaryOp::kNot, parse_not()));
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    const uint32_t offset = cur().offset;
    ExprPtr first = parse_math1();
    std::unique_ptr<CompareExpr> cmp;
    while (true) {
      CompareOp op;
      const Token& t = cur();
      if (t.type == Token::Type::kOperator && t.value == "==") {
        op = CompareOp::kEq;
      } else if (t.type == Token::Type::kOperator && t.value == "!=") {
        op = CompareOp::kNe;
      } else if (t.type == Token::Type::kOperator && t.value == "<") {
        op = CompareOp::kLt;
      } else if (t.type == Token::Type::kOperator && t.value == "<=") {
        op = CompareOp::kLe;
      } else if (t.type == Token::Type::kOperator && t.value == ">") {
        op = CompareOp::kGt;
      } else if (t.type == Token::Type::kOperator && t.value == ">=") {
        op = CompareOp::kGe;
      } else if (is_name("in")) {
        op = CompareOp::kIn;
      } else if (is_name("not") && peek().type == Token::Type::kName && peek().value == "in") {
        op = CompareOp::kNotIn;
        advance();
      } else {
        break;
      }
      advance();
      if (!cmp) cmp = std::make_unique<CompareExpr>(offset, std::move(first));
      cmp->rest.emplace_back(op, parse_math1());
    }
    if (!cmp) return first;
    return sized(std::move(cmp));
  }

  ExprPtr parse_math1() {
    ExprPtr left = parse_concat();
    while (is_op("+") || is_op("-")) {
      const Token& t = advance();
      left = sized(std::make_unique<BinaryExpr>(
          t.offset, t.value == "+" ? BinaryExprOp::kAdd : BinaryExprOp::kSub, std::move(left),
          parse_concat()));
    }
    return left;
  }

  ExprPtr parse_concat() {
    const uint32_t offset = cur().offset;
    ExprPtr first = parse_math2();
    if (!is_op("~")) return first;
    auto node = std::make_unique<ConcatExpr>(offset);
    node->parts.push_back(std::move(first));
    while (skip_op("~")) node->parts.push_back(parse_math2());
    return sized(std::move(node));
  }

  ExprPtr parse_math2() {
    ExprPtr left = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const Token& t = advance();
      const BinaryExprOp op = t.value == "*"    ? BinaryExprOp::kMul
                              : t.value == "/"  ? BinaryExprOp::kDiv
                              : t.value == "//" ? BinaryExprOp::kFloorDiv
                                                : BinaryExprOp::kMod;
      left = sized(std::make_unique<BinaryExpr>(t.offset, op, std::move(left), parse_pow()));
    }
    return left;
  }

  ExprPtr parse_pow() {
    ExprPtr left = parse_unary(true);
    while (is_op("**")) {
      const uint32_t offset = advance().offset;
      left = sized(std::make_unique<BinaryExpr>(offset, BinaryExprOp::kPow, std::move(left),
                                                parse_unary(true)));
    }
    return left;
  }

  ExprPtr parse_unary(bool with_filter) {
    DepthGuard guard(*this);
    ExprPtr node;
    if (is_op("-") || is_op("+")) {
      const Token& t = advance();
      node = sized(std::make_unique<UnaryExpr>(
          t.offset, t.value == "-" ? UnaryOp::kNeg : UnaryOp::kPos, parse_unary(false)));
    } else {
      node = parse_primary();
    }
    node = parse_postfix(std::move(node));
    if (with_filter) node = parse_filter_expr(std::move(node));
    return node;
  }

  ExprPtr parse_primary() {
    const Token& t = cur();
    switch (t.type) {
      case Token::Type::kName: {
        advance();
        if (t.value == "true" || t.value == "True") return std::make_unique<ConstExpr>(t.offset, true);
        if (t.value == "false" || t.value == "False")
          return std::make_unique<ConstExpr>(t.offset, false);
        if (t.value == "none" || t.value == "None")
          return std::make_unique<ConstExpr>(t.offset, Value::none());
        return std::make_unique<NameExpr>(t.offset, t.value);
      }
      case Token::Type::kString: {
        std::string s;
        while (cur().type == Token::Type::kString) s += advance().value;
        return std::make_unique<ConstExpr>(t.offset, Value(std::move(s)));
      }
      case Token::Type::kInteger:
        advance();
        return std::make_unique<ConstExpr>(t.offset, Value(t.int_value));
      case Token::Type::kFloat:
        advance();
        return std::make_unique<ConstExpr>(t.offset, Value(t.float_value));
      case Token::Type::kOperator:
        if (t.value == "(") {
          advance();
          ExprPtr e = parse_tuple(true, {}, true);
          expect_op(")");
          return e;
        }
        if (t.value == "[") return parse_list();
        if (t.value == "{") return parse_dict();
        break;
      default:
        break;
    }
    error(t, "unexpected " + describe(t));
  }

  ExprPtr parse_list() {
    auto node = std::make_unique<ListExpr>(advance().offset, false);
    while (!is_op("]")) {
      if (!node->items.empty()) expect_op(",");
      if (is_op("]")) break;
      node->items.push_back(parse_expression(true));
    }
    expect_op("]");
    return sized(std::move(node));
  }

  ExprPtr parse_dict() {
    auto node = std::make_unique<DictExpr>(advance().offset);
    while (!is_op("}")) {
      if (!node->items.empty()) expect_op(",");
      if (is_op("}")) break;
      ExprPtr key = parse_expression(true);
      expect_op(":");
      node->items.emplace_back(std::move(key), parse_expression(true));
    }
    expect_op("}");
    return sized(std::move(node));
  }

  ExprPtr parse_postfix(ExprPtr node) {
    while (true) {
      if (is_op(".") || is_op("[")) {
        node = parse_subscript(std::move(node));
      } else if (is_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr parse_filter_expr(ExprPtr node) {
    while (true) {
      if (is_op("|")) {
        node = parse_filters(std::move(node), false);
      } else if (is_name("is")) {
        node = parse_test(std::move(node));
      } else if (is_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr node) {
    const Token& t = advance();
    if (t.value == ".") {
      const Token& attr = cur();
      if (attr.type == Token::Type::kName) {
        advance();
        return sized(std::make_unique<AttributeExpr>(t.offset, std::move(node), attr.value));
      }
      if (attr.type != Token::Type::kInteger) error(attr, "expected name or number");
      advance();
      return sized(std::make_unique<ItemExpr>(
          t.offset, std::move(node), std::make_unique<ConstExpr>(attr.offset, attr.int_value)));
    }
    std::vector<ExprPtr> args;
    while (!is_op("]")) {
      if (!args.empty()) expect_op(",");
      args.push_back(parse_subscribed());
    }
    expect_op("]");
    if (args.size() == 1)
      return sized(std::make_unique<ItemExpr>(t.offset, std::move(node), std::move(args[0])));
    auto tuple = std::make_unique<ListExpr>(t.offset, true);
    tuple->items = std::move(args);
    return sized(std::make_unique<ItemExpr>(t.offset, std::move(node), sized(std::move(tuple))));
  }

  ExprPtr parse_subscribed() {
    const uint32_t offset = cur().offset;
    ExprPtr start;
    if (!is_op(":")) {
      start = parse_expression(true);
      if (!is_op(":")) return start;
    }
    advance();  // the first ':'
    auto slice = std::make_unique<SliceExpr>(offset);
    slice->start = std::move(start);
    if (!is_op(":") && !is_op("]") && !is_op(",")) slice->stop = parse_expression(true);
    if (skip_op(":")) {
      if (!is_op("]") && !is_op(",")) slice->step = parse_expression(true);
    }
    return sized(std::move(slice));
  }

  Arguments parse_call_args() {
    const Token& open = cur();
    expect_op("(");
    Arguments a;
    bool require_comma = false;
    const auto ensure = [&](bool ok) {
      if (!ok) error(open, "invalid syntax for function call expression");
    };
    while (!is_op(")")) {
      if (require_comma) {
        expect_op(",");
        if (is_op(")")) break;
      }
      if (is_op("*")) {
        ensure(!a.star && !a.star_star);
        advance();
        a.star = parse_expression(true);
      } else if (is_op("**")) {
        ensure(!a.star_star);
        advance();
        a.star_star = parse_expression(true);
      } else if (cur().type == Token::Type::kName && peek().type == Token::Type::kOperator &&
                 peek().value == "=") {
        ensure(!a.star_star);
        std::string key = advance().value;
        advance();
        a.keyword.emplace_back(std::move(key), parse_expression(true));
      } else {
        ensure(!a.star && !a.star_star && a.keyword.empty());
        a.positional.push_back(parse_expression(true));
      }
      require_comma = true;
    }
    expect_op(")");
    return a;
  }

  ExprPtr parse_call(ExprPtr node) {
    auto call = std::make_unique<CallExpr>(cur().offset, std::move(node));
    call->args = parse_call_args();
    return sized(std::move(call));
  }

  // `| name(args) | name ...`; with `start_inline` the first filter has no `|` (filter blocks).
  ExprPtr parse_filters(ExprPtr node, bool start_inline) {
    while (is_op("|") || start_inline) {
      if (!start_inline) advance();
      start_inline = false;
      const Token& name = expect_type(Token::Type::kName, "filter name");
      std::string full = name.value;
      while (skip_op(".")) full += "." + expect_type(Token::Type::kName, "filter name").value;
      auto f = std::make_unique<FilterExpr>(name.offset, std::move(node), std::move(full));
      if (is_op("(")) f->args = parse_call_args();
      node = sized(std::move(f));
    }
    return node;
  }

  ExprPtr parse_test(ExprPtr node) {
    const uint32_t offset = advance().offset;  // 'is'
    const bool negated = skip_name("not");
    const Token& name = expect_type(Token::Type::kName, "test name");
    std::string full = name.value;
    while (skip_op(".")) full += "." + expect_type(Token::Type::kName, "test name").value;
    auto test = std::make_unique<TestExpr>(offset, std::move(node), std::move(full));
    const Token& t = cur();
    const bool arg_start =
        t.type == Token::Type::kName || t.type == Token::Type::kString ||
        t.type == Token::Type::kInteger || t.type == Token::Type::kFloat ||
        (t.type == Token::Type::kOperator && (t.value == "[" || t.value == "{"));
    if (is_op("(")) {
      test->args = parse_call_args();
    } else if (arg_start && !is_name("else") && !is_name("or") && !is_name("and")) {
      if (is_name("is")) error(t, "you cannot chain multiple tests with is");
      test->args.positional.push_back(parse_postfix(parse_primary()));
    }
    if (!negated) return sized(std::move(test));
    return sized(std::make_unique<UnaryExpr>(offset, UnaryOp::kNot, sized(std::move(test))));
  }

  const std::vector<Token>& t_;
  const std::string& source_;
  const std::string& origin_;
  size_t pos_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
};


// The checks jinja2's compiler makes after parsing: a filter or test that does not exist is an
// error at once, except inside an `if` or an inline if-expression (where jinja2 defers it to
// when it is evaluated) unless a loop, macro or block body intervenes; and a macro takes extra
// arguments only when its body reads `varargs` or `kwargs`.
class Checker {
 public:
  Checker(const std::string& source, const std::string& origin)
      : source_(source), origin_(origin) {}

  void body(Body& b, bool soft) {
    for (StmtPtr& s : b) stmt(*s, soft);
  }

 private:
  void stmt(Stmt& s, bool soft) {
    switch (s.kind) {
      case Stmt::Kind::kText:
      case Stmt::Kind::kBreak:
      case Stmt::Kind::kContinue:
        return;
      case Stmt::Kind::kOutput:
        expr(static_cast<OutputStmt&>(s).expr.get(), soft);
        return;
      case Stmt::Kind::kIf: {
        auto& n = static_cast<IfStmt&>(s);
        for (auto& [test, b] : n.branches) {
          expr(test.get(), true);
          body(b, true);
        }
        body(n.otherwise, true);
        return;
      }
      case Stmt::Kind::kFor: {
        auto& n = static_cast<ForStmt&>(s);
        expr(n.iterable.get(), soft);
        expr(n.filter.get(), false);
        body(n.body, false);
        body(n.otherwise, false);
        return;
      }
      case Stmt::Kind::kSet:
        expr(static_cast<SetStmt&>(s).value.get(), soft);
        return;
      case Stmt::Kind::kSetBlock: {
        auto& n = static_cast<SetBlockStmt&>(s);
        expr(n.filter.get(), false);
        body(n.body, false);
        return;
      }
      case Stmt::Kind::kMacro: {
        auto& n = static_cast<MacroStmt&>(s);
        for (ExprPtr& d : n.defaults) expr(d.get(), false);
        const bool outer_varargs = uses_varargs_;
        const bool outer_kwargs = uses_kwargs_;
        uses_varargs_ = uses_kwargs_ = false;
        body(n.body, false);
        n.uses_varargs = uses_varargs_;
        n.uses_kwargs = uses_kwargs_;
        uses_varargs_ = outer_varargs || uses_varargs_;
        uses_kwargs_ = outer_kwargs || uses_kwargs_;
        return;
      }
      case Stmt::Kind::kFilterBlock: {
        auto& n = static_cast<FilterBlockStmt&>(s);
        expr(n.filter.get(), false);
        body(n.body, false);
        return;
      }
      case Stmt::Kind::kWith: {
        auto& n = static_cast<WithStmt&>(s);
        for (ExprPtr& v : n.values) expr(v.get(), soft);
        body(n.body, false);
        return;
      }
      case Stmt::Kind::kScope:
        body(static_cast<ScopeStmt&>(s).body, false);
        return;
    }
  }

  void args(Arguments& a, bool soft) {
    for (ExprPtr& p : a.positional) expr(p.get(), soft);
    for (auto& [_, v] : a.keyword) expr(v.get(), soft);
    expr(a.star.get(), soft);
    expr(a.star_star.get(), soft);
  }

  void expr(Expr* e, bool soft) {
    if (e == nullptr) return;
    switch (e->kind) {
      case Expr::Kind::kConst:
      case Expr::Kind::kNamespaceRef:
        return;
      case Expr::Kind::kName: {
        const std::string& name = static_cast<NameExpr*>(e)->name;
        if (name == "varargs") uses_varargs_ = true;
        if (name == "kwargs") uses_kwargs_ = true;
        return;
      }
      case Expr::Kind::kAttribute:
        expr(static_cast<AttributeExpr*>(e)->object.get(), soft);
        return;
      case Expr::Kind::kItem: {
        auto* n = static_cast<ItemExpr*>(e);
        expr(n->object.get(), soft);
        expr(n->key.get(), soft);
        return;
      }
      case Expr::Kind::kSlice: {
        auto* n = static_cast<SliceExpr*>(e);
        expr(n->start.get(), soft);
        expr(n->stop.get(), soft);
        expr(n->step.get(), soft);
        return;
      }
      case Expr::Kind::kCall: {
        auto* n = static_cast<CallExpr*>(e);
        expr(n->callee.get(), soft);
        args(n->args, soft);
        return;
      }
      case Expr::Kind::kFilter: {
        auto* n = static_cast<FilterExpr*>(e);
        if (!soft && find_filter(n->name) == nullptr)
          fail_at(origin_, source_, n->offset, fmt::format("no filter named '{}'", n->name));
        expr(n->operand.get(), soft);
        args(n->args, soft);
        return;
      }
      case Expr::Kind::kTest: {
        auto* n = static_cast<TestExpr*>(e);
        if (!soft && find_test(n->name) == nullptr)
          fail_at(origin_, source_, n->offset, fmt::format("no test named '{}'", n->name));
        expr(n->operand.get(), soft);
        args(n->args, soft);
        return;
      }
      case Expr::Kind::kUnary:
        expr(static_cast<UnaryExpr*>(e)->operand.get(), soft);
        return;
      case Expr::Kind::kBinary: {
        auto* n = static_cast<BinaryExpr*>(e);
        expr(n->left.get(), soft);
        expr(n->right.get(), soft);
        return;
      }
      case Expr::Kind::kConcat:
        for (ExprPtr& p : static_cast<ConcatExpr*>(e)->parts) expr(p.get(), soft);
        return;
      case Expr::Kind::kCompare: {
        auto* n = static_cast<CompareExpr*>(e);
        expr(n->first.get(), soft);
        for (auto& [_, x] : n->rest) expr(x.get(), soft);
        return;
      }
      case Expr::Kind::kCondition: {
        auto* n = static_cast<ConditionExpr*>(e);
        expr(n->test.get(), true);
        expr(n->then.get(), true);
        expr(n->otherwise.get(), true);
        return;
      }
      case Expr::Kind::kList:
        for (ExprPtr& x : static_cast<ListExpr*>(e)->items) expr(x.get(), soft);
        return;
      case Expr::Kind::kDict:
        for (auto& [k, v] : static_cast<DictExpr*>(e)->items) {
          expr(k.get(), soft);
          expr(v.get(), soft);
        }
        return;
    }
  }

  const std::string& source_;
  const std::string& origin_;
  bool uses_varargs_ = false;
  bool uses_kwargs_ = false;
};

}  // namespace

Body parse(const std::vector<Token>& tokens, const std::string& source, const std::string& origin) {
  Body body = Parser(tokens, source, origin).parse_template();
  Checker(source, origin).body(body, false);
  return body;
}

}  // namespace llm42::jinja
