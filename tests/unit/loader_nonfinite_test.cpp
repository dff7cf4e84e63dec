// Weights that are NaN or infinite are refused at load, naming the file, the tensor and the
// element: such a model would serve NaN logits (reported as -9999.0 logprobs before).
#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "model/checkpoint.h"
#include "test_util.h"
#include "util/error.h"
#include "util/mapped_file.h"

namespace llm42 {
namespace {

namespace fs = std::filesystem;

TensorView view(DType dtype, std::vector<int64_t> shape, const std::vector<uint8_t>& bytes) {
  TensorView t;
  t.name = "w";
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.data = bytes.data();
  t.nbytes = bytes.size();
  t.file = "model.bin";
  return t;
}

template <typename T>
std::vector<uint8_t> bytes_of(const std::vector<T>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(T));
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

std::string error_of(const TensorView& t) {
  try {
    check_finite(t);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(CheckFinite, EveryDtypeAndTheElementNamed) {
  constexpr float kMax = std::numeric_limits<float>::max();
  // F32: the largest finite values pass; NaN and both infinities do not, wherever they are
  // (past the first scan block too).
  std::vector<float> f(3 * 5000, 0.5f);
  f[7] = kMax;
  f[8] = -kMax;
  EXPECT_EQ(error_of(view(DType::kF32, {3, 5000}, bytes_of(f))), "");
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    std::vector<float> g = f;
    g[2 * 5000 + 4321] = bad;
    const std::string msg = error_of(view(DType::kF32, {3, 5000}, bytes_of(g)));
    EXPECT_NE(msg.find("model.bin: tensor 'w' [3, 5000]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("non-finite"), std::string::npos) << msg;
    EXPECT_NE(msg.find("at [2, 4321]"), std::string::npos) << msg;
  }
  // F16: 0x7BFF is the largest finite value, 0x7C00 infinity, 0x7E00 NaN.
  std::vector<uint16_t> h(64, 0x3C00);
  h[3] = 0x7BFF;
  h[4] = 0xFBFF;
  EXPECT_EQ(error_of(view(DType::kF16, {64}, bytes_of(h))), "");
  for (uint16_t bad : {0x7C00, 0xFC00, 0x7E00}) {
    std::vector<uint16_t> g = h;
    g[10] = bad;
    EXPECT_NE(error_of(view(DType::kF16, {64}, bytes_of(g))).find("at [10]"), std::string::npos);
  }
  // BF16: 0x7F7F is the largest finite value, 0x7F80 infinity, 0x7FC0 NaN.
  std::vector<uint16_t> b(64, 0x3F80);
  b[3] = 0x7F7F;
  EXPECT_EQ(error_of(view(DType::kBF16, {8, 8}, bytes_of(b))), "");
  for (uint16_t bad : {0x7F80, 0xFF80, 0x7FC0}) {
    std::vector<uint16_t> g = b;
    g[63] = bad;
    EXPECT_NE(error_of(view(DType::kBF16, {8, 8}, bytes_of(g))).find("at [7, 7]"),
              std::string::npos);
  }
}

// A real model file with one weight overwritten: the loader refuses it.
TEST(LoaderNonFinite, CraftedModelFileIsRefusedNamingTheTensor) {
  const std::string dir = test::shared_dir();
  if (dir.empty()) GTEST_SKIP() << "shared test data not found (set LLM42_SHARED_DIR)";
  const std::string original = dir + "/models/stories260K/stories260K.bin";
  const fs::path copy = fs::temp_directory_path() / fmt::format("llm42-nan-{}.bin", getpid());
  fs::copy_file(original, copy, fs::copy_options::overwrite_existing);
  const std::string name = "model.layers.1.mlp.down_proj.weight";
  size_t offset = 0;
  int64_t cols = 0;
  {
    const Checkpoint ckpt = load_checkpoint(copy.string());
    const TensorView& t = ckpt.tensors.at(name);
    ASSERT_EQ(t.dtype, DType::kF32);
    offset = static_cast<size_t>(t.data - ckpt.files[0]->data());
    cols = t.shape[1];
  }
  const int64_t element = 3 * cols + 2;  // [3, 2]
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const int fd = ::open(copy.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pwrite(fd, &nan, sizeof nan, static_cast<off_t>(offset + element * sizeof(float))),
            static_cast<ssize_t>(sizeof nan));
  ::close(fd);
  try {
    load_checkpoint(copy.string());
    ADD_FAILURE() << "a model with a NaN weight loaded";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(copy.string()), std::string::npos) << msg;
    EXPECT_NE(msg.find("'" + name + "'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("non-finite value (NaN or Inf) at [3, 2]"), std::string::npos) << msg;
  }
  fs::remove(copy);
}

}  // namespace
}  // namespace llm42
