// The Unicode pieces under the tokenizers: the U+FFFD replacement rule for invalid UTF-8, the
// incomplete-character test the detokenizer relies on, NFC with Hugging Face's Unicode 9.0
// tables, and the Oniguruma meaning given to PCRE2 patterns.
#include <gtest/gtest.h>

#include <string>

#include "tokenizer/regex.h"
#include "tokenizer/unicode_nfc.h"
#include "tokenizer/utf8.h"

namespace llm42 {
namespace {

const std::string R(utf8::kReplacementUtf8);

TEST(TokenizerUtf8, SanitizeReplacesEachMaximalInvalidSubsequence) {
  // Expected values are Python's bytes.decode('utf-8', 'replace').
  const std::pair<std::string, std::string> cases[] = {
      {"abc", "abc"},
      {"caf\xC3\xA9", "caf\xC3\xA9"},
      {"\x80", R},
      {"\xBF\x80", R + R},
      {"\xC0\x80", R + R},  // overlong lead bytes are never valid
      {"\xC3", R},          // truncated at the end
      {"\xE2\x82", R},      // one maximal prefix of a 3-byte character
      {"\xE2\x82"
       "A",
       R + "A"},
      {"\xF0\x9F\x98", R},
      {"\xF0\x9F\x98\xE2\x82\xAC", R + "\xE2\x82\xAC"},
      {"\xED\xA0\x80", R + R + R},          // a surrogate: ED only takes 80..9F
      {"\xE0\x80\x80", R + R + R},          // overlong 3-byte form
      {"\xF4\x90\x80\x80", R + R + R + R},  // above U+10FFFF
      {"\xF5\x80", R + R},
      {"\xFF\xFE", R + R},
      {"\xF8\x88\x80\x80\x80", R + R + R + R + R},
      {"a\xE2\x82\xAC"
       "b\xE2",
       "a\xE2\x82\xAC"
       "b" +
           R},
  };
  for (const auto& [in, want] : cases) {
    EXPECT_EQ(utf8::sanitize(in), want) << "input of " << in.size() << " bytes";
    EXPECT_TRUE(utf8::is_valid(utf8::sanitize(in)));
  }
  EXPECT_FALSE(utf8::is_valid("\xED\xA0\x80"));
  EXPECT_TRUE(utf8::is_valid("\xF4\x8F\xBF\xBF"));
}

TEST(TokenizerUtf8, IncompleteTailIsOnlyAPrefixThatCanStillComplete) {
  EXPECT_EQ(utf8::incomplete_tail(""), 0u);
  EXPECT_EQ(utf8::incomplete_tail("abc"), 0u);
  EXPECT_EQ(utf8::incomplete_tail("a\xC3"), 1u);
  EXPECT_EQ(utf8::incomplete_tail("a\xE2\x82"), 2u);
  EXPECT_EQ(utf8::incomplete_tail("\xF0\x9F\x98"), 3u);
  EXPECT_EQ(utf8::incomplete_tail("\xE2\x82\xAC"), 0u);  // complete
  EXPECT_EQ(utf8::incomplete_tail("a\x82"), 0u);         // a stray continuation byte
  EXPECT_EQ(utf8::incomplete_tail("\xED\xA0"), 0u);      // can never complete
  EXPECT_EQ(utf8::incomplete_tail("\xE2\xE2\x82"), 2u);
}

TEST(TokenizerUtf8, AppendEncodesEveryLength) {
  std::string s;
  for (char32_t cp : {0x41u, 0xE9u, 0x20ACu, 0x1F600u}) utf8::append(s, cp);
  EXPECT_EQ(s, "A\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80");
  size_t len = 0;
  EXPECT_EQ(utf8::decode(s, 6, len), 0x1F600u);
  EXPECT_EQ(len, 4u);
}

TEST(TokenizerNfc, ComposesReordersAndKeepsWhatHuggingFaceKeeps) {
  EXPECT_EQ(nfc("plain ASCII"), "plain ASCII");
  EXPECT_EQ(nfc("cafe\u0301"), "caf\u00e9");
  EXPECT_EQ(nfc("A\u030a"), "\u00c5");
  EXPECT_EQ(nfc("\u212b"), "\u00c5");  // a singleton decomposition never recomposes to itself
  // Combining marks are put in class order before composing: dot below (220) before acute (230).
  EXPECT_EQ(nfc("a\u0301\u0323"), "\u1ea1\u0301");
  EXPECT_EQ(nfc("\u1100\u1161\u11a8"), "\uac01");  // Hangul jamo L V T
  EXPECT_EQ(nfc("\uac00\u11a8"), "\uac01");        // LV + T
  EXPECT_EQ(nfc("\u0958"), "\u0915\u093c");        // a composition exclusion stays decomposed
  // U+11938 was added in Unicode 13: Hugging Face's tables (9.0) do not know it, so its
  // decomposed form stays decomposed and the character itself is left alone.
  EXPECT_EQ(nfc("\U00011935\U00011930"), "\U00011935\U00011930");
  EXPECT_EQ(nfc("\U00011938"), "\U00011938");
  // A blocked mark does not compose: the second acute is blocked by the first.
  EXPECT_EQ(nfc("e\u0301\u0301"), "\u00e9\u0301");
}

std::vector<std::string> matches(const Regex& re, std::string_view text) {
  std::vector<std::string> out;
  for (const auto& [b, e] : re.find_all(text)) out.emplace_back(text.substr(b, e - b));
  return out;
}

TEST(TokenizerRegex, PatternsMeanWhatTheyMeanToOniguruma) {
  // Oniguruma's \s is White_Space: U+180E (a format character since Unicode 6.3) is not in it.
  const Regex space("\\s+", "test");
  EXPECT_EQ(matches(space, "a \u180e\u3000b"), (std::vector<std::string>{" ", "\u3000"}));
  // Letters added after Unicode 14 (U+1C89, Unicode 16) are letters, inside classes too.
  const Regex letters("\\p{L}+", "test");
  EXPECT_EQ(matches(letters, "x\u1c89y 1"), (std::vector<std::string>{"x\u1c89y"}));
  const Regex not_letters("[^\\p{L}\\s]+", "test");
  EXPECT_EQ(matches(not_letters, "\u1c89!?"), (std::vector<std::string>{"!?"}));
  // Case-insensitive contractions, as in the Llama 3 pattern.
  const Regex contractions("(?i:'s|'t)", "test");
  EXPECT_EQ(matches(contractions, "it'S don'T"), (std::vector<std::string>{"'S", "'T"}));
  // Empty matches step over one whole character.
  const Regex empty("x*", "test");
  EXPECT_EQ(empty.find_all("\u00e9\u00e9").size(), 3u);
}

}  // namespace
}  // namespace llm42
