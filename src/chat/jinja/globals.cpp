// The global functions of a template: jinja2's `range`, `dict` and `namespace`, and the two that
// transformers adds, `raise_exception` and `strftime_now`.
#include <fmt/format.h>

#include <ctime>

#include "chat/jinja/builtins.h"
#include "chat/jinja/error.h"
#include "chat/jinja/python.h"
#include "chat/template_variables.h"
#include "util/error.h"

namespace llm42::jinja {

namespace {

// jinja2's sandbox refuses longer ranges (its MAX_RANGE).
constexpr int64_t kMaxRange = 100000;

Value range(CallArgs& a, Interpreter&) {
  if (!a.keyword.empty()) eval_fail("range() takes no keyword arguments");
  const size_t n = a.positional.size();
  if (n < 1 || n > 3) eval_fail("range expected 1 to 3 arguments, got {}", n);
  for (const Value& v : a.positional)
    if (!v.is_integral())
      eval_fail("'{}' object cannot be interpreted as an integer", py::type_name(v));
  const int64_t start = n == 1 ? 0 : a.positional[0].as_int();
  const int64_t stop = n == 1 ? a.positional[0].as_int() : a.positional[1].as_int();
  const int64_t step = n == 3 ? a.positional[2].as_int() : 1;
  if (step == 0) eval_fail("range() arg 3 must not be zero");
  // The length computed in floating point cannot overflow; the limit makes it exact enough.
  const double length = std::max(0.0, std::ceil((static_cast<double>(stop) - static_cast<double>(start)) /
                                                static_cast<double>(step)));
  if (length > static_cast<double>(kMaxRange))
    eval_fail("Range too big. The sandbox blocks ranges larger than MAX_RANGE ({}).", kMaxRange);
  std::vector<Value> out;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) out.emplace_back(i);
  return Value::list(std::move(out));
}

// dict(mapping_or_pairs, **kwargs), the construction `namespace(...)` and `dict(...)` share.
Object make_dict(CallArgs& a, const char* what) {
  if (a.positional.size() > 1)
    eval_fail("{} expected at most 1 positional argument, got {}", what, a.positional.size());
  Object o;
  if (!a.positional.empty()) {
    const Value& src = a.positional[0];
    if (src.is_dict()) {
      for (const auto& [k, v] : src.as_dict().entries()) o.set(k, v);
    } else {
      for (const Value& pair : py::iterate(src)) {
        const std::vector<Value> kv = py::iterate(pair);
        if (kv.size() != 2)
          eval_fail("{} sequence element has length {}; 2 is required", what, kv.size());
        if (!kv[0].is_string()) eval_fail("{} keys must be strings here", what);
        o.set(kv[0].as_string(), kv[1]);
      }
    }
  }
  for (auto& [k, v] : a.keyword) o.set(k, v);
  return o;
}

Value raise_exception(CallArgs& a, Interpreter&) {
  BoundArgs b("raise_exception()", a, {"message"});
  throw EvalError(b.has(0) ? py::str(*b.get(0)) : std::string("raise_exception() was called"));
}

Value strftime_now(CallArgs& a, Interpreter&) {
  BoundArgs b("strftime_now()", a, {"format"});
  if (!b.has(0) || !b.get(0)->is_string()) eval_fail("strftime_now() needs a format string");
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  const std::string& format = b.get(0)->as_string();
  if (format.empty()) return Value("");
  std::string buf(64 + format.size() * 8, '\0');
  const size_t n = std::strftime(buf.data(), buf.size(), format.c_str(), &local);
  buf.resize(n);
  return Value(std::move(buf));
}

}  // namespace

Object global_functions() {
  Object g;
  g.set("range", Value::function("range", range));
  g.set("dict", Value::function("dict", [](CallArgs& a, Interpreter&) {
          return Value::dict(make_dict(a, "dict"));
        }));
  g.set("namespace", Value::function("namespace", [](CallArgs& a, Interpreter&) {
          return Value::make_namespace(make_dict(a, "namespace"));
        }));
  g.set("raise_exception", Value::function("raise_exception", raise_exception));
  g.set("strftime_now", Value::function("strftime_now", strftime_now));
  LLM42_ASSERT(g.size() == std::size(kGlobalFunctionNames));
  for (std::string_view name : kGlobalFunctionNames) LLM42_ASSERT(g.find(name) != nullptr);
  return g;
}

}  // namespace llm42::jinja
