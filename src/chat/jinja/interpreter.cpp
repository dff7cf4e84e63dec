#include "chat/jinja/interpreter.h"

#include <fmt/format.h>

#include "chat/jinja/builtins.h"
#include "chat/jinja/error.h"
#include "chat/jinja/python.h"
#include "util/error.h"

namespace llm42::jinja {

namespace {

std::optional<int64_t> slice_bound(const Value& v, bool& ok) {
  if (v.is_none()) return std::nullopt;
  if (!v.is_integral()) {
    ok = false;
    return std::nullopt;
  }
  return v.as_int();
}

bool compare_holds(CompareOp op, const Value& a, const Value& b) {
  switch (op) {
    case CompareOp::kEq:
      return py::equal(a, b);
    case CompareOp::kNe:
      return !py::equal(a, b);
    case CompareOp::kLt:
      return py::compare(a, b) < 0;
    case CompareOp::kLe:
      return py::compare(a, b) <= 0;
    case CompareOp::kGt:
      return py::compare(a, b) > 0;
    case CompareOp::kGe:
      return py::compare(a, b) >= 0;
    case CompareOp::kIn:
      return py::contains(b, a);
    case CompareOp::kNotIn:
      return !py::contains(b, a);
  }
  return false;
}

py::BinaryOp arithmetic_op(BinaryExprOp op) {
  switch (op) {
    case BinaryExprOp::kAdd:
      return py::BinaryOp::kAdd;
    case BinaryExprOp::kSub:
      return py::BinaryOp::kSub;
    case BinaryExprOp::kMul:
      return py::BinaryOp::kMul;
    case BinaryExprOp::kDiv:
      return py::BinaryOp::kDiv;
    case BinaryExprOp::kFloorDiv:
      return py::BinaryOp::kFloorDiv;
    case BinaryExprOp::kMod:
      return py::BinaryOp::kMod;
    default:
      return py::BinaryOp::kPow;
  }
}

// jinja2's LoopContext for iteration `i` of `n`, as the attributes a template reads.
Value loop_object(const std::vector<Value>& items, size_t i) {
  const size_t n = items.size();
  Object loop;
  loop.set("index", Value(static_cast<int64_t>(i + 1)));
  loop.set("index0", Value(static_cast<int64_t>(i)));
  loop.set("revindex", Value(static_cast<int64_t>(n - i)));
  loop.set("revindex0", Value(static_cast<int64_t>(n - i - 1)));
  loop.set("first", Value(i == 0));
  loop.set("last", Value(i + 1 == n));
  loop.set("length", Value(static_cast<int64_t>(n)));
  loop.set("depth", Value(1));
  loop.set("depth0", Value(0));
  if (i > 0) loop.set("previtem", items[i - 1]);
  if (i + 1 < n) loop.set("nextitem", items[i + 1]);
  loop.set("cycle", Value::function("loop.cycle", [i](CallArgs& args, Interpreter&) -> Value {
             if (!args.keyword.empty()) eval_fail("loop.cycle() takes no keyword arguments");
             if (args.positional.empty()) eval_fail("no items for cycling given");
             return args.positional[i % args.positional.size()];
           }));
  return Value::dict(std::move(loop));
}

}  // namespace

Interpreter::Interpreter(const Body& program, const std::string& source, const std::string& origin,
                         const RenderLimits& limits)
    : program_(program), source_(source), origin_(origin), limits_(limits) {}

std::string Interpreter::render(Object variables) {
  root_ = std::make_shared<Frame>();
  // Named: a range-for over global_functions().entries() would iterate a destroyed temporary.
  const Object globals = global_functions();
  for (const auto& [k, v] : globals.entries()) root_->vars[k] = v;
  for (const auto& [k, v] : variables.entries()) root_->vars[k] = v;
  iterations_ = 0;
  call_depth_ = 0;
  depth_ = 0;
  std::string out;
  exec_body(program_, root_, out);
  root_.reset();
  return out;
}

Interpreter::Nesting::Nesting(int& depth, int limit, const char* what) : depth_(depth) {
  if (depth_ >= limit) eval_fail("{} nested more than {} deep", what, limit);
  ++depth_;
}

void Interpreter::fail_at_offset(uint32_t offset, const std::string& message) const {
  fail_at(origin_, source_, offset, message);
}

void Interpreter::check_size(size_t bytes) const {
  if (bytes > limits_.max_output_bytes)
    eval_fail("the rendered text exceeds the limit of {} bytes", limits_.max_output_bytes);
}

void Interpreter::append_output(std::string& out, std::string_view text) const {
  check_size(out.size() + text.size());
  out.append(text);
}

void Interpreter::count_iteration() {
  if (++iterations_ > limits_.max_iterations)
    eval_fail("the template ran more than {} loop iterations and macro calls",
              limits_.max_iterations);
}

Value Interpreter::lookup(const std::string& name, const FramePtr& frame) const {
  for (const Frame* f = frame.get(); f != nullptr; f = f->parent.get()) {
    const auto it = f->vars.find(name);
    if (it != f->vars.end()) return it->second;
  }
  return Value::undefined(fmt::format("'{}' is undefined", name));
}

// ---- statements ----

Interpreter::Flow Interpreter::exec_body(const Body& body, const FramePtr& frame, std::string& out) {
  for (const StmtPtr& s : body) {
    const Flow f = exec(*s, frame, out);
    if (f != Flow::kNormal) return f;
  }
  return Flow::kNormal;
}

Interpreter::Flow Interpreter::exec(const Stmt& s, const FramePtr& frame, std::string& out) {
  try {
    const Nesting nesting(depth_, limits_.max_depth, "statements and expressions");
    switch (s.kind) {
      case Stmt::Kind::kText:
        append_output(out, static_cast<const TextStmt&>(s).text);
        return Flow::kNormal;
      case Stmt::Kind::kOutput:
        append_output(out, py::str(eval(*static_cast<const OutputStmt&>(s).expr, frame)));
        return Flow::kNormal;
      case Stmt::Kind::kIf: {
        const auto& n = static_cast<const IfStmt&>(s);
        for (const auto& [test, body] : n.branches)
          if (py::truthy(eval(*test, frame))) return exec_body(body, frame, out);
        return exec_body(n.otherwise, frame, out);
      }
      case Stmt::Kind::kFor:
        return exec_for(static_cast<const ForStmt&>(s), frame, out);
      case Stmt::Kind::kSet: {
        const auto& n = static_cast<const SetStmt&>(s);
        assign(*n.target, eval(*n.value, frame), frame);
        return Flow::kNormal;
      }
      case Stmt::Kind::kSetBlock: {
        const auto& n = static_cast<const SetBlockStmt&>(s);
        auto inner = std::make_shared<Frame>(Frame{{}, frame});
        Value text(capture(n.body, inner));
        if (n.filter)
          text = apply_block_filters(static_cast<const FilterExpr&>(*n.filter), text, inner);
        assign(*n.target, text, frame);
        return Flow::kNormal;
      }
      case Stmt::Kind::kMacro:
        exec_macro(static_cast<const MacroStmt&>(s), frame);
        return Flow::kNormal;
      case Stmt::Kind::kFilterBlock: {
        const auto& n = static_cast<const FilterBlockStmt&>(s);
        auto inner = std::make_shared<Frame>(Frame{{}, frame});
        const Value text(capture(n.body, inner));
        append_output(out, py::str(apply_block_filters(static_cast<const FilterExpr&>(*n.filter),
                                                       text, inner)));
        return Flow::kNormal;
      }
      case Stmt::Kind::kWith: {
        const auto& n = static_cast<const WithStmt&>(s);
        auto inner = std::make_shared<Frame>(Frame{{}, frame});
        for (size_t i = 0; i < n.targets.size(); ++i)
          assign(*n.targets[i], eval(*n.values[i], frame), inner);
        return exec_body(n.body, inner, out);
      }
      case Stmt::Kind::kScope: {
        auto inner = std::make_shared<Frame>(Frame{{}, frame});
        append_output(out, capture(static_cast<const ScopeStmt&>(s).body, inner));
        return Flow::kNormal;
      }
      case Stmt::Kind::kBreak:
        return Flow::kBreak;
      case Stmt::Kind::kContinue:
        return Flow::kContinue;
    }
  } catch (const EvalError& e) {
    fail_at_offset(s.offset, e.what());
  }
  return Flow::kNormal;
}

std::string Interpreter::capture(const Body& body, const FramePtr& frame) {
  std::string text;
  exec_body(body, frame, text);
  return text;
}

Interpreter::Flow Interpreter::exec_for(const ForStmt& s, const FramePtr& frame, std::string& out) {
  std::vector<Value> items = py::iterate(eval(*s.iterable, frame));
  if (s.filter) {
    std::vector<Value> kept;
    for (Value& item : items) {
      count_iteration();
      auto test_frame = std::make_shared<Frame>(Frame{{}, frame});
      assign(*s.target, item, test_frame);
      if (py::truthy(eval(*s.filter, test_frame))) kept.push_back(std::move(item));
    }
    items = std::move(kept);
  }
  for (size_t i = 0; i < items.size(); ++i) {
    count_iteration();
    auto iteration = std::make_shared<Frame>(Frame{{}, frame});
    assign(*s.target, items[i], iteration);
    iteration->vars["loop"] = loop_object(items, i);
    if (exec_body(s.body, iteration, out) == Flow::kBreak) break;
  }
  if (items.empty()) {
    auto inner = std::make_shared<Frame>(Frame{{}, frame});
    exec_body(s.otherwise, inner, out);
  }
  return Flow::kNormal;
}

void Interpreter::assign(const Expr& target, const Value& value, const FramePtr& frame) {
  switch (target.kind) {
    case Expr::Kind::kName:
      frame->vars[static_cast<const NameExpr&>(target).name] = value;
      return;
    case Expr::Kind::kList: {
      const auto& names = static_cast<const ListExpr&>(target).items;
      const std::vector<Value> parts = py::iterate(value);
      if (parts.size() > names.size())
        eval_fail("too many values to unpack (expected {})", names.size());
      if (parts.size() < names.size())
        eval_fail("not enough values to unpack (expected {}, got {})", names.size(),
                  parts.size());
      for (size_t i = 0; i < names.size(); ++i) assign(*names[i], parts[i], frame);
      return;
    }
    case Expr::Kind::kNamespaceRef: {
      const auto& ref = static_cast<const NamespaceRefExpr&>(target);
      const Value ns = lookup(ref.name, frame);
      if (!ns.is_namespace()) eval_fail("cannot assign attribute on non-namespace object");
      // jinja2 allows it, but a namespace that contains itself has no end to print or compare.
      if (value.holds_namespace())
        eval_fail("a namespace attribute cannot hold a namespace (it could contain itself)");
      ns.namespace_attributes().set(ref.attribute, value);
      return;
    }
    default:
      eval_fail("cannot assign to this expression");
  }
}

void Interpreter::exec_macro(const MacroStmt& s, const FramePtr& frame) {
  // The macro holds its defining scope weakly: the scope holds the macro, and a strong pointer
  // back would keep both alive after the render.
  std::weak_ptr<Frame> closure = frame;
  const MacroStmt* macro = &s;
  frame->vars[s.name] = Value::function(
      "macro '" + s.name + "'", [this, macro, closure](CallArgs& args, Interpreter&) -> Value {
        FramePtr scope = closure.lock();
        return call_macro(*macro, scope ? scope : root_, args);
      });
}

Value Interpreter::call_macro(const MacroStmt& m, const FramePtr& closure, CallArgs& args) {
  count_iteration();
  const Nesting nesting(call_depth_, limits_.max_call_depth, "macro calls");

  auto scope = std::make_shared<Frame>(Frame{{}, closure});
  const size_t n = m.params.size();
  if (args.positional.size() > n && !m.uses_varargs)
    eval_fail("macro '{}' takes not more than {} argument(s)", m.name, n);
  std::vector<bool> bound(n, false);
  for (size_t i = 0; i < std::min(n, args.positional.size()); ++i) {
    scope->vars[m.params[i]] = args.positional[i];
    bound[i] = true;
  }
  Object extra_kwargs;
  for (auto& [key, value] : args.keyword) {
    size_t i = 0;
    while (i < n && m.params[i] != key) ++i;
    if (i == n) {
      if (!m.uses_kwargs) eval_fail("macro '{}' takes no keyword argument '{}'", m.name, key);
      extra_kwargs.set(key, value);
      continue;
    }
    if (bound[i]) eval_fail("macro '{}' got multiple values for argument '{}'", m.name, key);
    scope->vars[m.params[i]] = value;
    bound[i] = true;
  }
  const size_t first_default = n - m.defaults.size();
  for (size_t i = 0; i < n; ++i) {
    if (bound[i]) continue;
    scope->vars[m.params[i]] =
        i >= first_default ? eval(*m.defaults[i - first_default], scope)
                           : Value::undefined(fmt::format("parameter '{}' was not provided",
                                                          m.params[i]));
  }
  if (m.uses_varargs) {
    std::vector<Value> rest;
    for (size_t i = n; i < args.positional.size(); ++i) rest.push_back(args.positional[i]);
    scope->vars["varargs"] = Value::list(std::move(rest), true);
  }
  if (m.uses_kwargs) scope->vars["kwargs"] = Value::dict(std::move(extra_kwargs));
  return Value(capture(m.body, scope));
}

// ---- expressions ----

Value Interpreter::eval(const Expr& e, const FramePtr& frame) {
  try {
    const Nesting nesting(depth_, limits_.max_depth, "statements and expressions");
    return eval_node(e, frame);
  } catch (const EvalError& err) {
    fail_at_offset(e.offset, err.what());
  }
}

Value Interpreter::eval_node(const Expr& e, const FramePtr& frame) {
  switch (e.kind) {
    case Expr::Kind::kConst:
      return static_cast<const ConstExpr&>(e).value;
    case Expr::Kind::kName:
      return lookup(static_cast<const NameExpr&>(e).name, frame);
    case Expr::Kind::kAttribute: {
      const auto& n = static_cast<const AttributeExpr&>(e);
      return get_attribute(eval(*n.object, frame), n.name);
    }
    case Expr::Kind::kItem:
      return eval_item(static_cast<const ItemExpr&>(e), frame);
    case Expr::Kind::kSlice:
      eval_fail("a slice is only valid inside []");
    case Expr::Kind::kCall: {
      const auto& n = static_cast<const CallExpr&>(e);
      const Value callee = eval(*n.callee, frame);
      CallArgs args = eval_args(n.args, frame);
      return call(callee, args);
    }
    case Expr::Kind::kFilter: {
      const auto& n = static_cast<const FilterExpr&>(e);
      return eval_filter(n, eval(*n.operand, frame), frame);
    }
    case Expr::Kind::kTest: {
      const auto& n = static_cast<const TestExpr&>(e);
      const Value operand = eval(*n.operand, frame);
      CallArgs args = eval_args(n.args, frame);
      return Value(apply_test(n.name, operand, args));
    }
    case Expr::Kind::kUnary: {
      const auto& n = static_cast<const UnaryExpr&>(e);
      const Value v = eval(*n.operand, frame);
      switch (n.op) {
        case UnaryOp::kNot:
          return Value(!py::truthy(v));
        case UnaryOp::kNeg:
          return py::negate(v);
        case UnaryOp::kPos:
          return py::unary_plus(v);
      }
      return Value();
    }
    case Expr::Kind::kBinary: {
      const auto& n = static_cast<const BinaryExpr&>(e);
      Value left = eval(*n.left, frame);
      // `and` / `or` give one of their operands, as in Python.
      if (n.op == BinaryExprOp::kAnd) return py::truthy(left) ? eval(*n.right, frame) : left;
      if (n.op == BinaryExprOp::kOr) return py::truthy(left) ? left : eval(*n.right, frame);
      const Value right = eval(*n.right, frame);
      Value result = py::arithmetic(arithmetic_op(n.op), left, right);
      if (result.is_string()) check_size(result.as_string().size());
      return result;
    }
    case Expr::Kind::kConcat: {
      std::string s;
      for (const ExprPtr& part : static_cast<const ConcatExpr&>(e).parts) {
        s += py::str(eval(*part, frame));
        check_size(s.size());
      }
      return Value(std::move(s));
    }
    case Expr::Kind::kCompare:
      return eval_compare(static_cast<const CompareExpr&>(e), frame);
    case Expr::Kind::kCondition: {
      const auto& n = static_cast<const ConditionExpr&>(e);
      if (py::truthy(eval(*n.test, frame))) return eval(*n.then, frame);
      if (n.otherwise) return eval(*n.otherwise, frame);
      return Value::undefined(
          fmt::format("the inline if-expression on {} evaluated to false and no else section "
                      "was defined",
                      describe_position(source_, e.offset)));
    }
    case Expr::Kind::kList: {
      const auto& n = static_cast<const ListExpr&>(e);
      std::vector<Value> items;
      items.reserve(n.items.size());
      for (const ExprPtr& item : n.items) items.push_back(eval(*item, frame));
      return Value::list(std::move(items), n.is_tuple);
    }
    case Expr::Kind::kDict: {
      Object o;
      for (const auto& [k, v] : static_cast<const DictExpr&>(e).items) {
        const Value key = eval(*k, frame);
        if (!key.is_string())
          eval_fail("dict keys must be strings here, not '{}'", py::type_name(key));
        o.set(key.as_string(), eval(*v, frame));
      }
      return Value::dict(std::move(o));
    }
    case Expr::Kind::kNamespaceRef:
      eval_fail("a namespace attribute reference is only valid as a set target");
  }
  return Value();
}

Value Interpreter::eval_compare(const CompareExpr& e, const FramePtr& frame) {
  Value left = eval(*e.first, frame);
  for (const auto& [op, expr] : e.rest) {
    Value right = eval(*expr, frame);
    if (!compare_holds(op, left, right)) return Value(false);
    left = std::move(right);
  }
  return Value(true);
}

Value Interpreter::eval_item(const ItemExpr& e, const FramePtr& frame) {
  const Value obj = eval(*e.object, frame);
  if (e.key->kind != Expr::Kind::kSlice) return get_item(obj, eval(*e.key, frame));
  const auto& s = static_cast<const SliceExpr&>(*e.key);
  bool ok = true;
  const auto bound = [&](const ExprPtr& x) -> std::optional<int64_t> {
    if (!x) return std::nullopt;
    return slice_bound(eval(*x, frame), ok);
  };
  const std::optional<int64_t> start = bound(s.start);
  const std::optional<int64_t> stop = bound(s.stop);
  const std::optional<int64_t> step = bound(s.step);
  // jinja2 turns a failed subscript into an Undefined rather than an error.
  if (!ok || !(obj.is_list() || obj.is_string()))
    return Value::undefined(fmt::format("{} has no element slice", py::object_type_repr(obj)));
  return py::slice(obj, start, stop, step);
}

CallArgs Interpreter::eval_args(const Arguments& a, const FramePtr& frame) {
  CallArgs args;
  for (const ExprPtr& p : a.positional) args.positional.push_back(eval(*p, frame));
  for (const auto& [k, v] : a.keyword) args.keyword.emplace_back(k, eval(*v, frame));
  if (a.star) {
    for (Value& v : py::iterate(eval(*a.star, frame))) args.positional.push_back(std::move(v));
  }
  if (a.star_star) {
    const Value kw = eval(*a.star_star, frame);
    if (!kw.is_dict()) eval_fail("argument after ** must be a mapping, not {}", py::type_name(kw));
    for (const auto& [k, v] : kw.as_dict().entries()) args.keyword.emplace_back(k, v);
  }
  return args;
}

Value Interpreter::eval_filter(const FilterExpr& e, const Value& operand, const FramePtr& frame) {
  CallArgs args = eval_args(e.args, frame);
  Value result = apply_filter(e.name, operand, args);
  if (result.is_string()) check_size(result.as_string().size());
  return result;
}

Value Interpreter::apply_block_filters(const FilterExpr& e, const Value& text,
                                       const FramePtr& frame) {
  // The innermost filter of a block's chain has no operand: it takes the block's text.
  const Value operand =
      e.operand ? apply_block_filters(static_cast<const FilterExpr&>(*e.operand), text, frame)
                : text;
  return eval_filter(e, operand, frame);
}

Value Interpreter::call(const Value& callee, CallArgs& args) {
  if (callee.is_function()) return callee.as_function().call(args, *this);
  py::require_defined(callee);
  eval_fail("'{}' object is not callable", py::type_name(callee));
}

Value Interpreter::apply_filter(const std::string& name, const Value& operand, CallArgs& args) {
  const FilterFunction f = find_filter(name);
  if (f == nullptr) eval_fail("no filter named '{}'", name);
  return f(*this, operand, args);
}

bool Interpreter::apply_test(const std::string& name, const Value& operand, CallArgs& args) {
  const TestFunction t = find_test(name);
  if (t == nullptr) eval_fail("no test named '{}'", name);
  return t(*this, operand, args);
}

}  // namespace llm42::jinja
