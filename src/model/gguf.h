// GGUF version 3 (ggml-org/ggml docs/gguf.md), little-endian:
//   header:        "GGUF", u32 version, u64 n_tensors, u64 n_kv
//   metadata (n_kv): string key, u32 value type, value
//                  (string = u64 length + bytes; array = u32 element type, u64 count, elements)
//   tensor infos (n_tensors): string name, u32 n_dims, u64 ne[n_dims] (innermost first),
//                  u32 ggml type, u64 offset (relative to the data section)
//   padding to `general.alignment` (default 32), then the data section.
// Only architecture `llama` is loaded as a model; its Q and K rows keep Meta's layout (RoPE on
// adjacent pairs).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "model/checkpoint.h"
#include "model/gguf_quant.h"
#include "util/mapped_file.h"

namespace llm42 {

enum class GgufType : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};

// A parsed GGUF file: its metadata (decoded on lookup) and tensor views into the mapping. The
// constructor checks the whole structure against the file size (every length, count, offset and
// tensor extent) before allocating anything sized by it, and throws llm42::Error naming the file,
// the byte offset and the field. Tensor types other than F32, F16, BF16 and the block-quantized
// ones of gguf_quant.h are rejected there, and so are quantized rows that are not whole blocks.
class GgufFile {
 public:
  explicit GgufFile(const std::string& path);

  struct Tensor {
    std::string name;
    DType dtype = DType::kF32;   // F32 for quantized tensors: what they dequantize to
    std::vector<int64_t> shape;  // outermost first: GGUF's ne[] reversed
    const uint8_t* data = nullptr;
    size_t nbytes = 0;                   // stored bytes (blocks, for quantized tensors)
    size_t offset = 0;                   // of the data in the file
    const QuantFormat* quant = nullptr;  // the block format, null for F32, F16 and BF16
  };

  const std::string& path() const { return file_->path(); }
  const std::vector<Tensor>& tensors() const { return tensors_; }
  bool has(const std::string& key) const { return metadata_.count(key) != 0; }

  // Typed metadata lookups: nullopt when the key is absent; an error naming the key when its
  // type does not match. Integer lookups accept every integer type and check the range.
  std::optional<int64_t> get_int(const std::string& key) const;
  std::optional<double> get_float(const std::string& key) const;  // f32 or f64
  std::optional<bool> get_bool(const std::string& key) const;
  std::optional<std::string> get_string(const std::string& key) const;
  std::optional<std::vector<std::string>> get_strings(const std::string& key) const;
  std::optional<std::vector<float>> get_floats(const std::string& key) const;
  std::optional<std::vector<int32_t>> get_ints(const std::string& key) const;
  // Number of elements of an array, without decoding it.
  std::optional<uint64_t> array_size(const std::string& key) const;

  // Hands over the mapping the tensor views point into.
  std::unique_ptr<MappedFile> release_file() { return std::move(file_); }

 private:
  struct Entry {
    GgufType type;
    size_t offset;  // of the value, just after its type
  };
  struct Array {
    GgufType elem;
    uint64_t count;  // checked against the bytes left in the file
    size_t first;    // offset of the first element
  };
  // The entry of `key`, or null when absent; an error when `ok` rejects its type.
  const Entry* lookup(const std::string& key, bool (*ok)(GgufType), const char* want) const;
  // The array value of an existing `key`; an error when `ok` rejects its element type.
  Array array(const std::string& key, bool (*ok)(GgufType), const char* want) const;

  std::unique_ptr<MappedFile> file_;
  std::map<std::string, Entry> metadata_;
  std::vector<Tensor> tensors_;
};

// Loads a GGUF `llama` model: config from `llama.*` metadata, tensors renamed to Hugging Face
// names (token_embd -> model.embed_tokens, blk.N.attn_q -> model.layers.N.self_attn.q_proj, ...),
// rope_layout kInterleaved, tied embeddings when `output.weight` is absent, `rope_freqs.weight`
// into config.rope_freq_factors, and the vocabulary from `tokenizer.ggml.*`. Tensors are not
// checked against the config here; load_checkpoint does that. Block-quantized tensors are
// dequantized to f32 into Checkpoint::dequantized; a block whose scales make a value inf or NaN
// is refused as corrupt, naming the tensor, the block and its file offset.
Checkpoint load_gguf(const std::string& path);

// Only the vocabulary of a GGUF file (`tokenizer.ggml.*`), without its tensors: a vocab-only
// file is enough. Throws llm42::Error naming the file when it carries none.
EmbeddedVocab load_gguf_vocab(const std::string& path);

}  // namespace llm42
