// The BPE tokenizer pipeline of Hugging Face `tokenizers`, which the SentencePiece-style and the
// byte-level tokenizers are configurations of:
//   encode: invalid UTF-8 replaced -> added tokens cut out -> each remaining piece normalized
//           -> pre-tokenized into words -> each word through the BPE model -> BOS/EOS added
//   decode: each id's text -> decoder (byte-level alphabet, or U+2581 to space with byte
//           fallback groups and the leading space stripped) -> invalid UTF-8 replaced
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/tokenizer.h"

namespace llm42 {

// How a token's text becomes bytes (HF's decoders).
struct DecoderSpec {
  bool byte_level = false;   // GPT-2's byte alphabet back to bytes (ByteLevel)
  std::string replace_from;  // every occurrence replaced by replace_to (Replace)
  std::string replace_to;
  bool byte_fallback = false;        // "<0xAB>" tokens are the byte 0xAB (ByteFallback)
  bool strip_leading_space = false;  // one leading space of the output removed (Strip)
};

struct BpeTokenizerParts {
  std::unique_ptr<BpeModel> model;
  std::vector<AddedToken> added_tokens;
  Normalizer normalizer;
  PreTokenizer pre_tokenizer;
  std::vector<int32_t> prefix, suffix;  // what add_special puts around the ids
  DecoderSpec decoder;
  int32_t bos_id = -1;
  std::vector<int32_t> eos_ids;
};

class BpeTokenizer final : public Tokenizer {
 public:
  explicit BpeTokenizer(BpeTokenizerParts parts);

  std::vector<int32_t> encode(std::string_view text, bool add_special = true,
                              bool parse_special = true,
                              size_t max_tokens = SIZE_MAX) const override;
  std::string token_bytes(int32_t id, bool include_special = false) const override;
  int vocab_size() const override { return static_cast<int>(bytes_.size()); }
  std::optional<int32_t> token_id(std::string_view token_text) const override;
  bool is_special(int32_t id) const override;
  bool strips_leading_space() const override { return decoder_.strip_leading_space; }
  std::string_view kind() const override {
    return decoder_.byte_level ? "byte-level-bpe" : "sentencepiece-bpe";
  }
  std::optional<uint8_t> fallback_byte(int32_t id) const override;

 private:
  std::unique_ptr<BpeModel> model_;
  AddedTokens added_;
  Normalizer normalizer_;
  PreTokenizer pre_tokenizer_;
  std::vector<int32_t> prefix_, suffix_;
  DecoderSpec decoder_;
  // Per id (model vocabulary, then added tokens over it):
  std::vector<std::string> bytes_;  // what the id contributes to decoded text
  std::vector<int16_t> fallback_;   // the byte of a byte-fallback token, or -1
  std::vector<bool> special_;
};

}  // namespace llm42
