// The engine's configuration as the Engine resolves and checks it: the KV pool's share of free
// memory is auto (-1) by default (0.9 on CUDA, 0.5 on the CPU), an explicit share is kept, and
// any other value outside (0, 1] (NaN and other negatives included) is refused with the flag's
// name.
#include <gtest/gtest.h>

#include <limits>
#include <string>

#include "backend/backend.h"
#include "engine/engine.h"
#include "model/transformer.h"
#include "model/weights.h"
#include "test_util.h"
#include "util/error.h"

namespace llm42::test {
namespace {

class EngineConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    BackendOptions o;
    o.threads = 1;
    backend_ = make_backend(o);
    model_ = std::make_unique<Transformer>(
        *backend_, dummy_weights(*backend_, tiny_test_config(), DType::kF32, 1), 64, 64);
  }

  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Transformer> model_;
};

TEST_F(EngineConfigTest, KvCacheFractionAutoOnTheCpuIsHalf) {
  EngineConfig c;
  c.max_num_seqs = 4;
  EXPECT_LT(c.kv_cache_memory_fraction, 0) << "the default is auto";
  Engine engine(*model_, c, nullptr);
  EXPECT_EQ(engine.config().kv_cache_memory_fraction, 0.5);
  EXPECT_GT(engine.num_kv_blocks(), 0);
}

TEST_F(EngineConfigTest, KvCacheFractionExplicitIsKept) {
  EngineConfig c;
  c.max_num_seqs = 4;
  c.kv_cache_memory_fraction = 0.25;
  Engine engine(*model_, c, nullptr);
  EXPECT_EQ(engine.config().kv_cache_memory_fraction, 0.25);
}

TEST_F(EngineConfigTest, KvCacheFractionOutsideTheRangeIsRefused) {
  for (double f : {0.0, 1.5, -0.3, -std::numeric_limits<double>::infinity(),
                   std::numeric_limits<double>::quiet_NaN()}) {
    EngineConfig c;
    c.kv_cache_memory_fraction = f;
    try {
      Engine engine(*model_, c, nullptr);
      ADD_FAILURE() << "fraction " << f << " accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("--kv-cache-memory-fraction"), std::string::npos)
          << e.what();
    }
  }
}

}  // namespace
}  // namespace llm42::test
