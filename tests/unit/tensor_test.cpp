#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/tensor.h"
#include "util/numeric.h"

namespace llm42 {
namespace {

TEST(Tensor, RowsAndReshape) {
  std::vector<float> data(24);
  Tensor t(data.data(), DType::kF32, Device::kCPU, {4, 6});
  EXPECT_EQ(t.numel(), 24);
  Tensor r = t.rows(1, 3);
  EXPECT_EQ(r.dim(0), 2);
  EXPECT_EQ(r.ptr<float>(), data.data() + 6);
  EXPECT_EQ(t.reshape({2, 3, 4}).dim(2), 4);
}

TEST(Numeric, Bf16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  // 1 + 2^-8 is exactly halfway between 1 and 1 + 2^-7: ties to even (1.0).
  EXPECT_EQ(f32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: ties to even (1 + 2^-6).
  EXPECT_EQ(f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
}

TEST(Numeric, F16RoundTripsEveryHalf) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = f16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(f32_to_f16(f), h) << "half 0x" << std::hex << h;
  }
}

}  // namespace
}  // namespace llm42
