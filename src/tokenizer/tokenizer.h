// Tokenizers: text <-> token ids, and the raw bytes behind each id for streaming.
//
// One implementation follows Hugging Face's pipeline (bpe_tokenizer.h): added tokens are cut out
// of the text first, the rest is normalized, pre-tokenized and encoded by a BPE model, and a
// post-processor adds BOS. Its loaders configure it as
//   SentencePiece-style BPE — merges by score or rank, byte fallback to <0xAB> tokens, U+2581 for
//                             spaces: llama2.c tokenizer files, GGUF `llama` vocabularies, HF
//                             tokenizer.json BPE with byte_fallback (Llama 2);
//   byte-level BPE          — ranked merges over GPT-2's byte alphabet, pre-tokenizer regex run
//                             with PCRE2, NFC, ignore_merges: HF tokenizer.json (Llama 3, Qwen),
//                             GGUF `gpt2` vocabularies.
// ByteTokenizer (byte_tokenizer.cpp) gives one id per byte, for dummy models with no tokenizer.
// docs/tokenizers.md describes the formats and the rules.
#pragma once

#include <cstddef>
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
  // `max_tokens`: work stops after the word (pre-tokenizer piece) that takes the count past it
  // (a bound on the tokenizer's work for text that cannot fit a context anyway); the result then
  // holds more than max_tokens ids, a prefix of the whole encoding. Below the bound the result
  // is the whole encoding. Text the pre-tokenizer does not cut (SentencePiece-style) is one word.
  virtual std::vector<int32_t> encode(std::string_view text, bool add_special = true,
                                      bool parse_special = true,
                                      size_t max_tokens = SIZE_MAX) const = 0;

  // The exact bytes this token contributes to decoded text, in the middle of a sequence
  // (SentencePiece: U+2581 becomes a space, <0xAB> becomes byte 0xAB; byte-level: unicode
  // symbols mapped back to bytes). Special/control tokens give their text when
  // `include_special` is true and nothing otherwise.
  virtual std::string token_bytes(int32_t id, bool include_special = false) const = 0;

  // Decodes a whole sequence as HF `decode(ids, skip_special_tokens=skip_special)` does
  // (including SentencePiece's removal of the leading space). Invalid UTF-8 becomes U+FFFD; ids
  // outside the vocabulary are ignored, as HF ignores them. The default builds the text from
  // token_bytes and fallback_byte.
  virtual std::string decode(const std::vector<int32_t>& ids, bool skip_special = true) const;

  virtual int vocab_size() const = 0;
  virtual std::optional<int32_t> token_id(std::string_view token_text) const = 0;
  virtual bool is_special(int32_t id) const = 0;
  // True for SentencePiece tokenizers, whose decoders drop one leading space of the output.
  virtual bool strips_leading_space() const { return false; }
  // The byte of a SentencePiece byte-fallback token (<0xAB>), else nothing. A run of such
  // tokens decodes as one group: when the group is not valid UTF-8 as a whole, each of its bytes
  // becomes U+FFFD (HF's ByteFallback decoder), so a decoder must hold a group until it ends.
  virtual std::optional<uint8_t> fallback_byte(int32_t id) const { return std::nullopt; }

  // What kind of tokenizer this is, for reports: "byte-level-bpe", "sentencepiece-bpe", "byte".
  virtual std::string_view kind() const { return "custom"; }

  int bos_id() const { return bos_id_; }
  const std::vector<int32_t>& eos_ids() const { return eos_ids_; }

 protected:
  int bos_id_ = -1;
  std::vector<int32_t> eos_ids_;
};

// Loaders. All throw llm42::Error naming the file and what is wrong.
// A tokenizer.json; BOS and EOS come from the tokenizer_config.json beside it when there is one.
std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& tokenizer_json_path);
// A llama2.c tokenizer file holding exactly `vocab_size` tokens.
std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::string& path, int vocab_size);
std::unique_ptr<Tokenizer> tokenizer_from_vocab(const EmbeddedVocab& vocab);
// One token per byte: byte b is id b + 3; ids 0..2 and 259.. are control tokens. Needs
// vocab_size >= 259, and bos_id and eos_id outside the byte range 3..258.
std::unique_ptr<Tokenizer> make_byte_tokenizer(int vocab_size, int bos_id, int eos_id);

// Streaming detokenizer: feed committed ids one at a time, get back text that is safe to send —
// never half a UTF-8 character. The concatenation of everything push and flush return equals
// Tokenizer::decode of all the ids. Text is held back only while it may still change: an
// incomplete UTF-8 character, and a run of byte-fallback tokens until a token of another kind
// (or flush) ends it.
class Detokenizer {
 public:
  // `continues_text`: the tokens continue a text (a prompt's), so SentencePiece's leading space
  // is kept: the output is decode(prompt + output) less decode(prompt), as vLLM streams it.
  explicit Detokenizer(const Tokenizer& tok, bool skip_special = true,
                       bool continues_text = false);
  // Text that became complete with this token (possibly empty).
  std::string push(int32_t id);
  // Whatever is still held back at the end of the stream (incomplete bytes become U+FFFD).
  std::string flush();

 private:
  std::string close_fallback_run();
  std::string release(bool final);

  const Tokenizer& tok_;
  bool skip_special_;
  bool at_start_;  // nothing emitted yet: SentencePiece's leading space still to strip
  std::string fallback_;  // bytes of the current run of byte-fallback tokens
  std::string pending_;   // bytes not yet emitted: an incomplete UTF-8 sequence
};

}  // namespace llm42
