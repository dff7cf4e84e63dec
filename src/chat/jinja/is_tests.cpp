// The tests (`x is defined`, `n is odd`, ...): jinja2 3.1's built-in tests.
#include <fmt/format.h>

#include <algorithm>
#include <string_view>

#include "chat/jinja/builtins.h"
#include "chat/jinja/error.h"
#include "chat/jinja/python.h"
#include "chat/jinja/unicode.h"

namespace llm42::jinja {

namespace {

const Value& one_arg(CallArgs& a, const char* test) {
  BoundArgs b(fmt::format("test '{}'", test), a, {"other"});
  if (!b.has(0)) eval_fail("test '{}' needs an argument", test);
  return *b.get(0);
}

void no_args(CallArgs& a, const char* test) { BoundArgs(fmt::format("test '{}'", test), a, {}); }

bool t_boolean(Interpreter&, const Value& v, CallArgs& a) {
  no_args(a, "boolean");
  return v.is_bool();
}
bool t_callable(Interpreter&, const Value& v, CallArgs& a) {
  no_args(a, "callable");
  // jinja2's Undefined defines __call__ (to fail), so Python finds it callable.
  return v.is_function() || v.is_undefined();
}
bool t_defined(Interpreter&, const Value& v, CallArgs& a) {
  no_args(a, "defined");
  return !v.is_undefined();
}
bool t_undefined(Interpreter&, const Value& v, CallArgs& a) {
  no_args(a, "undefined");
  return v.is_undefined();
}
bool t_divisibleby(Interpreter&, const Value& v, CallArgs& a) {
  const Value& n = one_arg(a, "divisibleby");
  return py::equal(py::arithmetic(py::BinaryOp::kMod, v, n), Value(0));
}
bool t_even(Interpreter&, const Value& v, CallArgs& a) {
  no_args(a, "even");
  return py::equal(py::arithmetic(py::BinaryOp::kMod, v, Value(2)), Value(0));
}
bool t_odd(Interpreter&, const Value& v, CallArgs& a) {
  no_args(a, "odd");
  return py::equal(py::arithmetic(py::BinaryOp::kMod, v, Value(2)), Value(1));
}
bool t_false(Interpreter&, const Value& v, CallArgs& a) {
  no_args(a, "false");
  return v.is_bool() && !v.as_bool();
}
bool t_true(Interpreter&, const Value& v, CallArgs& a) {
  no_args(a, "true");
  return v.is_bool() && v.as_bool();
}
bool t_filter(Interpreter&, const Value& v, CallArgs& a) {
  no_args(a, "filter");
  return v.is_string() && find_filter(v.as_string()) != nullptr;
}
bool t_test(Interpreter&, const Value& v, CallArgs& a) {
  no_args(a, "test");
  return v.is_string() && find_test(v.as_string()) != nullptr;
}
bool t_float(Interpreter&, const Value& v, CallArgs& a) {
  no_args(a, "float");
  return v.is_float();
}
bool t_integer(Interpreter&, const Value& v, CallArgs& a) {
  no_args(a, "integer");
  return v.is_int();
}
bool t_number(Interpreter&, const Value& v, CallArgs& a) {
  no_args(a, "number");
  return v.is_number();  // bool is a Number in Python
}
bool t_string(Interpreter&, const Value& v, CallArgs& a) {
  no_args(a, "string");
  return v.is_string();
}
bool t_mapping(Interpreter&, const Value& v, CallArgs& a) {
  no_args(a, "mapping");
  return v.is_dict();
}
bool t_none(Interpreter&, const Value& v, CallArgs& a) {
  no_args(a, "none");
  return v.is_none();
}
bool t_iterable(Interpreter&, const Value& v, CallArgs& a) {
  no_args(a, "iterable");
  return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined();
}
bool t_sequence(Interpreter&, const Value& v, CallArgs& a) {
  no_args(a, "sequence");
  return v.is_string() || v.is_list() || v.is_dict();
}
bool t_lower(Interpreter&, const Value& v, CallArgs& a) {
  no_args(a, "lower");
  const std::string s = py::str(v);
  return unicode::lower(s) == s && unicode::upper(s) != s;
}
bool t_upper(Interpreter&, const Value& v, CallArgs& a) {
  no_args(a, "upper");
  const std::string s = py::str(v);
  return unicode::upper(s) == s && unicode::lower(s) != s;
}
bool t_escaped(Interpreter&, const Value&, CallArgs& a) {
  no_args(a, "escaped");
  return false;  // nothing here is markupsafe.Markup
}
bool t_sameas(Interpreter&, const Value& v, CallArgs& a) {
  const Value& o = one_arg(a, "sameas");
  // Python's `is`: None, True and False are singletons and small ints are cached.
  if (v.is_none() || v.is_bool() || v.is_undefined()) return v.type() == o.type() && py::equal(v, o);
  if (v.is_int() && o.is_int())
    return v.as_int() == o.as_int() && v.as_int() >= -5 && v.as_int() <= 256;
  return v.identity() != nullptr && v.identity() == o.identity();
}
bool t_in(Interpreter&, const Value& v, CallArgs& a) { return py::contains(one_arg(a, "in"), v); }
bool t_eq(Interpreter&, const Value& v, CallArgs& a) { return py::equal(v, one_arg(a, "eq")); }
bool t_ne(Interpreter&, const Value& v, CallArgs& a) { return !py::equal(v, one_arg(a, "ne")); }
bool t_lt(Interpreter&, const Value& v, CallArgs& a) { return py::compare(v, one_arg(a, "lt")) < 0; }
bool t_le(Interpreter&, const Value& v, CallArgs& a) { return py::compare(v, one_arg(a, "le")) <= 0; }
bool t_gt(Interpreter&, const Value& v, CallArgs& a) { return py::compare(v, one_arg(a, "gt")) > 0; }
bool t_ge(Interpreter&, const Value& v, CallArgs& a) { return py::compare(v, one_arg(a, "ge")) >= 0; }

struct NamedTest {
  std::string_view name;
  TestFunction t;
};

constexpr NamedTest kTests[] = {
    {"!=", t_ne},          {"<", t_lt},
    {"<=", t_le},          {"==", t_eq},
    {">", t_gt},           {">=", t_ge},
    {"boolean", t_boolean}, {"callable", t_callable},
    {"defined", t_defined}, {"divisibleby", t_divisibleby},
    {"eq", t_eq},          {"equalto", t_eq},
    {"escaped", t_escaped}, {"even", t_even},
    {"false", t_false},    {"filter", t_filter},
    {"float", t_float},    {"ge", t_ge},
    {"greaterthan", t_gt}, {"gt", t_gt},
    {"in", t_in},          {"integer", t_integer},
    {"iterable", t_iterable}, {"le", t_le},
    {"lessthan", t_lt},    {"lower", t_lower},
    {"lt", t_lt},          {"mapping", t_mapping},
    {"ne", t_ne},          {"none", t_none},
    {"number", t_number},  {"odd", t_odd},
    {"sameas", t_sameas},  {"sequence", t_sequence},
    {"string", t_string},  {"test", t_test},
    {"true", t_true},      {"undefined", t_undefined},
    {"upper", t_upper},
};

}  // namespace

TestFunction find_test(std::string_view name) {
  for (const NamedTest& t : kTests)
    if (t.name == name) return t.t;
  return nullptr;
}

}  // namespace llm42::jinja
