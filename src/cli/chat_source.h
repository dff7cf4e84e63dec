// Which chat template a command uses (serve's chat completions, generate --chat).
#pragma once

#include <memory>
#include <string>

#include "chat/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace llm42::cli {

// `flag` (--chat-template): a Jinja file, a tokenizer_config.json holding one, or a built-in
// name. Without it: the model folder's tokenizer_config.json when it has a template, else
// `embedded`, the template stored in the model file (GGUF tokenizer.chat_template). Null when
// there is none (`command` names who asks, for the log line that says so).
std::unique_ptr<ChatTemplate> find_chat_template(const std::string& flag, const std::string& model,
                                                 const Tokenizer* tok, const std::string& embedded,
                                                 const char* command);

}  // namespace llm42::cli
