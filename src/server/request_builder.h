// From a validated API request to engine requests: renders chat messages with the chat template,
// tokenizes prompts, and expands prompts x n into one engine Request per choice. Runs on the
// server's worker threads (tokenizing and templating are the slow parts of admission).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "chat/chat_template.h"
#include "engine/engine_config.h"
#include "engine/request.h"
#include "server/api_error.h"
#include "server/openai_request.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace llm42::server {

struct PromptContext {
  const Tokenizer* tokenizer = nullptr;    // null: token-id prompts only
  const ChatTemplate* chat_template = nullptr;  // null: chat completions are refused
  int max_seq_len = 0;
  DeterminismMode mode = DeterminismMode::kDvr;
  uint64_t default_seed = 0;  // the engine's seed for deterministic requests that give none
  // The tokenizer's max_token_bytes(): text prompts longer than this allows are refused before
  // they are tokenized. 0: no such check.
  size_t max_token_bytes = 0;
};

// The most input bytes one token can stand for: the longest token's bytes (special tokens'
// text included) times 3. 3 is the most that NFC normalization (Qwen) shrinks text by (U+0390
// is 2 bytes, its decomposition 6), and the most a SentencePiece token's bytes undercount its
// input by (a literal U+2581 in the text, 3 bytes, comes back as a 1-byte space); the supported
// tokenizers do one or the other, never both. So a text of B bytes is at least B / this tokens.
size_t max_token_bytes(const Tokenizer& t);

struct EngineRequests {
  std::vector<std::vector<int32_t>> prompts;  // token ids, one per prompt
  // prompts x n, in the order of the response's choice indices (prompt-major, as OpenAI).
  std::vector<Request> choices;
  std::vector<int> choice_prompt;  // prompt index of each choice
};

// The text a chat request's messages become: rendered with the chat template (with
// add_generation_prompt, or cut after the final message's content when
// `continue_final_message`, as transformers' apply_chat_template does, so that the model
// continues that message). Throws ApiError naming `messages` (no chat template, no tokenizer,
// a template that refuses the messages, a final message the render does not hold).
std::string render_chat_prompt(const ApiRequest& r, const PromptContext& ctx,
                               bool continue_final_message = false);

// Throws ApiError naming the field (no tokenizer for a text prompt, no chat template, a
// template that refuses the messages).
EngineRequests build_engine_requests(const ApiRequest& r, const PromptContext& ctx);

// An engine validation error (llm42::Error from Engine::add_request) as the API reports it:
// 400 naming the field the message names ("'top_p' = ..." -> top_p; a context overflow -> the
// prompt, code context_length_exceeded), or 503 when the engine is shutting down.
ApiError engine_error(const Error& e, Endpoint endpoint);

}  // namespace llm42::server
