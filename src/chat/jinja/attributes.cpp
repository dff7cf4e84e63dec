// Attribute and item access, and the Python methods of strings and dicts that templates call.
#include <fmt/format.h>

#include <algorithm>
#include <optional>

#include "chat/jinja/builtins.h"
#include "chat/jinja/error.h"
#include "chat/jinja/python.h"
#include "chat/jinja/unicode.h"

namespace llm42::jinja {

namespace {

using Method = Value (*)(const Value& self, CallArgs& args);

const std::string* optional_string(const Value* v, const char* what) {
  if (v == nullptr || v->is_none()) return nullptr;
  if (!v->is_string()) eval_fail("{} must be None or str, not {}", what, py::type_name(*v));
  return &v->as_string();
}

long optional_int(const Value* v, long dflt, const char* what) {
  if (v == nullptr) return dflt;
  if (!v->is_integral()) eval_fail("{} must be an integer, not {}", what, py::type_name(*v));
  return static_cast<long>(v->as_int());
}

Value string_list(const std::vector<std::string>& parts) {
  std::vector<Value> out;
  out.reserve(parts.size());
  for (const std::string& p : parts) out.emplace_back(p);
  return Value::list(std::move(out));
}

Value strip_method(const Value& self, CallArgs& args, const char* name, bool left, bool right) {
  BoundArgs b(fmt::format("str.{}()", name), args, {"chars"});
  return Value(unicode::strip(self.as_string(), optional_string(b.get(0), "chars"), left, right));
}

// startswith / endswith: the argument is a string or a tuple of strings.
Value affix_method(const Value& self, CallArgs& args, const char* name, bool prefix) {
  BoundArgs b(fmt::format("str.{}()", name), args, {"affix"});
  if (!b.has(0)) eval_fail("str.{}() takes at least 1 argument (0 given)", name);
  const std::string& s = self.as_string();
  const auto matches = [&](const Value& v) {
    if (!v.is_string())
      eval_fail("{} first arg must be str or a tuple of str, not {}", name, py::type_name(v));
    const std::string& a = v.as_string();
    if (a.size() > s.size()) return false;
    return prefix ? s.compare(0, a.size(), a) == 0 : s.compare(s.size() - a.size(), a.size(), a) == 0;
  };
  const Value& arg = *b.get(0);
  if (arg.is_list() && arg.as_list().is_tuple)
    return Value(std::any_of(arg.items().begin(), arg.items().end(), matches));
  return Value(matches(arg));
}

Value split_method(const Value& self, CallArgs& args, const char* name, bool from_right) {
  BoundArgs b(fmt::format("str.{}()", name), args, {"sep", "maxsplit"});
  const std::string* sep = optional_string(b.get(0), "sep");
  const long maxsplit = optional_int(b.get(1), -1, "maxsplit");
  return string_list(from_right ? unicode::rsplit(self.as_string(), sep, maxsplit)
                                : unicode::split(self.as_string(), sep, maxsplit));
}

std::string require_string_arg(const Value* v, const char* method) {
  if (v == nullptr) eval_fail("{} is missing an argument", method);
  if (!v->is_string())
    eval_fail("{} argument must be str, not {}", method, py::type_name(*v));
  return v->as_string();
}

template <typename Pred>
bool all_chars(const std::string& s, Pred pred) {
  const std::u32string cps = unicode::decode(s);
  return !cps.empty() && std::all_of(cps.begin(), cps.end(), pred);
}

bool is_alpha(char32_t c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == 0xAA || c == 0xB5 ||
         c == 0xBA || (c >= 0xC0 && c <= 0xFF && c != 0xD7 && c != 0xF7);
}

std::optional<Value> string_method(const Value& self, const std::string& name) {
  static const std::vector<std::pair<std::string_view, Method>> kMethods = {
      {"strip", [](const Value& s, CallArgs& a) { return strip_method(s, a, "strip", true, true); }},
      {"lstrip",
       [](const Value& s, CallArgs& a) { return strip_method(s, a, "lstrip", true, false); }},
      {"rstrip",
       [](const Value& s, CallArgs& a) { return strip_method(s, a, "rstrip", false, true); }},
      {"split", [](const Value& s, CallArgs& a) { return split_method(s, a, "split", false); }},
      {"rsplit", [](const Value& s, CallArgs& a) { return split_method(s, a, "rsplit", true); }},
      {"startswith",
       [](const Value& s, CallArgs& a) { return affix_method(s, a, "startswith", true); }},
      {"endswith",
       [](const Value& s, CallArgs& a) { return affix_method(s, a, "endswith", false); }},
      {"upper",
       [](const Value& s, CallArgs& a) {
         BoundArgs("str.upper()", a, {});
         return Value(unicode::upper(s.as_string()));
       }},
      {"lower",
       [](const Value& s, CallArgs& a) {
         BoundArgs("str.lower()", a, {});
         return Value(unicode::lower(s.as_string()));
       }},
      {"title",
       [](const Value& s, CallArgs& a) {
         BoundArgs("str.title()", a, {});
         return Value(unicode::title(s.as_string()));
       }},
      {"capitalize",
       [](const Value& s, CallArgs& a) {
         BoundArgs("str.capitalize()", a, {});
         return Value(unicode::capitalize(s.as_string()));
       }},
      {"replace",
       [](const Value& s, CallArgs& a) {
         BoundArgs b("str.replace()", a, {"old", "new", "count"});
         return Value(unicode::replace(s.as_string(), require_string_arg(b.get(0), "str.replace()"),
                                       require_string_arg(b.get(1), "str.replace()"),
                                       optional_int(b.get(2), -1, "count")));
       }},
      {"find",
       [](const Value& s, CallArgs& a) {
         BoundArgs b("str.find()", a, {"sub"});
         return Value(static_cast<int64_t>(
             unicode::find(s.as_string(), require_string_arg(b.get(0), "str.find()"))));
       }},
      {"count",
       [](const Value& s, CallArgs& a) {
         BoundArgs b("str.count()", a, {"sub"});
         const std::string sub = require_string_arg(b.get(0), "str.count()");
         const std::string& text = s.as_string();
         if (sub.empty()) return Value(static_cast<int64_t>(unicode::length(text) + 1));
         int64_t n = 0;
         for (size_t pos = text.find(sub); pos != std::string::npos;
              pos = text.find(sub, pos + sub.size()))
           ++n;
         return Value(n);
       }},
      {"join",
       [](const Value& s, CallArgs& a) {
         BoundArgs b("str.join()", a, {"iterable"});
         if (!b.has(0)) eval_fail("str.join() takes exactly one argument (0 given)");
         std::string out;
         size_t i = 0;
         for (const Value& item : py::iterate(*b.get(0))) {
           if (!item.is_string())
             eval_fail("sequence item {}: expected str instance, {} found", i,
                       py::type_name(item));
           if (i++ > 0) out += s.as_string();
           out += item.as_string();
         }
         return Value(std::move(out));
       }},
      {"removeprefix",
       [](const Value& s, CallArgs& a) {
         BoundArgs b("str.removeprefix()", a, {"prefix"});
         const std::string p = require_string_arg(b.get(0), "str.removeprefix()");
         const std::string& text = s.as_string();
         return Value(text.compare(0, p.size(), p) == 0 ? text.substr(p.size()) : text);
       }},
      {"removesuffix",
       [](const Value& s, CallArgs& a) {
         BoundArgs b("str.removesuffix()", a, {"suffix"});
         const std::string p = require_string_arg(b.get(0), "str.removesuffix()");
         const std::string& text = s.as_string();
         const bool has = p.size() <= text.size() &&
                          text.compare(text.size() - p.size(), p.size(), p) == 0 && !p.empty();
         return Value(has ? text.substr(0, text.size() - p.size()) : text);
       }},
      {"splitlines",
       [](const Value& s, CallArgs& a) {
         BoundArgs b("str.splitlines()", a, {"keepends"});
         return string_list(unicode::splitlines(s.as_string(), b.has(0) && py::truthy(*b.get(0))));
       }},
      {"isspace",
       [](const Value& s, CallArgs& a) {
         BoundArgs("str.isspace()", a, {});
         return Value(all_chars(s.as_string(), unicode::is_space));
       }},
      {"isdigit",
       [](const Value& s, CallArgs& a) {
         BoundArgs("str.isdigit()", a, {});
         return Value(all_chars(s.as_string(), [](char32_t c) { return c >= '0' && c <= '9'; }));
       }},
      {"isalpha",
       [](const Value& s, CallArgs& a) {
         BoundArgs("str.isalpha()", a, {});
         return Value(all_chars(s.as_string(), is_alpha));
       }},
      {"isalnum",
       [](const Value& s, CallArgs& a) {
         BoundArgs("str.isalnum()", a, {});
         return Value(all_chars(s.as_string(),
                                [](char32_t c) { return is_alpha(c) || (c >= '0' && c <= '9'); }));
       }},
      {"islower",
       [](const Value& s, CallArgs& a) {
         BoundArgs("str.islower()", a, {});
         const std::string& t = s.as_string();
         return Value(unicode::lower(t) == t && unicode::upper(t) != t);
       }},
      {"isupper",
       [](const Value& s, CallArgs& a) {
         BoundArgs("str.isupper()", a, {});
         const std::string& t = s.as_string();
         return Value(unicode::upper(t) == t && unicode::lower(t) != t);
       }},
  };
  for (const auto& [n, m] : kMethods) {
    if (n != name) continue;
    const Method method = m;
    return Value::function("str." + name,
                           [self, method](CallArgs& a, Interpreter&) { return method(self, a); });
  }
  return std::nullopt;
}

Value dict_items(const Value& self) {
  std::vector<Value> out;
  for (const auto& [k, v] : self.as_dict().entries())
    out.push_back(Value::list({Value(k), v}, true));
  return Value::list(std::move(out));
}

std::optional<Value> dict_method(const Value& self, const std::string& name) {
  static const std::vector<std::pair<std::string_view, Method>> kMethods = {
      {"get",
       [](const Value& d, CallArgs& a) {
         BoundArgs b("dict.get()", a, {"key", "default"});
         if (!b.has(0)) eval_fail("get expected at least 1 argument, got 0");
         const std::optional<Value> v = py::subscript(d, *b.get(0));
         if (v) return *v;
         return b.has(1) ? *b.get(1) : Value::none();
       }},
      {"items",
       [](const Value& d, CallArgs& a) {
         BoundArgs("dict.items()", a, {});
         return dict_items(d);
       }},
      {"keys",
       [](const Value& d, CallArgs& a) {
         BoundArgs("dict.keys()", a, {});
         return Value::list(py::iterate(d));
       }},
      {"values",
       [](const Value& d, CallArgs& a) {
         BoundArgs("dict.values()", a, {});
         std::vector<Value> out;
         for (const auto& [_, v] : d.as_dict().entries()) out.push_back(v);
         return Value::list(std::move(out));
       }},
  };
  for (const auto& [n, m] : kMethods) {
    if (n != name) continue;
    const Method method = m;
    return Value::function("dict." + name,
                           [self, method](CallArgs& a, Interpreter&) { return method(self, a); });
  }
  return std::nullopt;
}

// Methods that would change a list or dict: ImmutableSandboxedEnvironment refuses them.
bool is_mutating(const Value& obj, const std::string& name) {
  static const std::vector<std::string_view> kList = {"append", "clear",   "extend", "insert",
                                                      "pop",    "remove",  "reverse", "sort"};
  static const std::vector<std::string_view> kDict = {"clear", "pop", "popitem", "setdefault",
                                                      "update"};
  const auto& names = obj.is_list() && !obj.as_list().is_tuple ? kList : kDict;
  if (!obj.is_dict() && !(obj.is_list() && !obj.as_list().is_tuple)) return false;
  return std::find(names.begin(), names.end(), name) != names.end();
}

// The Python attribute `name` of `obj` (a bound method), if it has one the interpreter knows.
std::optional<Value> python_attribute(const Value& obj, const std::string& name) {
  if (obj.is_string()) return string_method(obj, name);
  if (obj.is_dict()) return dict_method(obj, name);
  if (obj.is_namespace()) {
    const Value* v = obj.namespace_attributes().find(name);
    if (v != nullptr) return *v;
  }
  if (is_mutating(obj, name))
    return Value::undefined(fmt::format("access to attribute '{}' of '{}' object is unsafe.",
                                        name, py::type_name(obj)));
  return std::nullopt;
}

Value missing_attribute(const Value& obj, const std::string& name) {
  return Value::undefined(
      fmt::format("'{}' has no attribute '{}'", py::object_type_repr(obj), name));
}

}  // namespace

Value get_attribute(const Value& obj, const std::string& name) {
  py::require_defined(obj);
  if (std::optional<Value> a = python_attribute(obj, name)) return *a;
  if (std::optional<Value> v = py::subscript(obj, Value(name))) return *v;
  return missing_attribute(obj, name);
}

Value get_item(const Value& obj, const Value& key) {
  if (obj.is_undefined()) {
    if (key.is_string()) py::require_defined(obj);
    return Value::undefined(obj.undefined_hint());
  }
  if (std::optional<Value> v = py::subscript(obj, key)) return *v;
  if (key.is_string()) {
    if (std::optional<Value> a = python_attribute(obj, key.as_string())) return *a;
    return missing_attribute(obj, key.as_string());
  }
  return Value::undefined(
      fmt::format("{} has no element {}", py::object_type_repr(obj), py::repr(key)));
}

}  // namespace llm42::jinja
