// safetensors reading: one file's header, and a Hugging Face folder's single file or shards.
#include "model/safetensors.h"

#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>

#include "util/error.h"

namespace llm42 {
namespace {

using nlohmann::json;

// The reference implementation refuses larger headers too; it bounds what the JSON parser
// allocates for a lying length.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

// A JSON value for an error message, cut short: a corrupt header can hold anything.
std::string brief(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  return s.size() <= 200 ? s : s.substr(0, 200) + "...";
}

// A non-negative JSON integer, or nullopt (negative, fractional, not a number).
std::optional<uint64_t> as_count(const json& v) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer() && v.get<int64_t>() >= 0)
    return static_cast<uint64_t>(v.get<int64_t>());
  return std::nullopt;
}

std::optional<DType> parse_st_dtype(const std::string& s) {
  if (s == "F32") return DType::kF32;
  if (s == "F16") return DType::kF16;
  if (s == "BF16") return DType::kBF16;
  if (s == "I32") return DType::kI32;
  return std::nullopt;
}

TensorView parse_entry(const MappedFile& file, const std::string& name, const json& e,
                       const uint8_t* data, uint64_t data_size) {
  const std::string& path = file.path();
  auto bad = [&](std::string_view field, std::string_view why) {
    fail("{}: tensor '{}': field '{}' {} (header entry {})", path, name, field, why, brief(e));
  };
  if (!e.is_object())
    fail("{}: tensor '{}': header entry {} is not an object", path, name, brief(e));
  const auto dt = e.find("dtype");
  const auto sh = e.find("shape");
  const auto off = e.find("data_offsets");
  if (dt == e.end()) bad("dtype", "is missing");
  if (sh == e.end()) bad("shape", "is missing");
  if (off == e.end()) bad("data_offsets", "is missing");
  if (!dt->is_string()) bad("dtype", "is not a string");
  const std::optional<DType> dtype = parse_st_dtype(dt->get<std::string>());
  if (!dtype)
    fail("{}: tensor '{}' has unsupported dtype '{}' (F32, F16, BF16 and I32 are supported)", path,
         name, dt->get<std::string>());

  TensorView t;
  t.name = name;
  t.dtype = *dtype;
  t.file = path;
  if (!sh->is_array()) bad("shape", "is not a list");
  uint64_t numel = 1;
  for (const json& d : *sh) {
    const std::optional<uint64_t> n = as_count(d);
    if (!n) bad("shape", "has a dimension that is not a non-negative integer");
    if (*n > static_cast<uint64_t>(INT64_MAX) || __builtin_mul_overflow(numel, *n, &numel))
      bad("shape", "has more elements than can be addressed");
    t.shape.push_back(static_cast<int64_t>(*n));
  }
  if (!off->is_array() || off->size() != 2) bad("data_offsets", "is not a [begin, end] pair");
  const std::optional<uint64_t> begin = as_count((*off)[0]), end = as_count((*off)[1]);
  if (!begin || !end) bad("data_offsets", "is not a pair of non-negative integers");
  if (*begin > *end) bad("data_offsets", "has begin > end");
  if (*end > data_size)
    fail("{}: tensor '{}': data_offsets [{}, {}) run past the end of the data section ({} bytes)",
         path, name, *begin, *end, data_size);
  uint64_t nbytes = 0;
  if (__builtin_mul_overflow(numel, dtype_size(t.dtype), &nbytes))
    bad("shape", "has more bytes than can be addressed");
  if (nbytes != *end - *begin)
    fail("{}: tensor '{}': shape {} of {} needs {} bytes but data_offsets [{}, {}) hold {}", path,
         name, t.shape_string(), dt->get<std::string>(), nbytes, *begin, *end, *end - *begin);
  t.data = data + *begin;
  t.nbytes = static_cast<size_t>(nbytes);
  // Kernels read elements through typed pointers; the mapping is page-aligned, so this is a
  // property of the file offset.
  if (reinterpret_cast<uintptr_t>(t.data) % dtype_size(t.dtype) != 0)
    fail("{}: tensor '{}' starts at file offset {}, not a multiple of its {}-byte elements", path,
         name, t.data - file.data(), dtype_size(t.dtype));
  return t;
}

// The tensors a shard index assigns to each shard file.
std::map<std::string, std::vector<std::string>> read_index(const std::string& index_path) {
  json index;
  try {
    index = json::parse(read_file(index_path));
  } catch (const json::exception& e) {
    fail("{}: invalid JSON: {}", index_path, e.what());
  }
  if (!index.is_object()) fail("{}: not a JSON object", index_path);
  const auto wm = index.find("weight_map");
  if (wm == index.end() || !wm->is_object())
    fail("{}: field 'weight_map' is missing or not an object", index_path);
  std::map<std::string, std::vector<std::string>> shards;
  for (const auto& [tensor, shard] : wm->items()) {
    if (!shard.is_string())
      fail("{}: weight_map['{}'] = {} is not a file name", index_path, tensor, brief(shard));
    const std::string s = shard.get<std::string>();
    // Shards live beside the index: a path could point anywhere on disk.
    if (s.empty() || s == "." || s == ".." || s.find('/') != std::string::npos ||
        s.find('\\') != std::string::npos || s.find('\0') != std::string::npos)
      fail("{}: weight_map['{}'] = '{}' is not a file name in the same folder", index_path, tensor,
           s);
    shards[s].push_back(tensor);
  }
  if (shards.empty()) fail("{}: weight_map is empty", index_path);
  return shards;
}

void add_tensors(Checkpoint& ckpt, std::map<std::string, TensorView> tensors) {
  for (auto& [name, t] : tensors) {
    if (const TensorView* prev = ckpt.find(name))
      fail("{}: tensor '{}' is also in {}", t.file, name, prev->file);
    ckpt.tensors.emplace(name, std::move(t));
  }
}

}  // namespace

std::map<std::string, TensorView> read_safetensors(const MappedFile& file) {
  const std::string& path = file.path();
  const uint64_t size = file.size();
  if (size < 8) fail("{}: {} bytes is too short for a safetensors header length", path, size);
  uint64_t header_len = 0;
  std::memcpy(&header_len, file.data(), 8);  // little-endian, as is every supported host
  if (header_len > kMaxHeaderBytes)
    fail("{}: header length {} exceeds the {}-byte limit (corrupt file?)", path, header_len,
         kMaxHeaderBytes);
  if (header_len > size - 8)
    fail("{}: header length {} runs past the end of the file ({} bytes)", path, header_len, size);
  const char* header = reinterpret_cast<const char*>(file.data()) + 8;
  json j;
  try {
    j = json::parse(header, header + header_len);
  } catch (const json::exception& e) {
    fail("{}: header (bytes 8 to {}) is not valid JSON: {}", path, 8 + header_len, e.what());
  }
  if (!j.is_object()) fail("{}: header is not a JSON object", path);
  const uint8_t* data = file.data() + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;
  std::map<std::string, TensorView> tensors;
  for (const auto& [name, entry] : j.items()) {
    if (name == "__metadata__") continue;
    tensors.emplace(name, parse_entry(file, name, entry, data, data_size));
  }
  return tensors;
}

void read_safetensors_weights(const std::string& dir, Checkpoint& ckpt) {
  const std::string single = dir + "/model.safetensors";
  const std::string index = dir + "/model.safetensors.index.json";
  if (file_exists(single)) {
    ckpt.files.push_back(std::make_unique<MappedFile>(single));
    add_tensors(ckpt, read_safetensors(*ckpt.files.back()));
    return;
  }
  if (!file_exists(index))
    fail(
        "{}: no model.safetensors or model.safetensors.index.json (only safetensors weights "
        "are supported)",
        dir);
  for (const auto& [shard, names] : read_index(index)) {
    const std::string path = dir + "/" + shard;
    if (!file_exists(path))
      fail("{}: shard '{}' (holding '{}' and {} more tensors) does not exist", index, shard,
           names.front(), names.size() - 1);
    ckpt.files.push_back(std::make_unique<MappedFile>(path));
    std::map<std::string, TensorView> tensors = read_safetensors(*ckpt.files.back());
    for (const std::string& name : names)
      if (tensors.find(name) == tensors.end())
        fail("{}: weight_map puts tensor '{}' in '{}', which has no such tensor", index, name,
             shard);
    add_tensors(ckpt, std::move(tensors));
  }
}

}  // namespace llm42
