#include "chat/chat_template.h"

#include <fmt/ranges.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "chat/builtin_templates.h"
#include "chat/jinja/ast.h"
#include "chat/jinja/error.h"
#include "chat/jinja/interpreter.h"
#include "chat/jinja/lexer.h"
#include "chat/jinja/parser.h"
#include "util/digest.h"
#include "util/error.h"

namespace llm42 {

struct ChatTemplate::Impl {
  std::string origin;
  std::string source;      // as given
  std::string normalized;  // as the lexer saw it; error positions index into it
  jinja::Body program;
  jinja::Object special_tokens;  // bos_token, eos_token, ...: variables of every render
  jinja::RenderLimits limits;

  template <typename Json>
  std::string render(const Json& messages, bool add_generation_prompt, const Json& extra) const {
    if (!extra.is_object()) fail("chat template '{}': the extra variables must be an object", origin);
    jinja::Object vars;
    try {
      vars.set("messages", jinja::Value::from_json(messages));
      vars.set("tools", jinja::Value::none());
      vars.set("documents", jinja::Value::none());
      vars.set("add_generation_prompt", jinja::Value(add_generation_prompt));
      for (const auto& [k, v] : special_tokens.entries()) vars.set(k, v);
      for (const auto& [k, v] : extra.items()) vars.set(k, jinja::Value::from_json(v));
    } catch (const jinja::EvalError& e) {
      fail("chat template '{}': {}", origin, e.what());
    }
    return jinja::Interpreter(program, normalized, origin, limits).render(std::move(vars));
  }
};

namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open {}", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A special token of tokenizer_config.json: a string, or an AddedToken object with `content`.
std::optional<std::string> token_text(const nlohmann::json& config, const char* key) {
  const auto it = config.find(key);
  if (it == config.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
    return (*it)["content"].get<std::string>();
  return std::nullopt;
}

// The `chat_template` entry: a string, or a list of {name, template} whose "default" is taken.
std::optional<std::string> template_text(const nlohmann::json& entry) {
  if (entry.is_string()) return entry.get<std::string>();
  if (entry.is_array()) {
    for (const nlohmann::json& t : entry)
      if (t.is_object() && t.value("name", "") == "default" && t.contains("template") &&
          t["template"].is_string())
        return t["template"].get<std::string>();
  }
  return std::nullopt;
}

}  // namespace

ChatTemplate::ChatTemplate(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;
ChatTemplate::~ChatTemplate() = default;

ChatTemplate ChatTemplate::parse(const std::string& source, const std::string& origin,
                                 std::optional<std::string> bos_token,
                                 std::optional<std::string> eos_token) {
  auto impl = std::make_unique<Impl>();
  impl->origin = origin;
  impl->source = source;
  impl->normalized = jinja::normalize_source(source);
  impl->program = jinja::parse(jinja::tokenize(impl->normalized, origin), impl->normalized, origin);
  if (bos_token) impl->special_tokens.set("bos_token", jinja::Value(*bos_token));
  if (eos_token) impl->special_tokens.set("eos_token", jinja::Value(*eos_token));
  return ChatTemplate(std::move(impl));
}

ChatTemplate ChatTemplate::from_tokenizer_config(const std::string& path) {
  nlohmann::json config;
  try {
    config = nlohmann::json::parse(read_text(path));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON: {}", path, e.what());
  }
  if (!config.is_object()) fail("{}: not a JSON object", path);

  std::optional<std::string> source;
  std::string origin = path;
  if (config.contains("chat_template") && !config["chat_template"].is_null()) {
    source = template_text(config["chat_template"]);
    if (!source)
      fail("{}: 'chat_template' is neither a string nor a list with a \"default\" entry", path);
  } else {
    // Newer transformers save the template beside the config instead.
    const std::filesystem::path jinja_file =
        std::filesystem::path(path).parent_path() / "chat_template.jinja";
    if (std::filesystem::is_regular_file(jinja_file)) {
      origin = jinja_file.string();
      source = read_text(origin);
    }
  }
  if (!source)
    fail("{} has no chat_template; use a template file or one of the built-in templates ({})",
         path, fmt::join(builtin_names(), ", "));

  ChatTemplate t = parse(*source, origin, token_text(config, "bos_token"),
                         token_text(config, "eos_token"));
  // transformers passes every special token it knows to the template.
  for (const char* key : {"unk_token", "sep_token", "pad_token", "cls_token", "mask_token"})
    if (const std::optional<std::string> v = token_text(config, key))
      t.impl_->special_tokens.set(key, jinja::Value(*v));
  if (config.contains("additional_special_tokens") &&
      config["additional_special_tokens"].is_array()) {
    std::vector<jinja::Value> extra;
    for (const nlohmann::json& tok : config["additional_special_tokens"]) {
      if (tok.is_string()) extra.emplace_back(tok.get<std::string>());
      if (tok.is_object() && tok.contains("content") && tok["content"].is_string())
        extra.emplace_back(tok["content"].get<std::string>());
    }
    // transformers leaves an empty list out, as it leaves out unset tokens.
    if (!extra.empty())
      t.impl_->special_tokens.set("additional_special_tokens", jinja::Value::list(std::move(extra)));
  }
  return t;
}

ChatTemplate ChatTemplate::builtin(const std::string& name, std::optional<std::string> bos_token,
                                   std::optional<std::string> eos_token) {
  const BuiltinTemplate* b = find_builtin_template(name);
  if (b == nullptr)
    fail("unknown chat template '{}': the built-in templates are {}", name,
         fmt::join(builtin_names(), ", "));
  const auto family = [](const char* token) {
    return token != nullptr ? std::optional<std::string>(token) : std::nullopt;
  };
  return parse(std::string(b->source), "builtin:" + name,
               bos_token ? bos_token : family(b->default_bos),
               eos_token ? eos_token : family(b->default_eos));
}

std::vector<std::string> ChatTemplate::builtin_names() {
  std::vector<std::string> names;
  for (const BuiltinTemplate& b : builtin_templates()) names.emplace_back(b.name);
  return names;
}

std::string ChatTemplate::render(const nlohmann::json& messages, bool add_generation_prompt,
                                 const nlohmann::json& extra) const {
  return impl_->render(messages, add_generation_prompt, extra);
}

std::string ChatTemplate::render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                                 const nlohmann::ordered_json& extra) const {
  return impl_->render(messages, add_generation_prompt, extra);
}

void ChatTemplate::set_limits(const jinja::RenderLimits& limits) { impl_->limits = limits; }

uint64_t ChatTemplate::digest() const {
  Digest d;
  d.add(std::string_view(impl_->normalized));
  for (const auto& [k, v] : impl_->special_tokens.entries()) {
    d.add(std::string_view(k));
    if (v.is_string()) d.add(std::string_view(v.as_string()));
    if (v.is_list())
      for (const jinja::Value& item : v.items())
        if (item.is_string()) d.add(std::string_view(item.as_string()));
  }
  return d.value();
}

const std::string& ChatTemplate::origin() const { return impl_->origin; }

const std::string& ChatTemplate::source() const { return impl_->source; }

}  // namespace llm42
