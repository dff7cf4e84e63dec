// The filters: jinja2 3.1's built-in filters that chat templates use, with transformers' own
// `tojson`. Each follows jinja2's Python definition, including its handling of Undefined.
#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <string_view>

#include "chat/jinja/builtins.h"
#include "chat/jinja/error.h"
#include "chat/jinja/interpreter.h"
#include "chat/jinja/json.h"
#include "chat/jinja/python.h"
#include "chat/jinja/unicode.h"

namespace llm42::jinja {

namespace {

Value text(std::string s) { return Value(std::move(s)); }

// jinja2's make_attrgetter: "a.b.0" looks up item a, then b, then index 0 (digits become ints).
Value get_path(const Value& item, const Value& attribute) {
  if (!attribute.is_string()) return get_item(item, attribute);
  Value v = item;
  const std::string& path = attribute.as_string();
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    const std::string part = path.substr(start, dot == std::string::npos ? dot : dot - start);
    const bool digits = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) {
      return c >= '0' && c <= '9';
    });
    v = digits ? get_item(v, Value(static_cast<int64_t>(std::stoll(part)))) : get_item(v, part);
    if (dot == std::string::npos) return v;
    start = dot + 1;
  }
}

// The sort key of an item for sort, unique, dictsort, min and max.
Value sort_key(const Value& item, const Value* attribute, bool case_sensitive) {
  Value key = attribute != nullptr && !attribute->is_none() ? get_path(item, *attribute) : item;
  if (!case_sensitive && key.is_string()) return Value(unicode::lower(key.as_string()));
  return key;
}

// Python's int(str, base): surrounding whitespace, a sign, underscores between digits, and for
// base 16/8/2 an optional prefix.
std::optional<int64_t> parse_int(const std::string& s, int base) {
  std::string t = unicode::strip(s, nullptr, true, true);
  bool negative = false;
  size_t i = 0;
  if (i < t.size() && (t[i] == '+' || t[i] == '-')) negative = t[i++] == '-';
  if (t.size() >= i + 2 && t[i] == '0') {
    const char p = static_cast<char>(std::tolower(static_cast<unsigned char>(t[i + 1])));
    if ((p == 'x' && base == 16) || (p == 'o' && base == 8) || (p == 'b' && base == 2)) i += 2;
  }
  std::string digits;
  for (; i < t.size(); ++i) {
    if (t[i] == '_' && !digits.empty() && i + 1 < t.size() && t[i + 1] != '_') continue;
    digits.push_back(t[i]);
  }
  if (digits.empty()) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(digits.c_str(), &end, base);
  if (errno != 0 || *end != '\0' || digits[0] == '+' || digits[0] == '-' || digits[0] == ' ')
    return std::nullopt;
  return negative ? -v : v;
}

// Python's float(str).
std::optional<double> parse_float(const std::string& s) {
  std::string t = unicode::strip(s, nullptr, true, true);
  std::string clean;
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i] == '_') {
      const bool between = i > 0 && i + 1 < t.size() && std::isdigit(static_cast<unsigned char>(t[i - 1])) &&
                           std::isdigit(static_cast<unsigned char>(t[i + 1]));
      if (!between) return std::nullopt;
      continue;
    }
    clean.push_back(t[i]);
  }
  if (clean.empty()) return std::nullopt;
  const std::string lower = unicode::lower(clean);
  const std::string_view body = std::string_view(lower).substr(lower[0] == '+' || lower[0] == '-');
  if (body == "inf" || body == "infinity" || body == "nan") {
    const double v = body == "nan" ? NAN : INFINITY;
    return lower[0] == '-' ? -v : v;
  }
  if (body.find_first_not_of("0123456789.e+-") != std::string_view::npos) return std::nullopt;
  char* end = nullptr;
  const double v = std::strtod(clean.c_str(), &end);
  if (*end != '\0') return std::nullopt;
  return v;
}

// Python's round(x, ndigits) for a float: round-half-even on the exact binary value, which
// printf's correctly rounded conversion gives.
double round_float(double x, int64_t ndigits) {
  if (!std::isfinite(x)) return x;
  if (ndigits > 300) return x;
  if (ndigits < -300) return 0.0 * x;
  if (ndigits >= 0) {
    const std::string s = fmt::format("{:.{}f}", x, ndigits);
    return std::strtod(s.c_str(), nullptr);
  }
  const double scale = std::pow(10.0, static_cast<double>(-ndigits));
  const double y = x / scale;
  double r = std::nearbyint(y);
  if (std::fabs(y - std::trunc(y)) == 0.5) r = 2.0 * std::nearbyint(y / 2.0);
  return r * scale;
}

// Python's round(int, ndigits): the int itself for ndigits >= 0, else rounded half-to-even to a
// multiple of 10**-ndigits.
int64_t round_int(int64_t x, int64_t ndigits) {
  if (ndigits >= 0) return x;
  if (ndigits < -18) return 0;
  int64_t p = 1;
  for (int64_t i = 0; i < -ndigits; ++i) p *= 10;
  int64_t q = x / p;
  int64_t r = x % p;
  if (r < 0) {
    r += p;
    --q;
  }
  if (2 * r > p || (2 * r == p && q % 2 != 0)) ++q;
  return py::arithmetic(py::BinaryOp::kMul, Value(q), Value(p)).as_int();
}

std::string do_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

// select / reject / selectattr / rejectattr.
Value select_items(Interpreter& in, const Value& seq, CallArgs& args, bool by_attribute,
                   bool keep_matching, const char* what) {
  if (!args.keyword.empty()) eval_fail("filter '{}' takes no keyword arguments", what);
  size_t off = 0;
  Value attribute;
  if (by_attribute) {
    if (args.positional.empty()) eval_fail("filter '{}' needs an attribute name", what);
    attribute = args.positional[0];
    off = 1;
  }
  std::string test;
  CallArgs test_args;
  if (args.positional.size() > off) {
    if (!args.positional[off].is_string()) eval_fail("filter '{}' needs a test name", what);
    test = args.positional[off].as_string();
    test_args.positional.assign(args.positional.begin() + static_cast<long>(off) + 1,
                                args.positional.end());
  }
  std::vector<Value> out;
  for (const Value& item : py::iterate(seq)) {
    const Value subject = by_attribute ? get_path(item, attribute) : item;
    bool result = false;
    if (test.empty()) {
      result = py::truthy(subject);
    } else {
      CallArgs a = test_args;
      result = in.apply_test(test, subject, a);
    }
    if (result == keep_matching) out.push_back(item);
  }
  return Value::list(std::move(out));
}

Value f_abs(Interpreter&, const Value& v, CallArgs& a) {
  BoundArgs("filter 'abs'", a, {});
  if (v.is_integral()) return v.as_int() < 0 ? py::negate(v) : Value(v.as_int());
  if (v.is_float()) return Value(std::fabs(v.as_double()));
  py::require_defined(v);
  eval_fail("bad operand type for abs(): '{}'", py::type_name(v));
}

Value f_capitalize(Interpreter&, const Value& v, CallArgs& a) {
  BoundArgs("filter 'capitalize'", a, {});
  return text(unicode::capitalize(py::str(v)));
}

Value f_default(Interpreter&, const Value& v, CallArgs& a) {
  BoundArgs b("filter 'default'", a, {"default_value", "boolean"});
  const bool boolean = b.has(1) && py::truthy(*b.get(1));
  if (v.is_undefined() || (boolean && !py::truthy(v))) return b.has(0) ? *b.get(0) : text("");
  return v;
}

Value f_dictsort(Interpreter&, const Value& v, CallArgs& a) {
  BoundArgs b("filter 'dictsort'", a, {"case_sensitive", "by", "reverse"});
  if (!v.is_dict()) eval_fail("You can only sort by either 'key' or 'value' of a mapping");
  const bool cs = b.has(0) && py::truthy(*b.get(0));
  const std::string by = b.has(1) ? py::str(*b.get(1)) : "key";
  if (by != "key" && by != "value") eval_fail("You can only sort by either 'key' or 'value'");
  const bool reverse = b.has(2) && py::truthy(*b.get(2));
  std::vector<Value> items;
  for (const auto& [k, val] : v.as_dict().entries()) items.push_back(Value::list({k, val}, true));
  const size_t pos = by == "key" ? 0 : 1;
  std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
    const Value kx = sort_key(x.items()[pos], nullptr, cs);
    const Value ky = sort_key(y.items()[pos], nullptr, cs);
    return reverse ? py::compare(ky, kx) < 0 : py::compare(kx, ky) < 0;
  });
  return Value::list(std::move(items));
}

Value f_escape(Interpreter&, const Value& v, CallArgs& a) {
  BoundArgs("filter 'escape'", a, {});
  return text(do_escape(py::str(v)));
}

Value f_first(Interpreter&, const Value& v, CallArgs& a) {
  BoundArgs("filter 'first'", a, {});
  const std::vector<Value> items = py::iterate(v);
  if (items.empty()) return Value::undefined("No first item, sequence was empty.");
  return items.front();
}

Value f_last(Interpreter&, const Value& v, CallArgs& a) {
  BoundArgs("filter 'last'", a, {});
  if (v.is_undefined()) eval_fail("'Undefined' object is not reversible");
  const std::vector<Value> items = py::iterate(v);
  if (items.empty()) return Value::undefined("No last item, sequence was empty.");
  return items.back();
}

Value f_float(Interpreter&, const Value& v, CallArgs& a) {
  BoundArgs b("filter 'float'", a, {"default"});
  const Value dflt = b.has(0) ? *b.get(0) : Value(0.0);
  if (v.is_number()) return Value(v.as_double());
  if (v.is_string()) {
    const std::optional<double> d = parse_float(v.as_string());
    return d ? Value(*d) : dflt;
  }
  return dflt;
}

Value f_int(Interpreter&, const Value& v, CallArgs& a) {
  BoundArgs b("filter 'int'", a, {"default", "base"});
  const Value dflt = b.has(0) ? *b.get(0) : Value(0);
  const int base = b.has(1) && b.get(1)->is_integral() ? static_cast<int>(b.get(1)->as_int()) : 10;
  if (v.is_integral()) return Value(v.as_int());
  if (v.is_float()) {
    const double d = v.as_double();
    if (!std::isfinite(d) || std::fabs(d) >= 9.2e18) return dflt;
    return Value(static_cast<int64_t>(std::trunc(d)));
  }
  if (v.is_string()) {
    if (const std::optional<int64_t> i = parse_int(v.as_string(), base)) return Value(*i);
    const std::optional<double> d = parse_float(v.as_string());
    if (d && std::isfinite(*d) && std::fabs(*d) < 9.2e18)
      return Value(static_cast<int64_t>(std::trunc(*d)));
  }
  return dflt;
}

Value f_indent(Interpreter&, const Value& v, CallArgs& a) {
  BoundArgs b("filter 'indent'", a, {"width", "first", "blank"});
  std::string indention = "    ";
  if (b.has(0)) {
    const Value& w = *b.get(0);
    if (!w.is_string() && !w.is_integral()) eval_fail("indent width must be a str or an int");
    indention = w.is_string() ? w.as_string()
                              : std::string(static_cast<size_t>(std::max<int64_t>(0, w.as_int())), ' ');
  }
  const bool first = b.has(1) && py::truthy(*b.get(1));
  const bool blank = b.has(2) && py::truthy(*b.get(2));
  // jinja2 appends a newline before splitting, so that a trailing newline survives.
  const std::vector<std::string> lines = unicode::splitlines(py::str(v) + "\n", false);
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i > 0) {
      out += "\n";
      if (blank || !lines[i].empty()) out += indention;
    }
    out += lines[i];
  }
  if (first) out = indention + out;
  return text(std::move(out));
}

Value f_items(Interpreter&, const Value& v, CallArgs& a) {
  BoundArgs("filter 'items'", a, {});
  if (v.is_undefined()) return Value::list({});
  if (!v.is_dict()) eval_fail("Can only get item pairs from a mapping.");
  std::vector<Value> out;
  for (const auto& [k, val] : v.as_dict().entries()) out.push_back(Value::list({k, val}, true));
  return Value::list(std::move(out));
}

Value f_join(Interpreter&, const Value& v, CallArgs& a) {
  BoundArgs b("filter 'join'", a, {"d", "attribute"});
  const std::string sep = b.has(0) ? py::str(*b.get(0)) : "";
  std::string out;
  bool first = true;
  for (const Value& item : py::iterate(v)) {
    if (!first) out += sep;
    first = false;
    out += py::str(b.has(1) && !b.get(1)->is_none() ? get_path(item, *b.get(1)) : item);
  }
  return text(std::move(out));
}

Value f_length(Interpreter&, const Value& v, CallArgs& a) {
  BoundArgs("filter 'length'", a, {});
  return Value(static_cast<int64_t>(py::length(v)));
}

Value f_list(Interpreter&, const Value& v, CallArgs& a) {
  BoundArgs("filter 'list'", a, {});
  return Value::list(py::iterate(v));
}

Value f_lower(Interpreter&, const Value& v, CallArgs& a) {
  BoundArgs("filter 'lower'", a, {});
  return text(unicode::lower(py::str(v)));
}

Value f_upper(Interpreter&, const Value& v, CallArgs& a) {
  BoundArgs("filter 'upper'", a, {});
  return text(unicode::upper(py::str(v)));
}

Value f_map(Interpreter& in, const Value& v, CallArgs& a) {
  std::vector<Value> out;
  if (a.positional.empty()) {
    BoundArgs b("filter 'map'", a, {"attribute", "default"});
    if (!b.has(0)) eval_fail("map requires a filter argument");
    for (const Value& item : py::iterate(v)) {
      Value x = get_path(item, *b.get(0));
      if (x.is_undefined() && b.has(1) && !b.get(1)->is_none()) x = *b.get(1);
      out.push_back(std::move(x));
    }
    return Value::list(std::move(out));
  }
  if (!a.positional[0].is_string()) eval_fail("map needs a filter name");
  const std::string filter = a.positional[0].as_string();
  CallArgs rest;
  rest.positional.assign(a.positional.begin() + 1, a.positional.end());
  rest.keyword = a.keyword;
  for (const Value& item : py::iterate(v)) {
    CallArgs call = rest;
    out.push_back(in.apply_filter(filter, item, call));
  }
  return Value::list(std::move(out));
}

Value min_max(const Value& v, CallArgs& a, bool want_max, const char* what) {
  BoundArgs b(what, a, {"case_sensitive", "attribute"});
  const bool cs = b.has(0) && py::truthy(*b.get(0));
  const std::vector<Value> items = py::iterate(v);
  if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
  size_t best = 0;
  for (size_t i = 1; i < items.size(); ++i) {
    const int c = py::compare(sort_key(items[i], b.get(1), cs), sort_key(items[best], b.get(1), cs));
    if (want_max ? c > 0 : c < 0) best = i;
  }
  return items[best];
}

Value f_max(Interpreter&, const Value& v, CallArgs& a) { return min_max(v, a, true, "filter 'max'"); }
Value f_min(Interpreter&, const Value& v, CallArgs& a) { return min_max(v, a, false, "filter 'min'"); }

Value f_reject(Interpreter& in, const Value& v, CallArgs& a) {
  return select_items(in, v, a, false, false, "reject");
}
Value f_rejectattr(Interpreter& in, const Value& v, CallArgs& a) {
  return select_items(in, v, a, true, false, "rejectattr");
}
Value f_select(Interpreter& in, const Value& v, CallArgs& a) {
  return select_items(in, v, a, false, true, "select");
}
Value f_selectattr(Interpreter& in, const Value& v, CallArgs& a) {
  return select_items(in, v, a, true, true, "selectattr");
}

Value f_replace(Interpreter&, const Value& v, CallArgs& a) {
  BoundArgs b("filter 'replace'", a, {"old", "new", "count"});
  if (!b.has(0) || !b.has(1)) eval_fail("filter 'replace' needs the old and the new text");
  long count = -1;
  if (b.has(2) && !b.get(2)->is_none()) {
    if (!b.get(2)->is_integral()) eval_fail("filter 'replace': count must be an integer");
    count = static_cast<long>(b.get(2)->as_int());
  }
  return text(unicode::replace(py::str(v), py::str(*b.get(0)), py::str(*b.get(1)), count));
}

Value f_reverse(Interpreter&, const Value& v, CallArgs& a) {
  BoundArgs("filter 'reverse'", a, {});
  if (v.is_string()) return py::slice(v, std::nullopt, std::nullopt, -1);
  std::vector<Value> items = py::iterate(v);
  std::reverse(items.begin(), items.end());
  return Value::list(std::move(items));
}

Value f_round(Interpreter&, const Value& v, CallArgs& a) {
  BoundArgs b("filter 'round'", a, {"precision", "method"});
  const int64_t precision = b.has(0) ? b.get(0)->as_int() : 0;
  const std::string method = b.has(1) ? py::str(*b.get(1)) : "common";
  if (method != "common" && method != "ceil" && method != "floor")
    eval_fail("method must be common, ceil or floor");
  py::require_defined(v);
  if (!v.is_number()) eval_fail("type {} doesn't define __round__ method", py::type_name(v));
  if (method == "common") {
    if (v.is_integral()) return Value(round_int(v.as_int(), precision));
    return Value(round_float(v.as_double(), precision));
  }
  const double scale = std::pow(10.0, static_cast<double>(precision));
  const double x = v.as_double() * scale;
  return Value((method == "ceil" ? std::ceil(x) : std::floor(x)) / scale);
}

Value f_safe(Interpreter&, const Value& v, CallArgs& a) {
  BoundArgs("filter 'safe'", a, {});
  return text(py::str(v));
}

Value f_sort(Interpreter&, const Value& v, CallArgs& a) {
  BoundArgs b("filter 'sort'", a, {"reverse", "case_sensitive", "attribute"});
  const bool reverse = b.has(0) && py::truthy(*b.get(0));
  const bool cs = b.has(1) && py::truthy(*b.get(1));
  std::vector<Value> items = py::iterate(v);
  std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
    const Value kx = sort_key(x, b.get(2), cs);
    const Value ky = sort_key(y, b.get(2), cs);
    return reverse ? py::compare(ky, kx) < 0 : py::compare(kx, ky) < 0;
  });
  return Value::list(std::move(items));
}

Value f_string(Interpreter&, const Value& v, CallArgs& a) {
  BoundArgs("filter 'string'", a, {});
  return text(py::str(v));
}

Value f_sum(Interpreter&, const Value& v, CallArgs& a) {
  BoundArgs b("filter 'sum'", a, {"attribute", "start"});
  Value total = b.has(1) ? *b.get(1) : Value(0);
  for (const Value& item : py::iterate(v)) {
    const Value x = b.has(0) && !b.get(0)->is_none() ? get_path(item, *b.get(0)) : item;
    total = py::arithmetic(py::BinaryOp::kAdd, total, x);
  }
  return total;
}

Value f_title(Interpreter&, const Value& v, CallArgs& a) {
  BoundArgs("filter 'title'", a, {});
  // jinja2 capitalizes each word, a word starting after '-', whitespace, or an opening bracket.
  std::u32string out;
  bool word_start = true;
  for (char32_t c : unicode::decode(py::str(v))) {
    const bool separator = c == '-' || c == '(' || c == '{' || c == '[' || c == '<' ||
                           unicode::is_space(c);
    std::string one;
    unicode::append(one, c);
    if (separator) {
      out.push_back(c);
    } else {
      out += unicode::decode(word_start ? unicode::upper(one) : unicode::lower(one));
    }
    word_start = separator;
  }
  return text(unicode::encode(out));
}

Value f_tojson(Interpreter&, const Value& v, CallArgs& a) {
  BoundArgs b("filter 'tojson'", a, {"ensure_ascii", "indent", "separators", "sort_keys"});
  JsonDumpOptions o;
  o.ensure_ascii = b.has(0) && py::truthy(*b.get(0));
  if (b.has(1) && !b.get(1)->is_none()) {
    const Value& indent = *b.get(1);
    if (indent.is_string()) {
      o.indent = indent.as_string();
    } else if (indent.is_integral()) {
      o.indent = std::string(static_cast<size_t>(std::max<int64_t>(0, indent.as_int())), ' ');
    } else {
      eval_fail("tojson: indent must be None, an int or a str, not {}", py::type_name(indent));
    }
    o.item_separator = ",";
  }
  if (b.has(2) && !b.get(2)->is_none()) {
    const Value& sep = *b.get(2);
    if (!sep.is_list() || sep.items().size() != 2 || !sep.items()[0].is_string() ||
        !sep.items()[1].is_string())
      eval_fail("tojson: separators must be a pair of strings");
    o.item_separator = sep.items()[0].as_string();
    o.key_separator = sep.items()[1].as_string();
  }
  o.sort_keys = b.has(3) && py::truthy(*b.get(3));
  return text(json_dumps(v, o));
}

Value f_trim(Interpreter&, const Value& v, CallArgs& a) {
  BoundArgs b("filter 'trim'", a, {"chars"});
  const Value* chars = b.get(0);
  if (chars != nullptr && !chars->is_none() && !chars->is_string())
    eval_fail("strip arg must be None or str");
  return text(unicode::strip(py::str(v), chars != nullptr && chars->is_string() ? &chars->as_string()
                                                                                 : nullptr,
                             true, true));
}

Value f_unique(Interpreter&, const Value& v, CallArgs& a) {
  BoundArgs b("filter 'unique'", a, {"case_sensitive", "attribute"});
  const bool cs = b.has(0) && py::truthy(*b.get(0));
  std::vector<Value> out;
  std::vector<Value> seen;
  for (const Value& item : py::iterate(v)) {
    const Value key = sort_key(item, b.get(1), cs);
    if (std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return py::equal(s, key); }))
      continue;
    seen.push_back(key);
    out.push_back(item);
  }
  return Value::list(std::move(out));
}

struct NamedFilter {
  std::string_view name;
  FilterFunction f;
};

constexpr NamedFilter kFilters[] = {
    {"abs", f_abs},
    {"capitalize", f_capitalize},
    {"count", f_length},
    {"d", f_default},
    {"default", f_default},
    {"dictsort", f_dictsort},
    {"e", f_escape},
    {"escape", f_escape},
    {"first", f_first},
    {"float", f_float},
    {"indent", f_indent},
    {"int", f_int},
    {"items", f_items},
    {"join", f_join},
    {"last", f_last},
    {"length", f_length},
    {"list", f_list},
    {"lower", f_lower},
    {"map", f_map},
    {"max", f_max},
    {"min", f_min},
    {"reject", f_reject},
    {"rejectattr", f_rejectattr},
    {"replace", f_replace},
    {"reverse", f_reverse},
    {"round", f_round},
    {"safe", f_safe},
    {"select", f_select},
    {"selectattr", f_selectattr},
    {"sort", f_sort},
    {"string", f_string},
    {"sum", f_sum},
    {"title", f_title},
    {"tojson", f_tojson},
    {"trim", f_trim},
    {"unique", f_unique},
    {"upper", f_upper},
};

}  // namespace

FilterFunction find_filter(std::string_view name) {
  for (const NamedFilter& f : kFilters)
    if (f.name == name) return f.f;
  return nullptr;
}

}  // namespace llm42::jinja
