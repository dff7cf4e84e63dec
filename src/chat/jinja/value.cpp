#include "chat/jinja/value.h"

#include <fmt/format.h>

#include <algorithm>

#include "chat/jinja/error.h"

namespace llm42::jinja {

const Value* Object::find(std::string_view key) const {
  const auto it = index_.find(key);
  return it == index_.end() ? nullptr : &entries_[it->second].second;
}

namespace {

void check_depth(int depth) {
  if (depth > kMaxValueDepth) eval_fail("a value nested more than {} levels deep", kMaxValueDepth);
}

}  // namespace

void Object::set(std::string key, Value value) {
  const int depth = std::max(depth_, value.depth() + 1);
  check_depth(depth);
  depth_ = depth;
  holds_namespace_ = holds_namespace_ || value.holds_namespace();
  const auto it = index_.find(std::string_view(key));
  if (it != index_.end()) {
    entries_[it->second].second = std::move(value);
    return;
  }
  index_.emplace(key, entries_.size());
  entries_.emplace_back(std::move(key), std::move(value));
}

Value Value::list(std::vector<Value> items, bool is_tuple) {
  int depth = 1;
  bool holds_namespace = false;
  for (const Value& item : items) {
    depth = std::max(depth, item.depth() + 1);
    holds_namespace = holds_namespace || item.holds_namespace();
  }
  check_depth(depth);
  Value v;
  v.v_ = std::make_shared<const List>(List{std::move(items), is_tuple, depth, holds_namespace});
  return v;
}

Value Value::dict(Object object) {
  Value v;
  v.v_ = std::make_shared<const Object>(std::move(object));
  return v;
}

Value Value::make_namespace(Object attributes) {
  Value v;
  v.v_ = std::make_shared<Object>(std::move(attributes));
  return v;
}

Value Value::function(std::string name, NativeFunction call) {
  Value v;
  v.v_ = std::make_shared<const Function>(Function{std::move(name), std::move(call)});
  return v;
}

namespace {

template <typename Json>
Value convert(const Json& j, int depth) {
  using json = Json;
  // Checked before recursing: Value::list and Object::set would refuse the result only after.
  check_depth(depth);
  switch (j.type()) {
    case json::value_t::null:
      return Value::none();
    case json::value_t::boolean:
      return Value(j.template get<bool>());
    case json::value_t::number_integer:
      return Value(j.template get<int64_t>());
    case json::value_t::number_unsigned: {
      const uint64_t u = j.template get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX))
        eval_fail("the integer {} is too large (the template interpreter's ints are 64-bit)", u);
      return Value(static_cast<int64_t>(u));
    }
    case json::value_t::number_float:
      return Value(j.template get<double>());
    case json::value_t::string:
      return Value(j.template get<std::string>());
    case json::value_t::array: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const json& e : j) items.push_back(convert(e, depth + 1));
      return Value::list(std::move(items));
    }
    case json::value_t::object: {
      Object o;
      for (const auto& [k, e] : j.items()) o.set(k, convert(e, depth + 1));
      return Value::dict(std::move(o));
    }
    case json::value_t::binary:
    case json::value_t::discarded:
      break;
  }
  eval_fail("unsupported JSON value of type {}", j.type_name());
}

}  // namespace

Value Value::from_json(const nlohmann::ordered_json& j) { return convert(j, 1); }
Value Value::from_json(const nlohmann::json& j) { return convert(j, 1); }

int Value::depth() const {
  switch (type()) {
    case Type::kList:
      return as_list().depth;
    case Type::kDict:
      return as_dict().depth();
    case Type::kNamespace:
      return namespace_attributes().depth();
    default:
      return 1;
  }
}

bool Value::holds_namespace() const {
  switch (type()) {
    case Type::kList:
      return as_list().holds_namespace;
    case Type::kDict:
      return as_dict().holds_namespace();
    case Type::kNamespace:
      return true;
    default:
      return false;
  }
}

const void* Value::identity() const {
  switch (type()) {
    case Type::kList:
      return &as_list();
    case Type::kDict:
      return &as_dict();
    case Type::kNamespace:
      return &namespace_attributes();
    case Type::kFunction:
      return &as_function();
    default:
      return nullptr;
  }
}

}  // namespace llm42::jinja
