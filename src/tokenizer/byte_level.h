// GPT-2's byte-to-unicode alphabet, which byte-level BPE vocabularies are written in: every byte
// is one printable character, so any byte string is a string of vocabulary symbols. The
// printable bytes '!'..'~', 0xA1..0xAC and 0xAE..0xFF stand for themselves; the other 68 bytes
// become U+0100, U+0101, ... in byte order (so the space 0x20 is U+0120 'Ġ').
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace llm42::byte_level {

// Appends the alphabet's spelling of `bytes`.
void encode(std::string_view bytes, std::string& out);

// Decodes a token's text back to bytes. Returns false when a character of `text` is not in the
// alphabet; Hugging Face's ByteLevel decoder then uses the token's text as it is.
bool decode(std::string_view text, std::string& out);

}  // namespace llm42::byte_level
