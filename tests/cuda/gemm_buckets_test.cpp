// The canonical GEMM's M buckets (host code: runs without a GPU, in CI too). Each bucket runs
// one autotuned algorithm, tuned at the bucket's size; warm-up calls every size that
// bucket_sizes lists, so every M a pass can have must fall in a listed bucket (or share the
// largest bucket's algorithm), and no listed size may be missing its own bucket. Up to 256 the
// buckets are the decode graph sizes, so that a graph pass runs each GEMM at its tuned M.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/gemm.h"
#include "engine/model_runner.h"

namespace llm42 {
namespace {

using cuda::GemmRunner;

TEST(GemmBuckets, GraphSizesThenMultiplesOfTheStep) {
  // Up to 256: the sizes decode graphs pad to.
  for (int m = 1; m <= GemmRunner::kGraphRangeM; ++m)
    EXPECT_EQ(GemmRunner::m_bucket(m, 128), ModelRunner::graph_bucket(m)) << "M " << m;
  struct Case {
    int m, step, bucket;
  };
  const Case cases[] = {{3, 128, 4},
                        {9, 128, 16},
                        {129, 128, 136},
                        {256, 128, 256},
                        {257, 128, 384},
                        {520, 128, 640},
                        {4000, 128, 4096},
                        {9000, 128, GemmRunner::kMaxBucket},
                        // Step 0: powers of two throughout (the buckets before the step existed).
                        {257, 0, 512},
                        {520, 0, 1024},
                        {3000, 0, 4096},
                        {9000, 0, 4096},
                        // A large step: its multiples above 256.
                        {300, 1024, 1024},
                        {1100, 1024, 2048}};
  for (const Case& c : cases)
    EXPECT_EQ(GemmRunner::m_bucket(c.m, c.step), c.bucket) << "M " << c.m << " step " << c.step;
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
  // The default step: 1, 2, 4, 8, 31 more multiples of 8 to 256, 30 multiples of 128 to 4096.
  EXPECT_EQ(GemmRunner::bucket_sizes(4096, 128).size(), 4u + 31u + 30u);
  EXPECT_EQ(GemmRunner::bucket_sizes(8192, 128).size(), 4u + 31u + 30u + 1u);
}

}  // namespace
}  // namespace llm42

namespace llm42 {
namespace {

// The canonical GEMM table on disk is a cache: a file that is valid JSON of another shape (or
// with wrong entries) must be dropped with a warning, never stop the backend from starting.
TEST(GemmCache, MalformedFilesAreDroppedNotFatal) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA GPU on this machine";
  const std::string path = ::testing::TempDir() + "llm42-gemm-cache-test.json";
  setenv("LLM42_GEMM_CACHE", path.c_str(), 1);
  for (const char* text : {"[1, 2, 3]", "{\"entries\": 7}", "{\"entries\": [{\"bucket\": \"x\"}]}",
                           "{\"entries\": [{\"bucket\": 8, \"n\": 64, \"k\": 64, \"out\": \"q9\", "
                           "\"algo\": [\"zz\"]}]}",
                           "{\"entries\": [{\"bucket\": 8, \"n\": 64, \"k\": 64, \"out\": \"f32\", "
                           "\"algo\": [\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"zz\"]}]}"}) {
    std::ofstream(path) << text;
    cudaStream_t stream = nullptr;
    ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
    EXPECT_NO_THROW({ cuda::GemmRunner runner(stream, "test", true, 128); }) << text;
    cudaStreamDestroy(stream);
  }
  unsetenv("LLM42_GEMM_CACHE");
  std::remove(path.c_str());
}

}  // namespace
}  // namespace llm42
