// What a template can use without defining it: filters (`x | trim`), tests (`x is defined`),
// attributes and methods of values (`s.startswith('a')`, `d.items()`), and the global functions
// (`range`, `namespace`, `dict`, `raise_exception`, `strftime_now`). Each follows jinja2 3.1 with
// transformers' additions (its `tojson`, `raise_exception`, `strftime_now`); the lists of names
// are in the .cpp files and docs/chat-templates.md.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "chat/jinja/value.h"

namespace llm42::jinja {

using FilterFunction = Value (*)(Interpreter&, const Value& operand, CallArgs& args);
using TestFunction = bool (*)(Interpreter&, const Value& operand, CallArgs& args);

// Null when there is no such filter or test.
FilterFunction find_filter(std::string_view name);
TestFunction find_test(std::string_view name);

// `obj.name` as jinja2's sandboxed environment resolves it: a Python attribute of the object
// (a method, bound to it), else its item `name`, else an Undefined whose hint names both.
// Methods that would change a list or dict are refused as the immutable sandbox refuses them.
// Throws the hint of an Undefined `obj`.
Value get_attribute(const Value& obj, const std::string& name);
// `obj[key]`: the item, else (for a string key) the attribute, else an Undefined.
Value get_item(const Value& obj, const Value& key);

// The global functions, to put in a template's root scope.
Object global_functions();

// Binds call arguments to parameter names as Python does: positional first, then keywords.
// Throws EvalError naming `what` (e.g. "filter 'join'") for unknown keywords, too many
// positional arguments, or an argument given twice.
class BoundArgs {
 public:
  BoundArgs(std::string_view what, CallArgs& args, std::initializer_list<const char*> params);
  // The argument for parameter `i` (the index in `params`), or null when not passed.
  const Value* get(size_t i) const { return values_[i]; }
  bool has(size_t i) const { return values_[i] != nullptr; }

 private:
  std::vector<const Value*> values_;
};

}  // namespace llm42::jinja
