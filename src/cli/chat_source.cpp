#include "cli/chat_source.h"

#include <filesystem>
#include <optional>

#include "util/error.h"
#include "util/log.h"
#include "util/mapped_file.h"

namespace llm42::cli {

std::unique_ptr<ChatTemplate> find_chat_template(const std::string& flag, const std::string& model,
                                                 const Tokenizer* tok, const std::string& embedded,
                                                 const char* command) {
  namespace fs = std::filesystem;
  std::optional<std::string> bos, eos;
  if (tok != nullptr) {
    if (tok->bos_id() >= 0) bos = tok->token_bytes(tok->bos_id(), true);
    if (!tok->eos_ids().empty()) eos = tok->token_bytes(tok->eos_ids().front(), true);
  }
  if (!flag.empty()) {
    if (fs::is_regular_file(flag)) {
      if (flag.ends_with(".json"))
        return std::make_unique<ChatTemplate>(ChatTemplate::from_tokenizer_config(flag));
      return std::make_unique<ChatTemplate>(ChatTemplate::parse(read_file(flag), flag, bos, eos));
    }
    return std::make_unique<ChatTemplate>(ChatTemplate::builtin(flag, bos, eos));
  }
  const fs::path config = fs::path(model) / "tokenizer_config.json";
  if (fs::is_directory(model) && fs::is_regular_file(config)) {
    try {
      return std::make_unique<ChatTemplate>(ChatTemplate::from_tokenizer_config(config.string()));
    } catch (const Error& e) {
      log_info("{}: no chat template ({}): give --chat-template", command, e.what());
      return nullptr;
    }
  }
  if (!embedded.empty())
    return std::make_unique<ChatTemplate>(
        ChatTemplate::parse(embedded, model + ": tokenizer.chat_template", bos, eos));
  log_info("{}: {} has no chat template: give --chat-template", command, model);
  return nullptr;
}

}  // namespace llm42::cli
