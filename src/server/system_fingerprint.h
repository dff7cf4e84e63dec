// The system_fingerprint of every response: one fingerprint, one answer.
#pragma once

#include <string>

#include "chat/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace llm42::server {

// The engine's fingerprint (weights, model config, kernels, determinism rules) with a digest of
// the tokenizer and the chat template (null: none) appended.
std::string system_fingerprint(const std::string& engine_fingerprint, const Tokenizer* tokenizer,
                               const ChatTemplate* chat_template);

}  // namespace llm42::server
