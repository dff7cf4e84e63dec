#include "server/system_fingerprint.h"

#include <fmt/format.h>

#include "engine/fingerprint.h"
#include "util/digest.h"

namespace llm42::server {

std::string system_fingerprint(const std::string& engine_fingerprint, const Tokenizer* tokenizer,
                               const ChatTemplate* chat_template) {
  Digest d;
  d.add(tokenizer != nullptr).add(chat_template != nullptr);
  if (tokenizer != nullptr) d.add(tokenizer_digest(*tokenizer));
  if (chat_template != nullptr) d.add(chat_template->digest());
  return fmt::format("{}-t{:016x}", engine_fingerprint, d.value());
}

}  // namespace llm42::server
