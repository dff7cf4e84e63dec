// SentencePiece-style tokenizers with scores: stories260K's llama2.c tokenizer (tok512.bin) must
// give the ids that run.c gave for the golden outputs, decode them to the golden text, and agree
// with the same vocabulary read from the model's GGUF file.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <sstream>

#include "model/checkpoint.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"
#include "util/mapped_file.h"

namespace llm42 {
namespace {

std::vector<int32_t> golden_ids(const std::string& dir) {
  const std::string text = read_file(dir + "/golden/greedy_ids_from_bos_40.txt");
  std::vector<int32_t> ids;
  std::stringstream ss(text.substr(text.find('[') + 1, text.find(']') - text.find('[') - 1));
  for (std::string item; std::getline(ss, item, ',');) ids.push_back(std::stoi(item));
  return ids;
}

// The text after the ids, in Python's repr quotes, as the golden file shows it.
std::string golden_ids_text(const std::string& dir) {
  const std::string text = read_file(dir + "/golden/greedy_ids_from_bos_40.txt");
  const size_t open = text.find('\'', text.find(']'));
  return text.substr(open + 1, text.rfind('\'') - open - 1);
}

std::string rstrip(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

class TokenizerStories : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::shared_dir();
    if (dir_.empty()) GTEST_SKIP() << "shared test data not found (set LLM42_SHARED_DIR)";
    dir_ += "/models/stories260K";
    tok_ = load_llama2c_tokenizer(dir_ + "/tok512.bin", 512);
  }
  std::string dir_;
  std::unique_ptr<Tokenizer> tok_;
};

TEST_F(TokenizerStories, PromptEncodesAsRunC) {
  // run.c: BOS, then the dummy-prefix space, merged by score: " Once" " upon" " a" " time".
  EXPECT_EQ(tok_->encode("Once upon a time", true), (std::vector<int32_t>{1, 403, 407, 261, 378}));
  EXPECT_EQ(tok_->encode("Once upon a time", false), (std::vector<int32_t>{403, 407, 261, 378}));
  EXPECT_TRUE(tok_->encode("", false).empty());
  EXPECT_EQ(tok_->encode("", true), std::vector<int32_t>{1});
  EXPECT_EQ(tok_->bos_id(), 1);
  EXPECT_EQ(tok_->eos_ids(), std::vector<int32_t>{2});
  EXPECT_EQ(tok_->vocab_size(), 512);
  EXPECT_TRUE(tok_->strips_leading_space());
}

TEST_F(TokenizerStories, GoldenIdsDecodeToTheGoldenText) {
  const std::vector<int32_t> ids = golden_ids(dir_);
  ASSERT_EQ(ids.size(), 40u);
  std::string pieces;
  for (int32_t id : ids) pieces += tok_->token_bytes(id);
  EXPECT_EQ(pieces, golden_ids_text(dir_));  // in the middle of a stream nothing is stripped
  const std::string text = tok_->decode(ids);
  EXPECT_EQ(" " + text, golden_ids_text(dir_));  // decode drops the first leading space
  EXPECT_EQ(tok_->decode(std::vector<int32_t>{1, 403, 407}, true), "Once upon");
  EXPECT_EQ(tok_->decode(std::vector<int32_t>{1, 403, 407}, false), "<s> Once upon");
}

TEST_F(TokenizerStories, GoldenTextsRoundTrip) {
  for (const char* name :
       {"greedy_text_256_steps_from_bos.txt", "greedy_text_64_steps_prompt_once_upon_a_time.txt"}) {
    const std::string text = rstrip(read_file(dir_ + "/golden/" + name));
    const std::vector<int32_t> ids = tok_->encode(text, true);
    EXPECT_EQ(ids.front(), 1);
    EXPECT_EQ(tok_->decode(ids), text) << name;
  }
}

TEST_F(TokenizerStories, BytesOutsideTheVocabularyFallBackToByteTokens) {
  // 'ж' is not among the 512 pieces: its two UTF-8 bytes become <0xD0> <0xB6> (ids byte + 3).
  const std::vector<int32_t> ids = tok_->encode("ж", false);
  ASSERT_GE(ids.size(), 2u);
  EXPECT_EQ(std::vector<int32_t>(ids.end() - 2, ids.end()),
            (std::vector<int32_t>{0xD0 + 3, 0xB6 + 3}));
  EXPECT_EQ(tok_->decode(ids), "ж");
  EXPECT_EQ(tok_->fallback_byte(0xD0 + 3), std::optional<uint8_t>(0xD0));
  // A run of byte tokens that is not valid UTF-8 gives one U+FFFD per byte, as HF's
  // ByteFallback decoder does, even where part of the run would be valid.
  EXPECT_EQ(tok_->decode(std::vector<int32_t>{0xD0 + 3}), "\xEF\xBF\xBD");
  EXPECT_EQ(tok_->decode(std::vector<int32_t>{'A' + 3, 0xD0 + 3}), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(tok_->decode(std::vector<int32_t>{0xD0 + 3, 403, 0xB6 + 3}),
            "\xEF\xBF\xBD Once\xEF\xBF\xBD");
}

TEST_F(TokenizerStories, SpecialTokensInText) {
  EXPECT_EQ(tok_->token_id("<s>"), std::optional<int32_t>(1));
  EXPECT_EQ(tok_->token_id("</s>"), std::optional<int32_t>(2));
  EXPECT_TRUE(tok_->is_special(0));
  EXPECT_FALSE(tok_->is_special(403));
  // Parsed: the control token, and the text after it gets its own dummy prefix, as in HF.
  const std::vector<int32_t> parsed = tok_->encode("Once</s>", false, true);
  EXPECT_EQ(parsed, (std::vector<int32_t>{403, 2}));
  const std::vector<int32_t> literal = tok_->encode("Once</s>", false, false);
  EXPECT_EQ(std::count(literal.begin(), literal.end(), 2), 0);
  EXPECT_EQ(tok_->decode(literal), "Once</s>");
}

TEST_F(TokenizerStories, EmbeddedVocabGivesTheSameIds) {
  // The vocabulary as a GGUF `llama` file carries it (U+2581 for space, token types).
  EmbeddedVocab v;
  v.model = "llama";
  const MappedFile f(dir_ + "/tok512.bin");
  size_t at = 4;
  for (int id = 0; id < 512; ++id) {
    float score;
    int32_t len;
    std::memcpy(&score, f.data() + at, 4);
    std::memcpy(&len, f.data() + at + 4, 4);
    std::string piece(reinterpret_cast<const char*>(f.data() + at + 8), len);
    at += 8 + len;
    std::string sp;
    for (char c : piece) sp += c == ' ' ? std::string("\u2581") : std::string(1, c);
    if (id < 3) sp = std::string(id == 0 ? "<unk>" : id == 1 ? "<s>" : "</s>");
    v.tokens.push_back(sp);
    v.scores.push_back(score);
    v.token_types.push_back(id == 0 ? 2 : id < 3 ? 3 : id < 259 ? 6 : 1);
  }
  v.bos_id = 1;
  v.eos_id = 2;
  v.unk_id = 0;
  const std::unique_ptr<Tokenizer> gguf = tokenizer_from_vocab(v);
  for (const std::string& text :
       {std::string("Once upon a time"),
        rstrip(read_file(dir_ + "/golden/greedy_text_256_steps_from_bos.txt")),
        std::string("  two  spaces, ж and 😀\n")}) {
    EXPECT_EQ(gguf->encode(text), tok_->encode(text)) << text;
    EXPECT_EQ(gguf->decode(tok_->encode(text)), tok_->decode(tok_->encode(text)));
  }
}

TEST_F(TokenizerStories, GgufFileVocabularyMatchesTheLlama2cFile) {
  const Checkpoint ckpt = load_checkpoint(dir_ + "/stories260K-f32.gguf");
  ASSERT_TRUE(ckpt.vocab.has_value()) << "the GGUF file carries tokenizer.ggml.*";
  const std::unique_ptr<Tokenizer> gguf = tokenizer_from_vocab(*ckpt.vocab);
  EXPECT_EQ(gguf->encode("Once upon a time"), (std::vector<int32_t>{1, 403, 407, 261, 378}));
  const std::vector<int32_t> ids = golden_ids(dir_);
  EXPECT_EQ(gguf->decode(ids), tok_->decode(ids));
}

}  // namespace
}  // namespace llm42
