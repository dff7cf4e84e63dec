// Python's semantics for template values: truthiness, str() and repr(), ==, ordering, len(),
// iteration, `in`, indexing and slicing, and arithmetic, as jinja2 inherits them from the Python
// objects it evaluates. Undefined behaves as jinja2's default Undefined: it prints as "", is
// false, iterates as empty and has length 0, equals only another Undefined, and fails (with its
// hint) in arithmetic and ordering. Failures throw EvalError with Python's message.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "chat/jinja/value.h"

namespace llm42::jinja::py {

bool truthy(const Value& v);

// str(v); "" for Undefined.
std::string str(const Value& v);
// repr(v), as print of a list or dict shows its items.
std::string repr(const Value& v);
// repr(float): the shortest string that reads back as `d`, fixed notation for exponents in
// [-4, 16), else scientific with at least two exponent digits ("1e-05", "1e+16").
std::string float_repr(double d);

// Python's type name: "str", "int", "dict", "NoneType", ...
std::string type_name(const Value& v);
// jinja2's object_type_repr, which its Undefined hints use: "dict object", "None", ...
std::string object_type_repr(const Value& v);

bool equal(const Value& a, const Value& b);
// Negative, zero or positive as a < b, a == b, a > b under Python's ordering; throws when the two
// cannot be ordered ('<' not supported between 'str' and 'int').
int compare(const Value& a, const Value& b);

// len(v); strings count code points.
size_t length(const Value& v);
// The items a for loop visits: list items, dict keys, string characters; none for Undefined.
std::vector<Value> iterate(const Value& v);
// `item in container`.
bool contains(const Value& container, const Value& item);

// container[key] for an int index (negative counts from the end) or a dict key; nullopt when
// there is no such item, so that the caller can fall back as jinja2 does.
std::optional<Value> subscript(const Value& container, const Value& key);
// container[start:stop:step] over a list, tuple or string.
Value slice(const Value& container, std::optional<int64_t> start, std::optional<int64_t> stop,
            std::optional<int64_t> step);

enum class BinaryOp { kAdd, kSub, kMul, kDiv, kFloorDiv, kMod, kPow };
Value arithmetic(BinaryOp op, const Value& a, const Value& b);
Value negate(const Value& v);
Value unary_plus(const Value& v);

// The Undefined check every operation that cannot take one starts with: throws its hint.
void require_defined(const Value& v);

}  // namespace llm42::jinja::py
