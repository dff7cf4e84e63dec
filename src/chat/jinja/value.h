// The values a chat template computes with, modelled on the Python objects jinja2 handles when
// transformers renders a template: JSON input becomes dicts, lists, strings, ints, floats, bools
// and None; templates add tuples, namespaces, callables (macros, bound methods, globals) and
// jinja2's Undefined. Lists and dicts are immutable once built (the sandbox jinja2 runs in
// forbids changing them), so copies share them; a namespace is the one mutable object and is
// shared by reference, as in Python.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

namespace llm42::jinja {

class Value;
class Interpreter;

// Lists, dicts and namespaces nested deeper than this are refused when built: printing,
// comparing and freeing a value recurse over it, and a template can nest one level per loop
// iteration (`{% set ns.x = [ns.x] %}`).
constexpr int kMaxValueDepth = 256;

// Arguments of a call: positional, then keyword in the order written.
struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

using NativeFunction = std::function<Value(CallArgs&, Interpreter&)>;

struct Function {
  std::string name;  // for error messages: "macro 'm'", "method 'str.split'"
  NativeFunction call;
};

// A dict with string keys that keeps insertion order, as Python's dict does (tojson and loops
// over a dict follow it).
class Object {
 public:
  const Value* find(std::string_view key) const;
  // Inserts, or replaces the value in place keeping the key's position. Throws EvalError when
  // the object would nest deeper than kMaxValueDepth.
  void set(std::string key, Value value);
  // Levels of nesting, this object included (an upper bound once a value was replaced).
  int depth() const { return depth_; }
  // Whether a value in it is or holds a namespace (or did, before it was replaced).
  bool holds_namespace() const { return holds_namespace_; }
  // Defined after Value is complete (clang instantiates vector<pair<string, Value>> here).
  size_t size() const;
  bool empty() const;
  const std::vector<std::pair<std::string, Value>>& entries() const;

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::vector<std::pair<std::string, Value>> entries_;
  std::unordered_map<std::string, size_t, Hash, std::equal_to<>> index_;
  int depth_ = 1;
  bool holds_namespace_ = false;
};

struct List {
  std::vector<Value> items;
  bool is_tuple = false;  // prints as (a, b) instead of [a, b]
  int depth = 1;          // levels of nesting, this list included
  bool holds_namespace = false;
};

class Value {
 public:
  enum class Type { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kNamespace,
                    kFunction };

  // jinja2's Undefined: `hint` is the message an operation on it fails with ("'x' is
  // undefined", "'dict object' has no attribute 'y'").
  struct Undefined {
    std::string hint;
  };
  struct None {};

  Value() : v_(Undefined{}) {}
  static Value undefined(std::string hint) { return Value(Undefined{std::move(hint)}); }
  static Value none() { return Value(None{}); }
  Value(bool b) : v_(b) {}                                    // NOLINT: implicit like Python
  Value(int i) : v_(static_cast<int64_t>(i)) {}               // NOLINT
  Value(int64_t i) : v_(i) {}                                 // NOLINT
  Value(double d) : v_(d) {}                                  // NOLINT
  Value(std::string s) : v_(std::move(s)) {}                  // NOLINT
  Value(const char* s) : v_(std::string(s)) {}                // NOLINT
  // Throws EvalError when the list would nest deeper than kMaxValueDepth.
  static Value list(std::vector<Value> items, bool is_tuple = false);
  static Value dict(Object object);
  static Value make_namespace(Object attributes);
  static Value function(std::string name, NativeFunction call);
  // JSON as Python's json.loads gives it; objects keep their key order (nlohmann::json has
  // already sorted them; ordered_json has not).
  static Value from_json(const nlohmann::ordered_json& j);
  static Value from_json(const nlohmann::json& j);

  Type type() const { return static_cast<Type>(v_.index()); }
  bool is_undefined() const { return type() == Type::kUndefined; }
  bool is_none() const { return type() == Type::kNone; }
  bool is_bool() const { return type() == Type::kBool; }
  bool is_int() const { return type() == Type::kInt; }
  bool is_float() const { return type() == Type::kFloat; }
  // Python's int includes bool; so does every arithmetic rule here.
  bool is_integral() const { return is_int() || is_bool(); }
  bool is_number() const { return is_integral() || is_float(); }
  bool is_string() const { return type() == Type::kString; }
  bool is_list() const { return type() == Type::kList; }
  bool is_dict() const { return type() == Type::kDict; }
  bool is_namespace() const { return type() == Type::kNamespace; }
  bool is_function() const { return type() == Type::kFunction; }

  const std::string& undefined_hint() const { return std::get<Undefined>(v_).hint; }
  bool as_bool() const { return std::get<bool>(v_); }
  // The integer value of an int or bool.
  int64_t as_int() const { return is_bool() ? (as_bool() ? 1 : 0) : std::get<int64_t>(v_); }
  // The value of any number as a double.
  double as_double() const {
    return is_float() ? std::get<double>(v_) : static_cast<double>(as_int());
  }
  const std::string& as_string() const { return std::get<std::string>(v_); }
  const List& as_list() const { return *std::get<std::shared_ptr<const List>>(v_); }
  const std::vector<Value>& items() const { return as_list().items; }
  const Object& as_dict() const { return *std::get<std::shared_ptr<const Object>>(v_); }
  Object& namespace_attributes() const { return *std::get<std::shared_ptr<Object>>(v_); }
  const Function& as_function() const { return *std::get<std::shared_ptr<const Function>>(v_); }

  // Levels of nesting: 1 for a scalar, more for a list, dict or namespace holding others.
  int depth() const;
  // Whether this is a namespace or a list or dict holding one (at any depth). A namespace
  // attribute is never given such a value, so that no namespace contains itself.
  bool holds_namespace() const;

  // Identity of shared objects (Python's `is`), used by the `sameas` test.
  const void* identity() const;

 private:
  explicit Value(Undefined u) : v_(std::move(u)) {}
  explicit Value(None n) : v_(n) {}

  // The order matches Type.
  std::variant<Undefined, None, bool, int64_t, double, std::string, std::shared_ptr<const List>,
               std::shared_ptr<const Object>, std::shared_ptr<Object>,
               std::shared_ptr<const Function>>
      v_;
};

inline size_t Object::size() const { return entries_.size(); }
inline bool Object::empty() const { return entries_.empty(); }
inline const std::vector<std::pair<std::string, Value>>& Object::entries() const {
  return entries_;
}

}  // namespace llm42::jinja
