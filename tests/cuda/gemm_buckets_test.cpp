// The canonical GEMM's M buckets (host code: runs without a GPU, in CI too). Each bucket runs
// one autotuned algorithm, tuned at the bucket's size; warm-up calls every size that
// bucket_sizes lists, so every M a pass can have must fall in a listed bucket (or share the
// largest bucket's algorithm), and no listed size may be missing its own bucket.
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "backend/cuda/gemm.h"

namespace llm42 {
namespace {

using cuda::GemmRunner;

TEST(GemmBuckets, PowersOfTwoThenMultiplesOfTheStep) {
  EXPECT_EQ(GemmRunner::m_bucket(1, 128), 1);
  EXPECT_EQ(GemmRunner::m_bucket(3, 128), 4);
  EXPECT_EQ(GemmRunner::m_bucket(128, 128), 128);
  EXPECT_EQ(GemmRunner::m_bucket(129, 128), 256);
  EXPECT_EQ(GemmRunner::m_bucket(257, 128), 384);
  EXPECT_EQ(GemmRunner::m_bucket(520, 128), 640);
  EXPECT_EQ(GemmRunner::m_bucket(4000, 128), 4096);
  EXPECT_EQ(GemmRunner::m_bucket(9000, 128), GemmRunner::kMaxBucket);
  // Step 0: powers of two throughout (the buckets before the step existed).
  EXPECT_EQ(GemmRunner::m_bucket(257, 0), 512);
  EXPECT_EQ(GemmRunner::m_bucket(520, 0), 1024);
  EXPECT_EQ(GemmRunner::m_bucket(3000, 0), 4096);
  EXPECT_EQ(GemmRunner::m_bucket(9000, 0), 4096);
  // A large step: powers of two below it.
  EXPECT_EQ(GemmRunner::m_bucket(700, 1024), 1024);
  EXPECT_EQ(GemmRunner::m_bucket(1100, 1024), 2048);
}

TEST(GemmBuckets, WarmUpSizesCoverEveryM) {
  for (int step : {0, 8, 64, 128, 512, 4096}) {
    for (int limit : {1, 7, 64, 200, 2048, 2049, 4096, 8192}) {
      SCOPED_TRACE(testing::Message() << "step " << step << " limit " << limit);
      const std::vector<int> sizes = GemmRunner::bucket_sizes(limit, step);
      ASSERT_FALSE(sizes.empty());
      EXPECT_EQ(sizes.back(), limit);
      EXPECT_TRUE(std::is_sorted(sizes.begin(), sizes.end()));
      EXPECT_EQ(std::adjacent_find(sizes.begin(), sizes.end()), sizes.end());
      // Every size but the limit is a bucket's own size (so the warm-up tunes the bucket at its
      // largest M).
      for (size_t i = 0; i + 1 < sizes.size(); ++i)
        EXPECT_EQ(GemmRunner::m_bucket(sizes[i], step), sizes[i]);
      // Every M up to the limit lands in a bucket whose size is listed, or (above the limit,
      // or above the largest bucket) is tuned by the limit's call.
      for (int m = 1; m <= limit; ++m) {
        const int b = GemmRunner::m_bucket(m, step);
        if (b >= limit || b == GemmRunner::m_bucket(limit, step)) continue;
        EXPECT_TRUE(std::binary_search(sizes.begin(), sizes.end(), b)) << "M " << m;
      }
    }
  }
  // The default step lists 8 powers of two and then 31 multiples of 128 up to 4096.
  EXPECT_EQ(GemmRunner::bucket_sizes(4096, 128).size(), 8u + 31u);
  EXPECT_EQ(GemmRunner::bucket_sizes(8192, 128).size(), 8u + 31u + 1u);
}

}  // namespace
}  // namespace llm42
