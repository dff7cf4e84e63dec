// Hugging Face tokenizer.json files (Llama 3, Qwen3, Llama 2) on a few strings whose ids were
// taken from HF `tokenizers` 0.22.1; tests/python/test_tokenizer_hf.py compares thousands more.
// Also: a GGUF `gpt2` vocabulary built from the Llama 3 file gives the same ids, and encoding
// 100 KB stays well under a second.
#include <gtest/gtest.h>

#include <algorithm>

#include <nlohmann/json.hpp>

#include "model/checkpoint.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"
#include "util/mapped_file.h"

namespace llm42 {
namespace {

using Ids = std::vector<int32_t>;

std::unique_ptr<Tokenizer> load(const std::string& name) {
  return load_hf_tokenizer(test::shared_dir() + "/tokenizers/" + name + "/tokenizer.json");
}

#define SKIP_WITHOUT_SHARED()                                              \
  do {                                                                     \
    if (test::shared_dir().empty())                                        \
      GTEST_SKIP() << "shared test data not found (set LLM42_SHARED_DIR)"; \
  } while (0)

TEST(TokenizerHf, Llama3) {
  SKIP_WITHOUT_SHARED();
  const auto tok = load("llama3");
  EXPECT_EQ(tok->vocab_size(), 128256);
  EXPECT_EQ(tok->encode("Hello world"), (Ids{9906, 1917}));
  // This tokenizer.json's post-processor is ByteLevel only: HF adds no <|begin_of_text|>.
  EXPECT_EQ(tok->encode("I'm here.\n\n  It's 2024!"),
            (Ids{40, 2846, 1618, 382, 220, 1102, 596, 220, 2366, 19, 0}));
  EXPECT_EQ(tok->encode("<|eot_id|>hi<|im_end|><s>"),
            (Ids{128009, 6151, 27, 91, 318, 6345, 91, 1822, 82, 29}));
  EXPECT_EQ(tok->encode("cafe\u0301 \ud55c\uad6d\uc5b4 \U0001F600"),
            (Ids{936, 1897, 54939, 104008, 32179, 91416}));
  EXPECT_EQ(tok->bos_id(), 128000);
  EXPECT_EQ(tok->eos_ids(), Ids{128001});
  EXPECT_EQ(tok->token_id("<|eot_id|>"), std::optional<int32_t>(128009));
  EXPECT_TRUE(tok->is_special(128009));
  EXPECT_FALSE(tok->is_special(9906));
  EXPECT_FALSE(tok->strips_leading_space());
  EXPECT_EQ(tok->decode(Ids{128000, 9906, 1917, 128009}, true), "Hello world");
  EXPECT_EQ(tok->decode(Ids{128000, 9906, 1917, 128009}, false),
            "<|begin_of_text|>Hello world<|eot_id|>");
  EXPECT_EQ(tok->token_bytes(1917), " world");
  EXPECT_EQ(tok->token_bytes(128009), "");
  EXPECT_EQ(tok->token_bytes(128009, true), "<|eot_id|>");
  // Literal special-token text is split like any other text.
  const Ids literal = tok->encode("<|eot_id|>", false, false);
  EXPECT_GT(literal.size(), 1u);
  EXPECT_EQ(tok->decode(literal), "<|eot_id|>");
}

TEST(TokenizerHf, Qwen3) {
  SKIP_WITHOUT_SHARED();
  const auto tok = load("qwen3");
  EXPECT_EQ(tok->vocab_size(), 151669);
  EXPECT_EQ(tok->encode("Hello world"), (Ids{9707, 1879}));
  EXPECT_EQ(tok->encode("I'm here.\n\n  It's 2024!"),
            (Ids{40, 2776, 1588, 382, 220, 1084, 594, 220, 17, 15, 17, 19, 0}));
  EXPECT_EQ(tok->encode("<|eot_id|>hi<|im_end|><s>"),
            (Ids{27, 91, 68, 354, 842, 91, 29, 6023, 151645, 44047, 29}));
  // NFC: the decomposed e + U+0301 encodes as the composed é.
  EXPECT_EQ(tok->encode("cafe\u0301 \ud55c\uad6d\uc5b4 \U0001F600"),
            (Ids{924, 58858, 130092, 31079, 90316}));
  EXPECT_EQ(tok->encode("caf\u00e9"), tok->encode("cafe\u0301"));
  EXPECT_EQ(tok->bos_id(), -1);
  EXPECT_EQ(tok->eos_ids(), Ids{151645});
  // <think> is an added token that is not special: always parsed, never skipped.
  const auto think = tok->token_id("<think>");
  ASSERT_TRUE(think.has_value());
  EXPECT_FALSE(tok->is_special(*think));
  EXPECT_EQ(tok->encode("<think>", false, false), Ids{*think});
  EXPECT_EQ(tok->decode(Ids{151644, *think}, true), "<think>");
}

TEST(TokenizerHf, Llama2) {
  SKIP_WITHOUT_SHARED();
  const auto tok = load("llama2");
  EXPECT_EQ(tok->vocab_size(), 32000);
  EXPECT_EQ(tok->encode("Hello world"), (Ids{1, 22557, 1526}));
  EXPECT_EQ(tok->encode("Hello world", false), (Ids{22557, 1526}));
  EXPECT_EQ(tok->encode("I'm here.\n\n  It's 2024!"),
            (Ids{1, 315, 28742, 28719, 1236, 28723, 13, 13, 28705, 661, 28742, 28713, 28705, 28750,
                 28734, 28750, 28781, 28808}));
  // Text after a special token is normalized on its own, so it gets its own U+2581.
  EXPECT_EQ(tok->encode("<|eot_id|>hi<|im_end|><s>"),
            (Ids{1, 523, 28766, 28706, 322, 28730, 313, 28766, 28767, 5365, 28789, 28766, 321,
                 28730, 416, 28766, 28767, 1}));
  EXPECT_EQ(tok->encode("cafe\u0301 \ud55c\uad6d\uc5b4 \U0001F600"),
            (Ids{1, 7913, 1512, 28949, 28705, 29282, 30779, 29433, 28705, 30575}));
  EXPECT_TRUE(tok->strips_leading_space());
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_ids(), Ids{2});
  EXPECT_EQ(tok->decode(Ids{1, 22557, 1526}, true), "Hello world");
  EXPECT_EQ(tok->decode(Ids{1, 22557, 1526}, false), "<s> Hello world");
}

// A GGUF `gpt2` vocabulary (what llama.cpp writes for Llama 3) built from the tokenizer.json.
TEST(TokenizerHf, GgufByteLevelVocabularyMatchesTheJson) {
  SKIP_WITHOUT_SHARED();
  const std::string path = test::shared_dir() + "/tokenizers/llama3/tokenizer.json";
  const nlohmann::json j = nlohmann::json::parse(read_file(path));
  EmbeddedVocab v;
  v.model = "gpt2";
  v.pre = "llama-bpe";
  v.tokens.resize(128256);
  v.token_types.assign(128256, 1);
  for (const auto& [text, id] : j["model"]["vocab"].items()) v.tokens[id.get<int>()] = text;
  for (const auto& t : j["added_tokens"]) {
    v.tokens[t["id"].get<int>()] = t["content"].get<std::string>();
    v.token_types[t["id"].get<int>()] = 3;
  }
  for (const auto& m : j["model"]["merges"]) v.merges.push_back(m.get<std::string>());
  v.bos_id = 128000;
  v.eos_id = 128001;
  v.add_bos = false;
  const auto gguf = tokenizer_from_vocab(v);
  const auto hf = load_hf_tokenizer(path);
  for (const char* text : {"Hello world", "I'm here.\n\n  It's 2024!", "<|eot_id|>x  \t\n y",
                           "cafe\u0301 \ud55c\uad6d\uc5b4 \U0001F600 12345 'LL"}) {
    EXPECT_EQ(gguf->encode(text), hf->encode(text)) << text;
    EXPECT_EQ(gguf->decode(hf->encode(text), false), hf->decode(hf->encode(text), false));
  }
}

TEST(TokenizerHf, InvalidUtf8IsReplacedBeforeEncoding) {
  SKIP_WITHOUT_SHARED();
  const auto tok = load("llama3");
  // Python: b"a\xe2\x82b\xff".decode("utf-8", "replace") == "a\ufffdb\ufffd"
  EXPECT_EQ(tok->encode("a\xE2\x82"
                        "b\xFF"),
            tok->encode("a\uFFFD"
                        "b\uFFFD"));
  EXPECT_EQ(tok->decode(tok->encode("a\xE2\x82"
                                    "b\xFF")),
            "a\uFFFD"
            "b\uFFFD");
}

// Long input round-trips (a quadratic merge loop would show up as this test hanging; the speed
// itself is a benchmark: `llm42 tokenize --input FILE` prints bytes/s, see docs/benchmarks.md).
// Numbered paragraphs of mixed scripts, emoji and code, up to `bytes`; `extra` goes in each.
std::string paragraphs(size_t bytes, const std::string& extra = "") {
  std::string text;
  for (int i = 0; text.size() < bytes; ++i)
    text += "Paragraph " + std::to_string(i) +
            ": The quick brown fox jumps over the lazy dog; naïve café, Привет мир, 你好世界 " +
            extra + "😀 def f(x): return x ** 2\n";
  return text;
}

TEST(TokenizerLongText, HundredKilobytesRoundTrip) {
  SKIP_WITHOUT_SHARED();
  const std::string text = paragraphs(100'000);
  for (const char* name : {"llama3", "qwen3", "llama2"}) {
    const auto tok = load(name);
    const Ids ids = tok->encode(text);
    EXPECT_GT(ids.size(), text.size() / 8) << name;
    EXPECT_EQ(tok->decode(ids), text) << name;
  }
}

// encode's work bound: below it the whole encoding; past it the encoding stops after the word
// that crosses the bound, holding a prefix of the whole encoding (the server refuses such a
// prompt without tokenizing the rest).
TEST(TokenizerLongText, EncodeStopsPastItsBound) {
  SKIP_WITHOUT_SHARED();
  const std::string text = paragraphs(300'000, "<|eot_id|> ");
  for (const char* name : {"llama3", "qwen3", "llama2"}) {
    const auto tok = load(name);
    const Ids whole = tok->encode(text);
    for (const size_t bound : {size_t{0}, size_t{1}, size_t{37}, size_t{4096}}) {
      const Ids cut = tok->encode(text, true, true, bound);
      ASSERT_GT(cut.size(), bound) << name;
      ASSERT_LE(cut.size(), whole.size()) << name;
      EXPECT_TRUE(std::equal(cut.begin(), cut.end(), whole.begin())) << name << " bound " << bound;
      // Where the pre-tokenizer cuts the text into words (byte-level BPE) it stops within a
      // word of the bound; SentencePiece-style text (Llama 2) is one word, merged whole.
      if (std::string(name) != "llama2") EXPECT_LT(cut.size(), bound + 64) << name;
    }
    EXPECT_EQ(tok->encode(text, true, true, whole.size()), whole) << name;
  }
}

}  // namespace
}  // namespace llm42
