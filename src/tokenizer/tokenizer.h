// Tokenizers: text <-> token ids, and the raw bytes behind each id for streaming.
//
// Implementations (one per file):
//   SentencePieceBpe  — merge by score, byte fallback, U+2581 for spaces (llama2.c tokenizer files,
//                       GGUF `llama` vocabularies, HF tokenizer.json BPE with byte_fallback).
//   ByteLevelBpe      — ranked merges over GPT-2 byte-to-unicode symbols, HF pre-tokenizer regex
//                       run with PCRE2, added/special tokens, ignore_merges (Llama 3, Qwen).
//   ByteTokenizer     — one id per byte (for dummy models with no tokenizer).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace llm42 {

struct EmbeddedVocab;

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Encodes text. `add_special` adds what the tokenizer's post-processor adds (BOS for Llama 2
  // and Llama 3, nothing for Qwen), as HF `encode(text, add_special_tokens=True)` does. Special
  // tokens written in the text (e.g. "<|eot_id|>") are recognised when `parse_special` is true.
  // Invalid UTF-8 in `text` is replaced by U+FFFD per maximal invalid subsequence (the rule of
  // Python's `bytes.decode('utf-8', 'replace')`), then encoded.
  virtual std::vector<int32_t> encode(std::string_view text, bool add_special = true,
                                      bool parse_special = true) const = 0;

  // The exact bytes this token contributes to decoded text, in the middle of a sequence
  // (SentencePiece: U+2581 becomes a space, <0xAB> becomes byte 0xAB; byte-level: unicode
  // symbols mapped back to bytes). Special/control tokens give their text when
  // `include_special` is true and nothing otherwise.
  virtual std::string token_bytes(int32_t id, bool include_special = false) const = 0;

  // Decodes a whole sequence as HF `decode(ids, skip_special_tokens=skip_special)` does
  // (including SentencePiece's removal of the leading space). Invalid UTF-8 becomes U+FFFD.
  virtual std::string decode(const std::vector<int32_t>& ids, bool skip_special = true) const = 0;

  virtual int vocab_size() const = 0;
  virtual std::optional<int32_t> token_id(std::string_view token_text) const = 0;
  virtual bool is_special(int32_t id) const = 0;
  // True for SentencePiece tokenizers, whose decoders drop one leading space of the output.
  virtual bool strips_leading_space() const { return false; }

  int bos_id() const { return bos_id_; }
  const std::vector<int32_t>& eos_ids() const { return eos_ids_; }

 protected:
  int bos_id_ = -1;
  std::vector<int32_t> eos_ids_;
};

// Loaders. All throw llm42::Error naming the file and what is wrong.
std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& tokenizer_json_path);
std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::string& path, int vocab_size);
std::unique_ptr<Tokenizer> tokenizer_from_vocab(const EmbeddedVocab& vocab);
std::unique_ptr<Tokenizer> make_byte_tokenizer(int vocab_size, int bos_id, int eos_id);

// Streaming detokenizer: feed committed ids one at a time, get back text that is safe to send —
// never half a UTF-8 character. Matches Tokenizer::decode on the concatenation of all pieces.
class Detokenizer {
 public:
  explicit Detokenizer(const Tokenizer& tok, bool skip_special = true);
  // Text that became complete with this token (possibly empty).
  std::string push(int32_t id);
  // Whatever is still held back at the end of the stream (incomplete bytes become U+FFFD).
  std::string flush();

 private:
  const Tokenizer& tok_;
  bool skip_special_;
  bool at_start_ = true;
  std::string pending_;  // bytes not yet emitted: an incomplete UTF-8 sequence
};

}  // namespace llm42
