// The chat templates llm42 ships, for model families whose tokenizer_config.json carries none:
// Llama-2-chat, Mistral-7B-Instruct (v0.1 / v0.2) and ChatML. Written from the families'
// published prompt formats; selected by name with ChatTemplate::builtin.
#pragma once

#include <span>
#include <string_view>

namespace llm42 {

struct BuiltinTemplate {
  std::string_view name;
  std::string_view description;
  std::string_view source;  // Jinja2, as a tokenizer_config.json would hold it
  const char* default_bos;  // the family's usual tokens; null: the template does not use it
  const char* default_eos;
};

std::span<const BuiltinTemplate> builtin_templates();

// Null when there is none of that name.
const BuiltinTemplate* find_builtin_template(std::string_view name);

}  // namespace llm42
