// Chat templates: turning OpenAI `messages` into a prompt string the way the model's
// `tokenizer_config.json` `chat_template` (Jinja2) says, as transformers'
// `apply_chat_template` renders it.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

namespace llm42 {

class ChatTemplate {
 public:
  // Parses a Jinja2 template. `bos_token` / `eos_token` are the strings the template may use.
  // Throws llm42::Error naming the template source and the line on a syntax error.
  static ChatTemplate parse(const std::string& source, const std::string& origin,
                            std::string bos_token, std::string eos_token);

  // The template of a tokenizer_config.json (its `chat_template`, a string or the entry named
  // "default" of a list), with its bos/eos tokens. Throws when there is none.
  static ChatTemplate from_tokenizer_config(const std::string& path);

  // Renders `messages` (OpenAI format: [{role, content}], content a string or a list of
  // {type: text, text} parts) with add_generation_prompt. `extra` holds further variables the
  // template may read (tools, enable_thinking, ...). Throws llm42::Error with a message naming
  // what is wrong (e.g. the template's raise_exception text).
  std::string render(const nlohmann::json& messages, bool add_generation_prompt,
                     const nlohmann::json& extra = nlohmann::json::object()) const;

  ChatTemplate(ChatTemplate&&) noexcept;
  ChatTemplate& operator=(ChatTemplate&&) noexcept;
  ~ChatTemplate();

 private:
  struct Impl;
  explicit ChatTemplate(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace llm42
