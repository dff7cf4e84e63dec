// A SentencePiece BPE vocabulary with scores (llama2.c tokenizer files, GGUF `llama`
// vocabularies) made into the BpeTokenizer pipeline, with the behavior of SentencePiece and of
// llama2.c's run.c: a dummy-prefix U+2581 before non-empty text, spaces as U+2581, merges of the
// best-scoring piece first (leftmost on ties), byte fallback to <0xAB> tokens; decoding drops the
// output's one leading space, as HF's Llama 2 decoder does.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace llm42 {

struct SentencePieceVocab {
  enum TokenType : int32_t {
    kNormal = 1,
    kUnknown = 2,
    kControl = 3,
    kUserDefined = 4,
    kUnused = 5,
    kByte = 6,
  };
  std::vector<std::string> pieces;  // U+2581 for space
  std::vector<float> scores;        // one per piece
  std::vector<int32_t> types;       // one per piece (GGUF token types)
  int32_t bos_id = -1, eos_id = -1, unk_id = -1;
  bool add_bos = true;
};

// Unknown and control tokens become special tokens (matched in text when special tokens are
// parsed, skipped by decode(skip_special)); user-defined tokens become plain added tokens.
// `source` names where the vocabulary comes from, for messages.
std::unique_ptr<Tokenizer> make_sentencepiece_tokenizer(SentencePieceVocab vocab,
                                                        const std::string& source);

}  // namespace llm42
