// The names a chat template's root scope holds before a client's variables: what the renderer
// sets (ChatTemplate::render) and the global functions (jinja/globals.cpp). A header of its own
// so that request validation can check names without linking the interpreter.
#pragma once

#include <string_view>

namespace llm42::jinja {

inline constexpr std::string_view kRendererVariables[] = {
    "messages",  "tools",     "documents",  "add_generation_prompt",
    "bos_token", "eos_token", "unk_token",  "sep_token",
    "pad_token", "cls_token", "mask_token", "additional_special_tokens"};

// global_functions() asserts that it defines exactly these.
inline constexpr std::string_view kGlobalFunctionNames[] = {"range", "dict", "namespace",
                                                            "raise_exception", "strftime_now"};

// Whether `name` is one of the above: a client's chat_template_kwargs must not replace it.
inline bool is_reserved_variable(std::string_view name) {
  for (std::string_view r : kRendererVariables)
    if (name == r) return true;
  for (std::string_view g : kGlobalFunctionNames)
    if (name == g) return true;
  return false;
}

}  // namespace llm42::jinja
