#include <fmt/format.h>

#include "chat/jinja/builtins.h"
#include "chat/jinja/error.h"

namespace llm42::jinja {

BoundArgs::BoundArgs(std::string_view what, CallArgs& args,
                     std::initializer_list<const char*> params)
    : values_(params.size(), nullptr) {
  if (args.positional.size() > params.size())
    eval_fail("{} takes at most {} argument(s) ({} given)", what, params.size(),
              args.positional.size());
  for (size_t i = 0; i < args.positional.size(); ++i) values_[i] = &args.positional[i];
  for (const auto& [key, value] : args.keyword) {
    size_t i = 0;
    for (const char* p : params) {
      if (key == p) break;
      ++i;
    }
    if (i == params.size()) eval_fail("{} got an unexpected keyword argument '{}'", what, key);
    if (values_[i] != nullptr) eval_fail("{} got multiple values for argument '{}'", what, key);
    values_[i] = &value;
  }
}

}  // namespace llm42::jinja
