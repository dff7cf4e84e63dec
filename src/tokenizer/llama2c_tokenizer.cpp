// load_llama2c_tokenizer: llama2.c's tokenizer file. Layout (little-endian): int32
// max_token_length, then per token: float32 score, int32 length, `length` bytes of text. Ids 0,
// 1, 2 are <unk>, BOS and EOS (written "\n<s>\n" and "\n</s>\n"); a space is written as a
// space, not U+2581. The file must hold exactly `vocab_size` tokens.
#include <cstring>

#include "tokenizer/sentencepiece_vocab.h"
#include "util/error.h"
#include "util/mapped_file.h"

namespace llm42 {
namespace {

std::string replace_spaces(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == ' ')
      out += "\u2581";
    else
      out += c;
  }
  return out;
}

std::string trim(std::string_view s) {
  const size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return {};
  return std::string(s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1));
}

}  // namespace

std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::string& path, int vocab_size) {
  if (vocab_size < 3)
    fail("{}: vocab_size {} is too small for a llama2.c tokenizer (ids 0..2 are <unk>, BOS, EOS)",
         path, vocab_size);
  const MappedFile file(path);
  const uint8_t* data = file.data();
  const size_t size = file.size();
  size_t at = 0;
  const auto read_i32 = [&](const char* what, int token) {
    if (size - at < 4)
      fail("{}: truncated at byte {}: {} of token {} needs 4 bytes, {} left (file of {} bytes)",
           path, at, what, token, size - at, size);
    int32_t v;
    std::memcpy(&v, data + at, 4);
    at += 4;
    return v;
  };
  if (size < 4) fail("{}: {} bytes, too short for the int32 max_token_length header", path, size);
  const int32_t max_len = read_i32("max_token_length", -1);
  if (max_len <= 0 || max_len > 1 << 16)
    fail("{}: max_token_length {} in the header is not plausible (1..65536)", path, max_len);

  SentencePieceVocab v;
  v.pieces.resize(vocab_size);
  v.scores.resize(vocab_size);
  v.types.assign(vocab_size, SentencePieceVocab::kNormal);
  for (int id = 0; id < vocab_size; ++id) {
    const int32_t score_bits = read_i32("score", id);
    std::memcpy(&v.scores[id], &score_bits, 4);
    const size_t len_at = at;
    const int32_t len = read_i32("length", id);
    if (len < 0 || len > max_len)
      fail("{}: token {} at byte {} has length {}, outside 0..max_token_length ({})", path, id,
           len_at, len, max_len);
    if (size - at < static_cast<size_t>(len))
      fail("{}: truncated at byte {}: token {} needs {} bytes of text, {} left (file of {} bytes)",
           path, at, id, len, size - at, size);
    const std::string_view text(reinterpret_cast<const char*>(data + at), len);
    at += len;
    v.pieces[id] = id < 3 ? trim(text) : replace_spaces(text);
  }
  if (at != size)
    fail("{}: {} bytes left after {} tokens; the file holds more tokens than the vocab_size given",
         path, size - at, vocab_size);
  v.types[0] = SentencePieceVocab::kUnknown;
  v.types[1] = v.types[2] = SentencePieceVocab::kControl;
  v.unk_id = 0;
  v.bos_id = 1;
  v.eos_id = 2;
  v.add_bos = true;
  return make_sentencepiece_tokenizer(std::move(v), path);
}

}  // namespace llm42
