// A model checkpoint as read from disk: its config and named tensor views into mapped files.
// Tensor names are the Hugging Face ones (`model.layers.0.self_attn.q_proj.weight`, ...) whatever
// the format; GGUF and llama2.c loaders translate theirs. Shapes are row-major, outermost first
// (a linear layer's weight is (out_features, in_features)).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "model/config.h"
#include "tokenizer/embedded_vocab.h"
#include "util/mapped_file.h"

namespace llm42 {

struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // inside one of Checkpoint::files or Checkpoint::dequantized
  size_t nbytes = 0;
  std::string file;  // where it came from, for error messages

  int64_t numel() const;
  std::string shape_string() const;
};

struct Checkpoint {
  std::string path;    // what the user named
  std::string format;  // "safetensors", "gguf" or "llama2c"
  ModelConfig config;
  std::string config_source;  // where `config` was read from (config.json, a file header)
  std::map<std::string, TensorView> tensors;
  std::vector<std::unique_ptr<MappedFile>> files;
  // Host copies of block-quantized GGUF tensors, dequantized to f32 at load (4 bytes a value).
  std::vector<std::vector<float>> dequantized;
  std::optional<EmbeddedVocab> vocab;
  // XXH64 of the names and bytes of the tensors the architecture reads (expected_tensors), in
  // that order: the weights part of system_fingerprint, the same whatever shard is loaded.
  uint64_t content_hash = 0;

  // The tensor `name`, checked against `shape`. Throws llm42::Error naming the checkpoint, the
  // tensor and expected vs found when it is missing or has another shape.
  const TensorView& get(const std::string& name, const std::vector<int64_t>& shape) const;
  const TensorView* find(const std::string& name) const;
};

// Throws llm42::Error naming the file, the tensor and the element when t holds a NaN or an
// infinity: such weights serve NaN logits. One pass over the tensor's bytes, no conversion.
void check_finite(const TensorView& t);

// Loads a checkpoint: a Hugging Face directory (config.json + model.safetensors or a sharded
// index), a .gguf file, or a llama2.c .bin file. Validates every tensor the architecture needs
// (presence, dtype, shape against the config, bounds inside the file, finite values). Throws
// llm42::Error with a message naming the file, the tensor or field, and expected vs found.
Checkpoint load_checkpoint(const std::string& path);

// The tensor names and shapes an architecture needs, for validation and for dummy weights.
struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  enum class Init { kNormal, kOnesNoise, kBias } init = Init::kNormal;  // for dummy weights
  // How the shape follows from the config, in Hugging Face field names with their values, e.g.
  // "(num_key_value_heads 8 * head_dim 128, hidden_size 4096)"; used in shape-mismatch errors.
  std::string dims;
};
std::vector<TensorSpec> expected_tensors(const ModelConfig& c);

}  // namespace llm42
