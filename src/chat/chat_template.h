// Chat templates: turning OpenAI `messages` into a prompt string the way the model's
// `tokenizer_config.json` `chat_template` (Jinja2) says, as transformers'
// `apply_chat_template` renders it. The interpreter (src/chat/jinja/) matches jinja2 3.1 with
// transformers' environment byte for byte on the templates in scope; docs/chat-templates.md
// lists what it supports.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "chat/render_limits.h"

namespace llm42 {

class ChatTemplate {
 public:
  // Parses a Jinja2 template. `bos_token` / `eos_token` are the strings the template may use
  // (unset: the template sees them undefined, as transformers does for a tokenizer without
  // one). Throws llm42::Error naming `origin`, line and column on a syntax error, or on a
  // filter or test that does not exist.
  static ChatTemplate parse(const std::string& source, const std::string& origin,
                            std::optional<std::string> bos_token,
                            std::optional<std::string> eos_token);

  // The template of a tokenizer_config.json (its `chat_template`, a string or the entry named
  // "default" of a list; or, as newer transformers saves it, a `chat_template.jinja` beside
  // it), with its special tokens (bos_token, eos_token, unk_token, pad_token, ...). Throws
  // when there is none.
  static ChatTemplate from_tokenizer_config(const std::string& path);

  // A template shipped with llm42, by name (see builtin_names()): for models whose tokenizer
  // config has no template. Unset tokens take the family's usual ones ("<s>" / "</s>" for
  // llama-2 and mistral). Throws naming the known names for an unknown one.
  static ChatTemplate builtin(const std::string& name,
                              std::optional<std::string> bos_token = std::nullopt,
                              std::optional<std::string> eos_token = std::nullopt);
  static std::vector<std::string> builtin_names();

  // Renders `messages` (OpenAI format: [{role, content}], content a string or a list of
  // {type: text, text} parts) with add_generation_prompt. `extra` holds further variables the
  // template may read (tools, enable_thinking, ...). The template sees what transformers gives
  // it: messages, tools (none unless `extra` sets it), documents (none), add_generation_prompt,
  // the special tokens, then `extra` (which may replace any of them, as transformers' keyword
  // arguments may; jinja::is_reserved_variable names them). Throws llm42::Error with a message
  // naming what is wrong (e.g. the template's raise_exception text) and where in the template.
  //
  // Dict key order matters to `tojson` (tool schemas): nlohmann::json sorts keys, so callers
  // that must match transformers exactly pass nlohmann::ordered_json, which keeps them.
  std::string render(const nlohmann::json& messages, bool add_generation_prompt,
                     const nlohmann::json& extra = nlohmann::json::object()) const;
  std::string render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                     const nlohmann::ordered_json& extra) const;

  void set_limits(const jinja::RenderLimits& limits);

  // A digest of everything a render depends on: the template text and the special tokens.
  uint64_t digest() const;

  const std::string& origin() const;
  // The template text as given.
  const std::string& source() const;

  ChatTemplate(ChatTemplate&&) noexcept;
  ChatTemplate& operator=(ChatTemplate&&) noexcept;
  ~ChatTemplate();

 private:
  struct Impl;
  explicit ChatTemplate(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace llm42
