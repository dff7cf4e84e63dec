// The safetensors format (huggingface/safetensors): an 8-byte little-endian header length N, then
// N bytes of JSON {name: {"dtype", "shape", "data_offsets": [begin, end)}, "__metadata__": {...}},
// then the data section the offsets index into. Hugging Face folders hold one `model.safetensors`
// or shards listed by `model.safetensors.index.json` ({"weight_map": {tensor: shard file}}).
#pragma once

#include <map>
#include <string>

#include "model/checkpoint.h"
#include "util/mapped_file.h"

namespace llm42 {

// Views of every tensor of one mapped .safetensors file; `__metadata__` is ignored. Dtypes F32,
// F16, BF16 and I32 are read; any other is an error naming the tensor. Every header value is
// checked (header length against the file size, JSON syntax, shapes, offsets inside the data
// section, byte count = elements * dtype size, element alignment), so no view points outside the
// mapping. Throws llm42::Error naming the file and the tensor or field.
std::map<std::string, TensorView> read_safetensors(const MappedFile& file);

// The weights of a Hugging Face folder: `model.safetensors` when present, else the shards of
// `model.safetensors.index.json` (shard names are plain file names in the folder; every tensor
// of the weight map must be in the shard it names, and no tensor may be in two shards). Maps the
// files into `ckpt.files` and adds the tensors to `ckpt.tensors`.
void read_safetensors_weights(const std::string& dir, Checkpoint& ckpt);

}  // namespace llm42
