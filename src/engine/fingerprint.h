// Digests of what an answer depends on besides the weights, for system_fingerprint: equal
// digests mean the same model shape and numerics, or the same tokenization. None of them
// covers how the model is split over devices (tensor parallelism must not change an answer).
#pragma once

#include <cstdint>

#include "model/config.h"
#include "tokenizer/tokenizer.h"

namespace llm42 {

// Every field of the config.
uint64_t model_config_digest(const ModelConfig& c);

// The vocabulary (each token's bytes, special flags, byte-fallback bytes), BOS and EOS, and the
// ids of a probe text that exercises normalization, pre-tokenization and merges.
uint64_t tokenizer_digest(const Tokenizer& t);

}  // namespace llm42
