// The vocabulary a model file may carry (GGUF `tokenizer.ggml.*`): read by the checkpoint loader
// (model/checkpoint.h), turned into a tokenizer by tokenizer_from_vocab (tokenizer.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace llm42 {

// A vocabulary stored inside the model file (GGUF `tokenizer.ggml.*`).
struct EmbeddedVocab {
  std::string model;                // "llama" (SentencePiece BPE) or "gpt2" (byte-level BPE)
  std::string pre;                  // tokenizer.ggml.pre when present (e.g. "llama-bpe")
  std::vector<std::string> tokens;  // token text (SentencePiece pieces use U+2581 for space)
  std::vector<float> scores;        // merge priority, higher first (SentencePiece)
  // 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte
  std::vector<int32_t> token_types;
  std::vector<std::string> merges;  // "a b" pairs in rank order (gpt2)
  int bos_id = -1;
  int eos_id = -1;
  int unk_id = -1;
  int pad_id = -1;
  bool add_bos = true;
  std::string chat_template;  // tokenizer.chat_template (Jinja), "" when absent
};

}  // namespace llm42
