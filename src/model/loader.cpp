// load_checkpoint: picks the format from the path and the file's first bytes, then checks every
// tensor the architecture needs against the config.
#include <fmt/ranges.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <xxhash.h>

#include "model/checkpoint.h"
#include "model/gguf.h"
#include "model/llama2c.h"
#include "model/safetensors.h"
#include "util/error.h"

namespace llm42 {
namespace {

// A Hugging Face folder: config.json plus safetensors weights (`only_file` when the user named
// one .safetensors file rather than the folder).
Checkpoint load_hf(const std::string& dir, const std::string& only_file = "") {
  const std::string config_path = dir + "/config.json";
  if (!file_exists(config_path))
    fail("{}: no config.json (a Hugging Face model folder needs one)", dir);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(config_path));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: invalid JSON: {}", config_path, e.what());
  }
  Checkpoint ckpt;
  ckpt.path = only_file.empty() ? dir : only_file;
  ckpt.format = "safetensors";
  ckpt.config = parse_hf_config(j, config_path);
  ckpt.config_source = config_path;
  if (only_file.empty()) {
    read_safetensors_weights(dir, ckpt);
  } else {
    ckpt.files.push_back(std::make_unique<MappedFile>(only_file));
    for (auto& [name, t] : read_safetensors(*ckpt.files.back())) ckpt.tensors.emplace(name, t);
  }
  // What is stored wins over config.json's `dtype`, which only says what the model was saved as.
  if (const TensorView* e = ckpt.find("model.embed_tokens.weight"); e && e->dtype != DType::kI32)
    ckpt.config.weights_dtype = e->dtype;
  return ckpt;
}

std::string first_bytes(const std::string& path, size_t n) {
  std::ifstream in(path, std::ios::binary);
  std::string s(n, '\0');
  in.read(s.data(), static_cast<std::streamsize>(n));
  s.resize(static_cast<size_t>(in.gcount()));
  return s;
}

// Where a missing tensor was looked for, when the user named a folder rather than the file.
std::string searched(const Checkpoint& ckpt) {
  if (ckpt.files.size() == 1 && ckpt.files[0]->path() != ckpt.path)
    return fmt::format(" (not in {})",
                       std::filesystem::path(ckpt.files[0]->path()).filename().string());
  if (ckpt.files.size() > 1)
    return fmt::format(" (not in any of the {} shards of model.safetensors.index.json)",
                       ckpt.files.size());
  return "";
}

// Every tensor the architecture needs: present, a floating-point dtype, the config's shape,
// finite values; their names and bytes hashed on the same pass (Checkpoint::content_hash).
void check_tensors(Checkpoint& ckpt) {
  // Freed however the checks end (they throw on a bad tensor).
  const std::unique_ptr<XXH64_state_t, XXH_errorcode (*)(XXH64_state_t*)> state(
      XXH64_createState(), &XXH64_freeState);
  XXH64_state_t* hs = state.get();
  XXH64_reset(hs, 42);
  for (const TensorSpec& spec : expected_tensors(ckpt.config)) {
    const TensorView* t = ckpt.find(spec.name);
    if (t == nullptr)
      fail("{}: tensor '{}' is missing{}, but {} implies it{}", ckpt.path, spec.name,
           searched(ckpt), ckpt.config_source,
           spec.name == "lm_head.weight"
               ? " (the output head is not tied to the embedding, so it must be stored)"
               : "");
    if (t->dtype != DType::kF32 && t->dtype != DType::kF16 && t->dtype != DType::kBF16)
      fail("{}: tensor '{}' has dtype {}; weights must be F32, F16 or BF16", t->file, spec.name,
           dtype_name(t->dtype));
    if (t->shape != spec.shape)
      fail("{}: tensor '{}' has shape {}, but {} implies [{}] = {}", t->file, spec.name,
           t->shape_string(), ckpt.config_source, fmt::join(spec.shape, ", "), spec.dims);
    check_finite(*t);
    XXH64_update(hs, spec.name.data(), spec.name.size());
    XXH64_update(hs, t->data, t->nbytes);
  }
  ckpt.content_hash = XXH64_digest(hs);
}

}  // namespace

Checkpoint load_checkpoint(const std::string& path) {
  namespace fs = std::filesystem;
  Checkpoint ckpt;
  const std::string name = fs::path(path).filename().string();
  if (is_directory(path)) {
    ckpt = load_hf(path);
  } else if (!file_exists(path)) {
    fail("{}: no such file or directory", path);
  } else if (first_bytes(path, 4) == "GGUF") {
    ckpt = load_gguf(path);
  } else if (name.ends_with(".gguf")) {
    const std::string magic = first_bytes(path, 4);
    if (magic.size() < 4) fail("{}: {} bytes is too short to be a GGUF file", path, magic.size());
    std::string hex;
    for (unsigned char ch : magic) hex += fmt::format("{:02x} ", ch);
    fail("{}: not a GGUF file: it starts with bytes {}instead of the magic \"GGUF\"", path, hex);
  } else if (name.ends_with(".safetensors") || name == "config.json") {
    const std::string dir = fs::path(path).parent_path().string();
    ckpt = load_hf(dir.empty() ? "." : dir, name == "config.json" ? "" : path);
  } else {
    ckpt = load_llama2c(path);
  }
  ckpt.config.validate(ckpt.config_source);
  check_tensors(ckpt);
  return ckpt;
}

}  // namespace llm42
