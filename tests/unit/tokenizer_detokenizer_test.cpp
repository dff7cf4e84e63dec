// The streaming Detokenizer: every chunk it returns is valid UTF-8 (never half a character), and
// the chunks put together equal Tokenizer::decode of all the ids, on real tokenizers and on
// random id sequences that cut characters apart, including across byte-fallback tokens.
#include "tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <random>

#include "test_util.h"
#include "tokenizer/utf8.h"

namespace llm42 {
namespace {

using Ids = std::vector<int32_t>;

// Streams `ids` through a Detokenizer, checking every chunk; returns the concatenation.
std::string stream(const Tokenizer& tok, const Ids& ids, bool skip_special) {
  Detokenizer d(tok, skip_special);
  std::string out;
  for (int32_t id : ids) {
    const std::string chunk = d.push(id);
    EXPECT_TRUE(utf8::is_valid(chunk)) << "chunk after id " << id;
    out += chunk;
  }
  const std::string tail = d.flush();
  EXPECT_TRUE(utf8::is_valid(tail));
  return out + tail;
}

// Random sequences biased towards the ids that split characters: single bytes with the high bit
// set (byte-fallback tokens, or byte-level tokens of one byte) and special tokens.
std::vector<Ids> random_sequences(const Tokenizer& tok, uint64_t seed, int count) {
  std::mt19937_64 rng(seed);
  Ids partial, special;
  for (int32_t id = 0; id < tok.vocab_size(); ++id) {
    const std::string b = tok.token_bytes(id, true);
    if (tok.is_special(id)) special.push_back(id);
    if (tok.fallback_byte(id) || (b.size() == 1 && static_cast<uint8_t>(b[0]) >= 0x80))
      partial.push_back(id);
  }
  std::vector<Ids> out;
  for (int i = 0; i < count; ++i) {
    Ids ids(1 + rng() % 24);
    for (int32_t& id : ids) {
      const uint64_t kind = rng() % 4;
      if (kind == 0 || (kind < 3 && partial.empty()) || (kind == 3 && special.empty()))
        id = static_cast<int32_t>(rng() % tok.vocab_size());
      else if (kind < 3)
        id = partial[rng() % partial.size()];
      else
        id = special[rng() % special.size()];
    }
    out.push_back(std::move(ids));
  }
  return out;
}

void check_streaming(const Tokenizer& tok, const std::vector<std::string>& texts, uint64_t seed) {
  std::vector<Ids> seqs = random_sequences(tok, seed, 2000);
  for (const std::string& t : texts) {
    const Ids ids = tok.encode(t);
    seqs.push_back(ids);
    // Every prefix: what a stream has shown at each point.
    for (size_t n = 0; n <= ids.size() && n < 40; ++n)
      seqs.emplace_back(ids.begin(), ids.begin() + n);
  }
  for (const Ids& ids : seqs) {
    for (bool skip : {true, false}) {
      EXPECT_EQ(stream(tok, ids, skip), tok.decode(ids, skip))
          << "skip_special=" << skip << ", " << ids.size() << " ids from " << ids.front();
    }
  }
}

const std::vector<std::string> kTexts = {"Hello world",
                                         " leading space",
                                         "  two leading spaces",
                                         "ж and 😀 and 👨‍👩‍👧‍👦",
                                         "日本語のテキスト",
                                         "naïve café\n\ttab",
                                         "<s>special</s> <|eot_id|> <|im_end|>",
                                         ""};

TEST(TokenizerDetokenizer, StoriesLlama2c) {
  LLM42_SHARED_OR_SKIP(path, "models/stories260K/tok512.bin");
  check_streaming(*load_llama2c_tokenizer(path, 512), kTexts, 1);
}

TEST(TokenizerDetokenizer, HuggingFaceFiles) {
  LLM42_SHARED_OR_SKIP(dir, "tokenizers");
  uint64_t seed = 10;
  for (const char* name : {"llama2", "llama3", "qwen3"})
    check_streaming(*load_hf_tokenizer(dir + "/" + name + "/tokenizer.json"), kTexts, seed++);
}

TEST(TokenizerDetokenizer, ByteTokenizer) {
  check_streaming(*make_byte_tokenizer(300, 1, 2), kTexts, 20);
}

TEST(TokenizerDetokenizer, HoldsBackOnlyWhatMayStillChange) {
  LLM42_SHARED_OR_SKIP(path, "models/stories260K/tok512.bin");
  const auto tok = load_llama2c_tokenizer(path, 512);
  Detokenizer d(*tok);
  EXPECT_EQ(d.push(1), "");        // BOS, skipped
  EXPECT_EQ(d.push(403), "Once");  // the stream's one leading space is dropped
  EXPECT_EQ(d.push(407), " upon");
  // 'ж' as byte tokens: held until the run of byte tokens ends.
  EXPECT_EQ(d.push(0xD0 + 3), "");
  EXPECT_EQ(d.push(0xB6 + 3), "");
  EXPECT_EQ(d.push(261), "ж a");
  EXPECT_EQ(d.push(0xE2 + 3), "");
  EXPECT_EQ(d.flush(), "\uFFFD");  // an unfinished character at the end
}

TEST(TokenizerDetokenizer, ByteLevelHoldsAnIncompleteCharacter) {
  LLM42_SHARED_OR_SKIP(path, "tokenizers/llama3/tokenizer.json");
  const auto tok = load_hf_tokenizer(path);
  // U+1F600 as four byte-level tokens of one byte each.
  Ids ids;
  for (const char* byte : {"\xF0", "\x9F", "\x98", "\x80"}) {
    for (int32_t id = 0; id < tok->vocab_size(); ++id) {
      if (tok->token_bytes(id) == byte) {
        ids.push_back(id);
        break;
      }
    }
  }
  ASSERT_EQ(ids.size(), 4u);
  Detokenizer d(*tok);
  EXPECT_EQ(d.push(ids[0]), "");
  EXPECT_EQ(d.push(ids[1]), "");
  EXPECT_EQ(d.push(ids[2]), "");
  EXPECT_EQ(d.push(ids[3]), "\U0001F600");
  EXPECT_EQ(d.push(ids[0]), "");
  EXPECT_EQ(d.push(tok->encode("a", false)[0]), "\uFFFDa");  // cut short by another character
  EXPECT_EQ(d.flush(), "");
}

}  // namespace
}  // namespace llm42
