// The one-token-per-byte tokenizer of dummy models: bytes at ids 3..258, control tokens around.
#include <gtest/gtest.h>

#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace llm42 {
namespace {

using Ids = std::vector<int32_t>;

TEST(TokenizerByte, EncodesBytesAfterTheControlIds) {
  const auto tok = make_byte_tokenizer(300, 1, 2);
  EXPECT_EQ(tok->vocab_size(), 300);
  EXPECT_EQ(tok->encode("Hi", true), (Ids{1, 'H' + 3, 'i' + 3}));
  EXPECT_EQ(tok->encode("é", false), (Ids{0xC3 + 3, 0xA9 + 3}));
  EXPECT_EQ(tok->encode("\xFF", false), (Ids{0xEF + 3, 0xBF + 3, 0xBD + 3}));  // U+FFFD
  EXPECT_EQ(tok->decode(Ids{1, 'H' + 3, 'i' + 3, 2}), "Hi");
  EXPECT_EQ(tok->decode(Ids{1, 'H' + 3, 2, 299}, false), "<s>H</s><ctrl_299>");
  EXPECT_EQ(tok->decode(Ids{0xC3 + 3}), "\uFFFD");
  EXPECT_EQ(tok->token_id("<s>"), std::optional<int32_t>(1));
  EXPECT_EQ(tok->token_id("<ctrl_0>"), std::optional<int32_t>(0));
  EXPECT_EQ(tok->token_id("<ctrl_5>"), std::nullopt);  // id 5 is a byte
  EXPECT_EQ(tok->token_id("A"), std::optional<int32_t>('A' + 3));
  EXPECT_TRUE(tok->is_special(0));
  EXPECT_TRUE(tok->is_special(259));
  EXPECT_FALSE(tok->is_special(3));
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_ids(), Ids{2});
}

TEST(TokenizerByte, RejectsImpossibleLayouts) {
  EXPECT_THROW(make_byte_tokenizer(258, 1, 2), Error);
  EXPECT_THROW(make_byte_tokenizer(300, 10, 2), Error);  // BOS on a byte
  EXPECT_THROW(make_byte_tokenizer(300, 1, 300), Error);
  EXPECT_THROW(make_byte_tokenizer(300, -1, 2), Error);
  EXPECT_NO_THROW(make_byte_tokenizer(259, 0, 2));
}

}  // namespace
}  // namespace llm42
