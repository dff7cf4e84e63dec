#include "chat/jinja/python.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>

#include "chat/jinja/error.h"
#include "chat/jinja/unicode.h"

namespace llm42::jinja::py {

namespace {

// Repetition (`'ab' * n`, `[x] * n`) beyond this fails instead of exhausting memory; the
// interpreter's output limit is far smaller anyway.
constexpr size_t kMaxRepeatedBytes = size_t{256} << 20;

bool is_printable(char32_t c) {
  if (c < 0x20 || c == 0x7F) return false;
  if (c < 0x7F) return true;
  if (c <= 0xA0 || c == 0xAD) return false;  // C1 controls, NBSP (Zs), soft hyphen (Cf)
  if (c == 0x1680 || (c >= 0x2000 && c <= 0x200F) || (c >= 0x2028 && c <= 0x202F) ||
      (c >= 0x205F && c <= 0x2064) || (c >= 0x2066 && c <= 0x206F) || c == 0x3000 ||
      c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFB) || c == 0xFFFE || c == 0xFFFF)
    return false;
  if ((c >= 0xD800 && c <= 0xDFFF) || (c >= 0xE000 && c <= 0xF8FF) || c >= 0xF0000) return false;
  return true;
}

std::string string_repr(const std::string& s) {
  const bool has_single = s.find('\'') != std::string::npos;
  const bool has_double = s.find('"') != std::string::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (char32_t c : unicode::decode(s)) {
    if (c == static_cast<char32_t>(quote) || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (is_printable(c)) {
      unicode::append(out, c);
    } else if (c <= 0xFF) {
      out += fmt::format("\\x{:02x}", static_cast<uint32_t>(c));
    } else if (c <= 0xFFFF) {
      out += fmt::format("\\u{:04x}", static_cast<uint32_t>(c));
    } else {
      out += fmt::format("\\U{:08x}", static_cast<uint32_t>(c));
    }
  }
  out.push_back(quote);
  return out;
}

std::string sequence_repr(const Value& v) {
  const List& l = v.as_list();
  std::string out(1, l.is_tuple ? '(' : '[');
  for (size_t i = 0; i < l.items.size(); ++i) {
    if (i > 0) out += ", ";
    out += repr(l.items[i]);
  }
  if (l.is_tuple && l.items.size() == 1) out += ",";
  out.push_back(l.is_tuple ? ')' : ']');
  return out;
}

std::string dict_repr(const Object& o) {
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : o.entries()) {
    if (!first) out += ", ";
    first = false;
    out += string_repr(k);
    out += ": ";
    out += repr(v);
  }
  out += "}";
  return out;
}

[[noreturn]] void overflow() {
  eval_fail("integer overflow (the template interpreter's ints are 64-bit)");
}

int64_t checked_add(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) overflow();
  return r;
}

int64_t checked_sub(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_sub_overflow(a, b, &r)) overflow();
  return r;
}

int64_t checked_mul(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) overflow();
  return r;
}

int64_t floor_div(int64_t a, int64_t b) {
  if (b == 0) eval_fail("integer division or modulo by zero");
  if (a == std::numeric_limits<int64_t>::min() && b == -1) overflow();
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

int64_t floor_mod(int64_t a, int64_t b) {
  if (b == 0) eval_fail("integer division or modulo by zero");
  if (b == -1) return 0;
  int64_t r = a % b;
  if (r != 0 && ((r < 0) != (b < 0))) r += b;
  return r;
}

// Python's float divmod: the floor quotient and a remainder with the divisor's sign.
std::pair<double, double> float_divmod(double a, double b) {
  if (b == 0.0) eval_fail("float division by zero");
  double mod = std::fmod(a, b);
  double div = (a - mod) / b;
  if (mod != 0.0) {
    if ((b < 0) != (mod < 0)) {
      mod += b;
      div -= 1.0;
    }
  } else {
    mod = std::copysign(0.0, b);
  }
  double floordiv = 0.0;
  if (div != 0.0) {
    floordiv = std::floor(div);
    if (div - floordiv > 0.5) floordiv += 1.0;
  } else {
    floordiv = std::copysign(0.0, a / b);
  }
  return {floordiv, mod};
}

int64_t int_pow(int64_t base, int64_t exp) {
  int64_t result = 1;
  while (exp > 0) {
    if (exp & 1) result = checked_mul(result, base);
    exp >>= 1;
    if (exp > 0) base = checked_mul(base, base);
  }
  return result;
}

[[noreturn]] void unsupported(const char* op, const Value& a, const Value& b) {
  eval_fail("unsupported operand type(s) for {}: '{}' and '{}'", op, type_name(a), type_name(b));
}

Value repeat(const Value& seq, int64_t n) {
  if (n < 0) n = 0;
  if (seq.is_string()) {
    const std::string& s = seq.as_string();
    if (!s.empty() && static_cast<uint64_t>(n) > kMaxRepeatedBytes / s.size())
      eval_fail("string repetition too large ({} x {} bytes)", n, s.size());
    std::string out;
    out.reserve(s.size() * static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) out += s;
    return Value(std::move(out));
  }
  const List& l = seq.as_list();
  if (!l.items.empty() && static_cast<uint64_t>(n) > kMaxRepeatedBytes / 16 / l.items.size())
    eval_fail("list repetition too large ({} x {} items)", n, l.items.size());
  std::vector<Value> out;
  for (int64_t i = 0; i < n; ++i) out.insert(out.end(), l.items.begin(), l.items.end());
  return Value::list(std::move(out), l.is_tuple);
}

// Python's slice.indices: the visited positions of a sequence of `len` items.
std::vector<size_t> slice_positions(size_t len, std::optional<int64_t> start,
                                    std::optional<int64_t> stop, int64_t step) {
  const int64_t n = static_cast<int64_t>(len);
  const auto clamp = [&](std::optional<int64_t> x, int64_t dflt) -> int64_t {
    if (!x) return dflt;
    int64_t v = *x;
    if (v < 0) {
      v += n;
      if (v < 0) v = step < 0 ? -1 : 0;
    } else if (v >= n) {
      v = step < 0 ? n - 1 : n;
    }
    return v;
  };
  const int64_t lo = clamp(start, step < 0 ? n - 1 : 0);
  const int64_t hi = clamp(stop, step < 0 ? -1 : n);
  std::vector<size_t> out;
  if (step > 0) {
    for (int64_t i = lo; i < hi; i += step) out.push_back(static_cast<size_t>(i));
  } else {
    for (int64_t i = lo; i > hi; i += step) out.push_back(static_cast<size_t>(i));
  }
  return out;
}

int compare_lists(const List& a, const List& b) {
  const size_t n = std::min(a.items.size(), b.items.size());
  for (size_t i = 0; i < n; ++i) {
    if (equal(a.items[i], b.items[i])) continue;
    return compare(a.items[i], b.items[i]);
  }
  return a.items.size() < b.items.size() ? -1 : (a.items.size() > b.items.size() ? 1 : 0);
}

}  // namespace

void require_defined(const Value& v) {
  if (v.is_undefined()) throw EvalError(v.undefined_hint());
}

bool truthy(const Value& v) {
  switch (v.type()) {
    case Value::Type::kUndefined:
    case Value::Type::kNone:
      return false;
    case Value::Type::kBool:
      return v.as_bool();
    case Value::Type::kInt:
      return v.as_int() != 0;
    case Value::Type::kFloat:
      return v.as_double() != 0.0;
    case Value::Type::kString:
      return !v.as_string().empty();
    case Value::Type::kList:
      return !v.items().empty();
    case Value::Type::kDict:
      return !v.as_dict().empty();
    case Value::Type::kNamespace:
    case Value::Type::kFunction:
      return true;
  }
  return false;
}

std::string float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  if (d == 0.0) return std::signbit(d) ? "-0.0" : "0.0";
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::scientific);
  const std::string sci(buf, res.ptr);
  // sci is "[-]D[.DDD]e[+-]XX": split into sign, digits and decimal exponent.
  const bool negative = sci[0] == '-';
  const size_t e = sci.find('e');
  std::string digits;
  for (size_t i = negative ? 1 : 0; i < e; ++i)
    if (sci[i] != '.') digits.push_back(sci[i]);
  const int exp = std::stoi(sci.substr(e + 1));
  std::string out = negative ? "-" : "";
  if (exp >= -4 && exp < 16) {
    const int n = static_cast<int>(digits.size());
    if (exp < 0) {
      out += "0.";
      out.append(static_cast<size_t>(-exp - 1), '0');
      out += digits;
    } else if (exp + 1 >= n) {
      out += digits;
      out.append(static_cast<size_t>(exp + 1 - n), '0');
      out += ".0";
    } else {
      out += digits.substr(0, static_cast<size_t>(exp + 1));
      out += ".";
      out += digits.substr(static_cast<size_t>(exp + 1));
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) {
    out += ".";
    out += digits.substr(1);
  }
  out += fmt::format("e{}{:02d}", exp < 0 ? '-' : '+', std::abs(exp));
  return out;
}

std::string type_name(const Value& v) {
  switch (v.type()) {
    case Value::Type::kUndefined:
      return "Undefined";
    case Value::Type::kNone:
      return "NoneType";
    case Value::Type::kBool:
      return "bool";
    case Value::Type::kInt:
      return "int";
    case Value::Type::kFloat:
      return "float";
    case Value::Type::kString:
      return "str";
    case Value::Type::kList:
      return v.as_list().is_tuple ? "tuple" : "list";
    case Value::Type::kDict:
      return "dict";
    case Value::Type::kNamespace:
      return "Namespace";
    case Value::Type::kFunction:
      return "function";
  }
  return "object";
}

std::string object_type_repr(const Value& v) {
  if (v.is_none()) return "None";
  return type_name(v) + " object";
}

std::string str(const Value& v) {
  switch (v.type()) {
    case Value::Type::kUndefined:
      return "";
    case Value::Type::kString:
      return v.as_string();
    default:
      return repr(v);
  }
}

std::string repr(const Value& v) {
  switch (v.type()) {
    case Value::Type::kUndefined:
      return "Undefined";
    case Value::Type::kNone:
      return "None";
    case Value::Type::kBool:
      return v.as_bool() ? "True" : "False";
    case Value::Type::kInt:
      return std::to_string(v.as_int());
    case Value::Type::kFloat:
      return float_repr(v.as_double());
    case Value::Type::kString:
      return string_repr(v.as_string());
    case Value::Type::kList:
      return sequence_repr(v);
    case Value::Type::kDict:
      return dict_repr(v.as_dict());
    case Value::Type::kNamespace:
      return "<Namespace " + dict_repr(v.namespace_attributes()) + ">";
    case Value::Type::kFunction:
      return "<function " + v.as_function().name + ">";
  }
  return "";
}

bool equal(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_integral() && b.is_integral()) return a.as_int() == b.as_int();
    return a.as_double() == b.as_double();
  }
  if (a.type() != b.type()) return false;
  switch (a.type()) {
    case Value::Type::kUndefined:
    case Value::Type::kNone:
      return true;
    case Value::Type::kString:
      return a.as_string() == b.as_string();
    case Value::Type::kList: {
      const List& x = a.as_list();
      const List& y = b.as_list();
      if (x.is_tuple != y.is_tuple || x.items.size() != y.items.size()) return false;
      for (size_t i = 0; i < x.items.size(); ++i)
        if (!equal(x.items[i], y.items[i])) return false;
      return true;
    }
    case Value::Type::kDict: {
      const Object& x = a.as_dict();
      const Object& y = b.as_dict();
      if (x.size() != y.size()) return false;
      for (const auto& [k, v] : x.entries()) {
        const Value* other = y.find(k);
        if (other == nullptr || !equal(v, *other)) return false;
      }
      return true;
    }
    default:
      return a.identity() == b.identity();
  }
}

int compare(const Value& a, const Value& b) {
  require_defined(a);
  require_defined(b);
  if (a.is_number() && b.is_number()) {
    if (a.is_integral() && b.is_integral())
      return a.as_int() < b.as_int() ? -1 : (a.as_int() > b.as_int() ? 1 : 0);
    const double x = a.as_double();
    const double y = b.as_double();
    return x < y ? -1 : (x > y ? 1 : 0);
  }
  if (a.is_string() && b.is_string()) {
    // UTF-8 byte order is code point order, which is Python's.
    const int c = a.as_string().compare(b.as_string());
    return c < 0 ? -1 : (c > 0 ? 1 : 0);
  }
  if (a.is_list() && b.is_list() && a.as_list().is_tuple == b.as_list().is_tuple)
    return compare_lists(a.as_list(), b.as_list());
  eval_fail("'<' not supported between instances of '{}' and '{}'", type_name(a), type_name(b));
}

size_t length(const Value& v) {
  switch (v.type()) {
    case Value::Type::kUndefined:
      return 0;
    case Value::Type::kString:
      return unicode::length(v.as_string());
    case Value::Type::kList:
      return v.items().size();
    case Value::Type::kDict:
      return v.as_dict().size();
    default:
      eval_fail("object of type '{}' has no len()", type_name(v));
  }
}

std::vector<Value> iterate(const Value& v) {
  switch (v.type()) {
    case Value::Type::kUndefined:
      return {};
    case Value::Type::kList:
      return v.items();
    case Value::Type::kDict: {
      std::vector<Value> keys;
      keys.reserve(v.as_dict().size());
      for (const auto& [k, _] : v.as_dict().entries()) keys.emplace_back(k);
      return keys;
    }
    case Value::Type::kString: {
      std::vector<Value> chars;
      for (char32_t c : unicode::decode(v.as_string())) {
        std::string s;
        unicode::append(s, c);
        chars.emplace_back(std::move(s));
      }
      return chars;
    }
    default:
      eval_fail("'{}' object is not iterable", type_name(v));
  }
}

bool contains(const Value& container, const Value& item) {
  switch (container.type()) {
    case Value::Type::kUndefined:
      return false;
    case Value::Type::kString:
      if (!item.is_string())
        eval_fail("'in <string>' requires string as left operand, not {}", type_name(item));
      return container.as_string().find(item.as_string()) != std::string::npos;
    case Value::Type::kList:
      return std::any_of(container.items().begin(), container.items().end(),
                         [&](const Value& x) { return equal(x, item); });
    case Value::Type::kDict:
      return item.is_string() && container.as_dict().find(item.as_string()) != nullptr;
    default:
      eval_fail("argument of type '{}' is not iterable", type_name(container));
  }
}

std::optional<Value> subscript(const Value& container, const Value& key) {
  if (container.is_dict()) {
    if (!key.is_string()) return std::nullopt;
    const Value* v = container.as_dict().find(key.as_string());
    if (v == nullptr) return std::nullopt;
    return *v;
  }
  if (!key.is_integral()) return std::nullopt;
  int64_t i = key.as_int();
  if (container.is_list()) {
    const auto n = static_cast<int64_t>(container.items().size());
    if (i < 0) i += n;
    if (i < 0 || i >= n) return std::nullopt;
    return container.items()[static_cast<size_t>(i)];
  }
  if (container.is_string()) {
    const std::u32string s = unicode::decode(container.as_string());
    const auto n = static_cast<int64_t>(s.size());
    if (i < 0) i += n;
    if (i < 0 || i >= n) return std::nullopt;
    return Value(unicode::encode(s.substr(static_cast<size_t>(i), 1)));
  }
  return std::nullopt;
}

Value slice(const Value& container, std::optional<int64_t> start, std::optional<int64_t> stop,
            std::optional<int64_t> step) {
  const int64_t st = step.value_or(1);
  if (st == 0) eval_fail("slice step cannot be zero");
  if (container.is_string()) {
    const std::u32string s = unicode::decode(container.as_string());
    std::u32string out;
    for (size_t i : slice_positions(s.size(), start, stop, st)) out.push_back(s[i]);
    return Value(unicode::encode(out));
  }
  if (container.is_list()) {
    const List& l = container.as_list();
    std::vector<Value> out;
    for (size_t i : slice_positions(l.items.size(), start, stop, st)) out.push_back(l.items[i]);
    return Value::list(std::move(out), l.is_tuple);
  }
  require_defined(container);
  eval_fail("'{}' object is not subscriptable", type_name(container));
}

Value arithmetic(BinaryOp op, const Value& a, const Value& b) {
  require_defined(a);
  require_defined(b);
  const bool ints = a.is_integral() && b.is_integral();
  const bool nums = a.is_number() && b.is_number();
  switch (op) {
    case BinaryOp::kAdd:
      if (ints) return Value(checked_add(a.as_int(), b.as_int()));
      if (nums) return Value(a.as_double() + b.as_double());
      if (a.is_string() && b.is_string()) return Value(a.as_string() + b.as_string());
      if (a.is_list() && b.is_list() && a.as_list().is_tuple == b.as_list().is_tuple) {
        std::vector<Value> out = a.items();
        out.insert(out.end(), b.items().begin(), b.items().end());
        return Value::list(std::move(out), a.as_list().is_tuple);
      }
      if (a.is_string())
        eval_fail("can only concatenate str (not \"{}\") to str", type_name(b));
      if (a.is_list() && !a.as_list().is_tuple)
        eval_fail("can only concatenate list (not \"{}\") to list", type_name(b));
      unsupported("+", a, b);
    case BinaryOp::kSub:
      if (ints) return Value(checked_sub(a.as_int(), b.as_int()));
      if (nums) return Value(a.as_double() - b.as_double());
      unsupported("-", a, b);
    case BinaryOp::kMul:
      if (ints) return Value(checked_mul(a.as_int(), b.as_int()));
      if (nums) return Value(a.as_double() * b.as_double());
      if ((a.is_string() || a.is_list()) && b.is_integral()) return repeat(a, b.as_int());
      if ((b.is_string() || b.is_list()) && a.is_integral()) return repeat(b, a.as_int());
      unsupported("*", a, b);
    case BinaryOp::kDiv:
      if (nums) {
        if (b.as_double() == 0.0) eval_fail("{}division by zero", ints ? "" : "float ");
        return Value(a.as_double() / b.as_double());
      }
      unsupported("/", a, b);
    case BinaryOp::kFloorDiv:
      if (ints) return Value(floor_div(a.as_int(), b.as_int()));
      if (nums) return Value(float_divmod(a.as_double(), b.as_double()).first);
      unsupported("//", a, b);
    case BinaryOp::kMod:
      if (ints) return Value(floor_mod(a.as_int(), b.as_int()));
      if (nums) return Value(float_divmod(a.as_double(), b.as_double()).second);
      if (a.is_string()) eval_fail("printf-style '%' formatting of strings is not supported");
      unsupported("%", a, b);
    case BinaryOp::kPow:
      if (ints && b.as_int() >= 0) return Value(int_pow(a.as_int(), b.as_int()));
      if (nums) {
        if (a.as_double() == 0.0 && b.as_double() < 0)
          eval_fail("0.0 cannot be raised to a negative power");
        return Value(std::pow(a.as_double(), b.as_double()));
      }
      unsupported("** or pow()", a, b);
  }
  return Value();
}

Value negate(const Value& v) {
  require_defined(v);
  if (v.is_integral()) {
    if (v.as_int() == std::numeric_limits<int64_t>::min()) overflow();
    return Value(-v.as_int());
  }
  if (v.is_float()) return Value(-v.as_double());
  eval_fail("bad operand type for unary -: '{}'", type_name(v));
}

Value unary_plus(const Value& v) {
  require_defined(v);
  if (v.is_integral()) return Value(v.as_int());
  if (v.is_float()) return v;
  eval_fail("bad operand type for unary +: '{}'", type_name(v));
}

}  // namespace llm42::jinja::py
