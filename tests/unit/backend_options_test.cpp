// Backend options are checked by make_backend before any device is touched, so a bad CUDA option
// is refused on the CPU too, with the flag's name: --cuda-attention-tall takes auto, mixed or
// never; --cuda-canonical-m-step 0 or a power of two from 8 to 4096.
#include <gtest/gtest.h>

#include <string>

#include "backend/backend.h"
#include "util/error.h"

namespace llm42::test {
namespace {

std::string refusal(const BackendOptions& o) {
  try {
    make_backend(o);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(BackendOptions, AttentionTallTakesAutoMixedOrNever) {
  for (const char* ok : {"auto", "mixed", "never"}) {
    BackendOptions o;
    o.threads = 1;
    o.cuda.attention_tall = ok;
    EXPECT_EQ(refusal(o), "") << ok;
  }
  for (const char* bad : {"", "Mixed", "always", "tall"}) {
    BackendOptions o;
    o.threads = 1;
    o.cuda.attention_tall = bad;
    const std::string why = refusal(o);
    EXPECT_NE(why.find("--cuda-attention-tall"), std::string::npos) << "'" << bad << "': " << why;
    EXPECT_NE(why.find("auto, mixed or never"), std::string::npos) << why;
  }
}

TEST(BackendOptions, CanonicalMStepIsZeroOrAPowerOfTwo) {
  for (int bad : {4, 12, 8192, -8}) {
    BackendOptions o;
    o.threads = 1;
    o.cuda.canonical_m_step = bad;
    EXPECT_NE(refusal(o).find("--cuda-canonical-m-step"), std::string::npos) << bad;
  }
  BackendOptions o;
  o.threads = 1;
  o.cuda.canonical_m_step = 0;
  EXPECT_EQ(refusal(o), "");
}

}  // namespace
}  // namespace llm42::test
