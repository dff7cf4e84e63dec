// GGUF reading (structure, metadata, tensor infos) and the `llama` architecture's mapping onto a
// Checkpoint.
#include "model/gguf.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <string_view>

#include "util/error.h"

namespace llm42 {
namespace {

constexpr uint32_t kVersion = 3;
constexpr uint64_t kDefaultAlignment = 32;
constexpr uint64_t kMaxKeyBytes = 65535;  // the spec's limit
constexpr uint64_t kMaxNameBytes = 64;    // the spec's limit for tensor names (GGML_MAX_NAME)
constexpr uint32_t kMaxDims = 4;          // GGML_MAX_DIMS
constexpr int kMaxArrayNesting = 8;

constexpr const char* kTypeNames[] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                      "bool", "string", "array", "u64", "i64", "f64"};

std::string type_name(GgufType t) {
  const auto i = static_cast<uint32_t>(t);
  return i < std::size(kTypeNames) ? kTypeNames[i] : "type " + std::to_string(i);
}

// Size of a fixed-size value type, 0 for string and array.
size_t fixed_size(GgufType t) {
  switch (t) {
    case GgufType::kU8:
    case GgufType::kI8:
    case GgufType::kBool:
      return 1;
    case GgufType::kU16:
    case GgufType::kI16:
      return 2;
    case GgufType::kU32:
    case GgufType::kI32:
    case GgufType::kF32:
      return 4;
    case GgufType::kU64:
    case GgufType::kI64:
    case GgufType::kF64:
      return 8;
    case GgufType::kString:
    case GgufType::kArray:
      return 0;
  }
  return 0;
}

bool is_float(GgufType t) { return t == GgufType::kF32 || t == GgufType::kF64; }

bool is_integer(GgufType t) {
  switch (t) {
    case GgufType::kU8:
    case GgufType::kI8:
    case GgufType::kU16:
    case GgufType::kI16:
    case GgufType::kU32:
    case GgufType::kI32:
    case GgufType::kU64:
    case GgufType::kI64:
      return true;
    default:
      return false;
  }
}

// ggml tensor type ids (ggml.h), for naming the unsupported ones.
std::string ggml_type_name(uint32_t t) {
  static const std::map<uint32_t, const char*> kNames = {
      {0, "F32"},     {1, "F16"},      {2, "Q4_0"},   {3, "Q4_1"},    {6, "Q5_0"},
      {7, "Q5_1"},    {8, "Q8_0"},     {9, "Q8_1"},   {10, "Q2_K"},   {11, "Q3_K"},
      {12, "Q4_K"},   {13, "Q5_K"},    {14, "Q6_K"},  {15, "Q8_K"},   {16, "IQ2_XXS"},
      {17, "IQ2_XS"}, {18, "IQ3_XXS"}, {19, "IQ1_S"}, {20, "IQ4_NL"}, {21, "IQ3_S"},
      {22, "IQ2_S"},  {23, "IQ4_XS"},  {24, "I8"},    {25, "I16"},    {26, "I32"},
      {27, "I64"},    {28, "F64"},     {29, "IQ1_M"}, {30, "BF16"},   {34, "TQ1_0"},
      {35, "TQ2_0"},  {39, "MXFP4"}};
  const auto it = kNames.find(t);
  return it == kNames.end() ? "unknown" : it->second;
}

// Bounds-checked little-endian reads over the mapping. Errors name the file, the byte offset and
// what was being read (`context`: the metadata key or tensor being parsed).
class Reader {
 public:
  Reader(const MappedFile& f, size_t pos = 0)
      : p_(f.data()), size_(f.size()), path_(f.path()), pos_(pos) {}

  size_t pos() const { return pos_; }
  size_t left() const { return size_ - pos_; }
  void set_context(std::string c) { context_ = std::move(c); }

  [[noreturn]] void error(size_t at, std::string_view msg) const {
    fail("{}: offset {}: {}: {}", path_, at, context_, msg);
  }

  template <typename T>
  T read(std::string_view what) {
    if (left() < sizeof(T))
      error(pos_,
            fmt::format("file ends inside {} ({} bytes needed, {} left)", what, sizeof(T), left()));
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  std::string_view string(std::string_view what, uint64_t max_len) {
    const size_t at = pos_;
    const uint64_t n = read<uint64_t>(fmt::format("the length of {}", what));
    if (n > left())
      error(at, fmt::format("{} length {} runs past the end of the file ({} bytes left)", what, n,
                            left()));
    if (n > max_len) error(at, fmt::format("{} length {} exceeds the limit {}", what, n, max_len));
    const std::string_view s(reinterpret_cast<const char*>(p_ + pos_), n);
    pos_ += n;
    return s;
  }

  GgufType value_type(std::string_view what) {
    const size_t at = pos_;
    const uint32_t t = read<uint32_t>(what);
    if (t > static_cast<uint32_t>(GgufType::kF64))
      error(at, fmt::format("{} {} is not a GGUF value type (0 to 12)", what, t));
    return static_cast<GgufType>(t);
  }

  // An array header; the count is checked against the bytes left before anyone loops over it.
  uint64_t array_count(GgufType elem) {
    const size_t at = pos_;
    const uint64_t n = read<uint64_t>("an array count");
    const size_t fixed = fixed_size(elem);
    // Strings take at least their 8-byte length; nested arrays a 4-byte type and 8-byte count.
    const uint64_t min_size = fixed != 0 ? fixed : elem == GgufType::kString ? 8 : 12;
    if (n > left() / min_size)
      error(at, fmt::format("array of {} {} elements needs at least {} bytes per element, "
                            "only {} bytes left in the file",
                            n, type_name(elem), min_size, left()));
    return n;
  }

  void skip_value(GgufType t, int depth) {
    if (t == GgufType::kString) {
      string("a string value", std::numeric_limits<uint64_t>::max());
    } else if (t == GgufType::kArray) {
      if (depth >= kMaxArrayNesting)
        error(pos_, fmt::format("arrays nested deeper than {}", kMaxArrayNesting));
      const GgufType elem = value_type("an array element type");
      const uint64_t n = array_count(elem);
      if (fixed_size(elem) != 0) {
        pos_ += n * fixed_size(elem);  // within the file: array_count checked it
      } else {
        for (uint64_t i = 0; i < n; ++i) skip_value(elem, depth + 1);
      }
    } else {
      const size_t n = fixed_size(t);
      if (left() < n)
        error(pos_,
              fmt::format("file ends inside a {} value ({} bytes left)", type_name(t), left()));
      pos_ += n;
    }
  }

  // An integer value of any integer type, as int64.
  int64_t integer(GgufType t) {
    switch (t) {
      case GgufType::kU8:
        return read<uint8_t>("a u8");
      case GgufType::kI8:
        return read<int8_t>("an i8");
      case GgufType::kU16:
        return read<uint16_t>("a u16");
      case GgufType::kI16:
        return read<int16_t>("an i16");
      case GgufType::kU32:
        return read<uint32_t>("a u32");
      case GgufType::kI32:
        return read<int32_t>("an i32");
      case GgufType::kI64:
        return read<int64_t>("an i64");
      case GgufType::kU64: {
        const size_t at = pos_;
        const uint64_t v = read<uint64_t>("a u64");
        if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
          error(at, fmt::format("u64 value {} is out of range", v));
        return static_cast<int64_t>(v);
      }
      default:
        error(pos_, fmt::format("{} is not an integer type", type_name(t)));
    }
  }

 private:
  const uint8_t* p_;
  size_t size_;
  const std::string& path_;
  size_t pos_;
  std::string context_ = "header";
};

struct TensorInfo {
  std::string name;
  DType dtype;
  const QuantFormat* quant = nullptr;
  std::vector<int64_t> shape;  // outermost first
  uint64_t offset;             // in the data section
  size_t info_at;              // where its info starts, for errors
};

TensorInfo read_tensor_info(Reader& r, uint64_t index) {
  r.set_context(fmt::format("tensor info {}", index));
  TensorInfo t;
  t.info_at = r.pos();
  t.name = std::string(r.string("the tensor name", kMaxNameBytes));
  r.set_context(fmt::format("tensor info {} ('{}')", index, t.name));
  const size_t dims_at = r.pos();
  const uint32_t n_dims = r.read<uint32_t>("n_dims");
  if (n_dims < 1 || n_dims > kMaxDims)
    r.error(dims_at, fmt::format("n_dims = {} (expected 1 to {})", n_dims, kMaxDims));
  std::vector<int64_t> ne;
  for (uint32_t d = 0; d < n_dims; ++d) {
    const size_t at = r.pos();
    const uint64_t n = r.read<uint64_t>("ne[]");
    if (n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      r.error(at, fmt::format("ne[{}] = {} is out of range", d, n));
    ne.push_back(static_cast<int64_t>(n));
  }
  t.shape.assign(ne.rbegin(), ne.rend());
  const size_t type_at = r.pos();
  const uint32_t type = r.read<uint32_t>("the tensor type");
  switch (type) {
    case 0:
      t.dtype = DType::kF32;
      break;
    case 1:
      t.dtype = DType::kF16;
      break;
    case 30:
      t.dtype = DType::kBF16;
      break;
    default:
      t.quant = quant_format(type);
      if (t.quant == nullptr)
        r.error(type_at, fmt::format("tensor '{}' has type {} ({}); only F32, F16, BF16 and {} "
                                     "are supported (unsupported tensor type)",
                                     t.name, ggml_type_name(type), type, quant_format_names()));
      t.dtype = DType::kF32;  // dequantized at load
      if (ne[0] % t.quant->block_size != 0)
        r.error(type_at, fmt::format("tensor '{}' of type {} has rows of ne[0] = {} values, not a "
                                     "whole number of {}-value blocks",
                                     t.name, t.quant->name, ne[0], t.quant->block_size));
  }
  t.offset = r.read<uint64_t>("the tensor offset");
  return t;
}

}  // namespace

GgufFile::GgufFile(const std::string& path) : file_(std::make_unique<MappedFile>(path)) {
  const MappedFile& f = *file_;
  Reader r(f);
  if (f.size() < 4 || std::memcmp(f.data(), "GGUF", 4) != 0)
    fail("{}: not a GGUF file (the first 4 bytes are not the magic \"GGUF\")", path);
  r.read<uint32_t>("the magic");
  const uint32_t version = r.read<uint32_t>("the version");
  if (version == 0x03000000u) fail("{}: big-endian GGUF is not supported", path);
  if (version != kVersion)
    fail("{}: GGUF version {} is not supported (only version {})", path, version, kVersion);
  const uint64_t n_tensors = r.read<uint64_t>("n_tensors");
  const size_t kv_at = r.pos();
  const uint64_t n_kv = r.read<uint64_t>("n_kv");
  // The smallest entry: an empty key (8), its type (4) and a one-byte value.
  if (n_kv > r.left() / 13)
    r.error(kv_at, fmt::format("n_kv = {} metadata entries cannot fit in the {} bytes left", n_kv,
                               r.left()));

  for (uint64_t i = 0; i < n_kv; ++i) {
    r.set_context(fmt::format("metadata entry {}", i));
    const std::string key(r.string("the key", kMaxKeyBytes));
    r.set_context(fmt::format("metadata '{}'", key));
    const GgufType type = r.value_type("the value type");
    const size_t value_at = r.pos();
    r.skip_value(type, 0);
    if (!metadata_.emplace(key, Entry{type, value_at}).second)
      r.error(value_at, "the key appears twice");
  }

  uint64_t alignment = kDefaultAlignment;
  if (const std::optional<int64_t> a = get_int("general.alignment")) {
    if (*a < 8 || (*a & (*a - 1)) != 0)
      fail("{}: metadata 'general.alignment' = {} is not a power of two >= 8", path, *a);
    alignment = static_cast<uint64_t>(*a);
  }

  const size_t tensors_at = r.pos();
  // The smallest tensor info: empty name (8), n_dims (4), one ne (8), type (4), offset (8).
  if (n_tensors > r.left() / 32)
    fail("{}: offset {}: n_tensors = {} tensor infos cannot fit in the {} bytes left", path,
         tensors_at, n_tensors, r.left());
  std::vector<TensorInfo> infos;
  std::set<std::string> names;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    infos.push_back(read_tensor_info(r, i));
    if (!names.insert(infos.back().name).second)
      fail("{}: offset {}: tensor '{}' appears twice", path, infos.back().info_at,
           infos.back().name);
  }

  const uint64_t data_start = (r.pos() + alignment - 1) / alignment * alignment;
  if (n_tensors > 0 && data_start > f.size())
    fail("{}: the data section would start at offset {}, past the end of the file ({} bytes)", path,
         data_start, f.size());
  for (const TensorInfo& t : infos) {
    uint64_t numel = 1, nbytes = 0;
    for (int64_t d : t.shape)
      if (__builtin_mul_overflow(numel, static_cast<uint64_t>(d), &numel))
        fail("{}: tensor '{}' shape has more elements than can be addressed", path, t.name);
    // A quantized tensor stores numel / block_size blocks (rows are whole blocks).
    const uint64_t unit =
        t.quant ? static_cast<uint64_t>(t.quant->block_bytes) : dtype_size(t.dtype);
    if (t.quant) numel /= static_cast<uint64_t>(t.quant->block_size);
    if (__builtin_mul_overflow(numel, unit, &nbytes))
      fail("{}: tensor '{}' shape has more bytes than can be addressed", path, t.name);
    if (t.offset % alignment != 0)
      fail("{}: tensor '{}' offset {} is not a multiple of the alignment {}", path, t.name,
           t.offset, alignment);
    const uint64_t room = f.size() - data_start;
    if (t.offset > room || nbytes > room - t.offset)
      fail(
          "{}: tensor '{}' data [{}, {}) (data section offset {} + {} bytes) runs past the end "
          "of the file ({} bytes)",
          path, t.name, data_start + t.offset,
          nbytes > UINT64_MAX - data_start - t.offset ? UINT64_MAX : data_start + t.offset + nbytes,
          t.offset, nbytes, f.size());
    tensors_.push_back({t.name, t.dtype, t.shape, f.data() + data_start + t.offset,
                        static_cast<size_t>(nbytes), data_start + t.offset, t.quant});
  }
}

const GgufFile::Entry* GgufFile::lookup(const std::string& key, bool (*ok)(GgufType),
                                        const char* want) const {
  const auto it = metadata_.find(key);
  if (it == metadata_.end()) return nullptr;
  if (!ok(it->second.type))
    fail("{}: metadata '{}' has type {}, expected {}", path(), key, type_name(it->second.type),
         want);
  return &it->second;
}

GgufFile::Array GgufFile::array(const std::string& key, bool (*ok)(GgufType),
                                const char* want) const {
  const Entry* e = lookup(
      key, [](GgufType t) { return t == GgufType::kArray; }, "array");
  Reader r(*file_, e->offset);
  r.set_context(fmt::format("metadata '{}'", key));
  Array a;
  a.elem = r.value_type("the array element type");
  if (!ok(a.elem))
    fail("{}: metadata '{}' is an array of {}, expected an array of {}", path(), key,
         type_name(a.elem), want);
  a.count = r.array_count(a.elem);
  a.first = r.pos();
  return a;
}

std::optional<int64_t> GgufFile::get_int(const std::string& key) const {
  const Entry* e = lookup(key, is_integer, "an integer");
  if (e == nullptr) return std::nullopt;
  Reader r(*file_, e->offset);
  r.set_context(fmt::format("metadata '{}'", key));
  return r.integer(e->type);
}

std::optional<double> GgufFile::get_float(const std::string& key) const {
  const Entry* e = lookup(key, is_float, "f32 or f64");
  if (e == nullptr) return std::nullopt;
  Reader r(*file_, e->offset);
  return e->type == GgufType::kF32 ? r.read<float>("an f32") : r.read<double>("an f64");
}

std::optional<bool> GgufFile::get_bool(const std::string& key) const {
  const Entry* e = lookup(
      key, [](GgufType t) { return t == GgufType::kBool; }, "bool");
  if (e == nullptr) return std::nullopt;
  Reader r(*file_, e->offset);
  const uint8_t b = r.read<uint8_t>("a bool");
  if (b > 1) fail("{}: metadata '{}' = {} is not a bool (0 or 1)", path(), key, b);
  return b == 1;
}

std::optional<std::string> GgufFile::get_string(const std::string& key) const {
  const Entry* e = lookup(
      key, [](GgufType t) { return t == GgufType::kString; }, "string");
  if (e == nullptr) return std::nullopt;
  Reader r(*file_, e->offset);
  return std::string(r.string("a string", std::numeric_limits<uint64_t>::max()));
}

std::optional<uint64_t> GgufFile::array_size(const std::string& key) const {
  if (!has(key)) return std::nullopt;
  return array(
             key, [](GgufType) { return true; }, "anything")
      .count;
}

std::optional<std::vector<std::string>> GgufFile::get_strings(const std::string& key) const {
  if (!has(key)) return std::nullopt;
  const Array a = array(
      key, [](GgufType t) { return t == GgufType::kString; }, "string");
  Reader r(*file_, a.first);
  r.set_context(fmt::format("metadata '{}'", key));
  std::vector<std::string> out;
  out.reserve(a.count);  // bounded by the file size: array_count checked it
  for (uint64_t i = 0; i < a.count; ++i)
    out.emplace_back(r.string("a string element", std::numeric_limits<uint64_t>::max()));
  return out;
}

std::optional<std::vector<float>> GgufFile::get_floats(const std::string& key) const {
  if (!has(key)) return std::nullopt;
  const Array a = array(
      key, [](GgufType t) { return t == GgufType::kF32; }, "f32");
  std::vector<float> out(a.count);
  std::memcpy(out.data(), file_->data() + a.first, a.count * sizeof(float));
  return out;
}

std::optional<std::vector<int32_t>> GgufFile::get_ints(const std::string& key) const {
  if (!has(key)) return std::nullopt;
  const Array a = array(
      key, [](GgufType t) { return is_integer(t) && fixed_size(t) <= 4; },
      "integers of at most 32 bits");
  Reader r(*file_, a.first);
  r.set_context(fmt::format("metadata '{}'", key));
  std::vector<int32_t> out;
  out.reserve(a.count);
  for (uint64_t i = 0; i < a.count; ++i) {
    const int64_t v = r.integer(a.elem);
    if (v > std::numeric_limits<int32_t>::max())
      fail("{}: metadata '{}' element {} = {} is out of range", path(), key, i, v);
    out.push_back(static_cast<int32_t>(v));
  }
  return out;
}

namespace {

// GGUF `llama` tensor names to Hugging Face names; nullopt for names outside the mapping.
std::optional<std::string> hf_name(std::string_view g) {
  static const std::map<std::string_view, std::string_view> kGlobal = {
      {"token_embd.weight", "model.embed_tokens.weight"},
      {"output_norm.weight", "model.norm.weight"},
      {"output.weight", "lm_head.weight"},
  };
  static const std::map<std::string_view, std::string_view> kLayer = {
      {"attn_norm", "input_layernorm"},    {"attn_q", "self_attn.q_proj"},
      {"attn_k", "self_attn.k_proj"},      {"attn_v", "self_attn.v_proj"},
      {"attn_output", "self_attn.o_proj"}, {"ffn_norm", "post_attention_layernorm"},
      {"ffn_gate", "mlp.gate_proj"},       {"ffn_up", "mlp.up_proj"},
      {"ffn_down", "mlp.down_proj"},
  };
  if (const auto it = kGlobal.find(g); it != kGlobal.end()) return std::string(it->second);
  // blk.{N}.{part}.{weight|bias}
  if (!g.starts_with("blk.")) return std::nullopt;
  g.remove_prefix(4);
  size_t digits = 0;
  while (digits < g.size() && digits < 9 && g[digits] >= '0' && g[digits] <= '9') ++digits;
  if (digits == 0 || digits >= g.size() || g[digits] != '.') return std::nullopt;
  const std::string_view layer = g.substr(0, digits);
  g.remove_prefix(digits + 1);
  const size_t dot = g.rfind('.');
  if (dot == std::string_view::npos) return std::nullopt;
  const std::string_view suffix = g.substr(dot + 1);
  if (suffix != "weight" && suffix != "bias") return std::nullopt;
  const auto it = kLayer.find(g.substr(0, dot));
  if (it == kLayer.end()) return std::nullopt;
  return fmt::format("model.layers.{}.{}.{}", std::stoi(std::string(layer)), it->second, suffix);
}

// A positive `int` dimension from the metadata, or `fallback` when absent.
int meta_dim(const GgufFile& g, const std::string& key, std::optional<int> fallback = {}) {
  const std::optional<int64_t> v = g.get_int(key);
  if (!v) {
    if (fallback) return *fallback;
    fail("{}: metadata '{}' is missing", g.path(), key);
  }
  if (*v <= 0 || *v > std::numeric_limits<int>::max())
    fail("{}: metadata '{}' = {} must be a positive 32-bit integer", g.path(), key, *v);
  return static_cast<int>(*v);
}

// A token id from `tokenizer.ggml.*`, checked against the vocabulary.
int token_id(const GgufFile& g, const std::string& key, size_t n_tokens, int fallback) {
  const std::optional<int64_t> v = g.get_int(key);
  if (!v) return fallback;
  if (*v < 0 || static_cast<uint64_t>(*v) >= n_tokens)
    fail("{}: metadata '{}' = {} is outside the vocabulary of {} tokens", g.path(), key, *v,
         n_tokens);
  return static_cast<int>(*v);
}

EmbeddedVocab read_vocab(const GgufFile& g) {
  EmbeddedVocab v;
  v.model = *g.get_string("tokenizer.ggml.model");
  v.pre = g.get_string("tokenizer.ggml.pre").value_or("");
  std::optional<std::vector<std::string>> tokens = g.get_strings("tokenizer.ggml.tokens");
  if (!tokens) fail("{}: metadata 'tokenizer.ggml.tokens' is missing", g.path());
  v.tokens = std::move(*tokens);
  const size_t n = v.tokens.size();
  if (n == 0) fail("{}: metadata 'tokenizer.ggml.tokens' is empty", g.path());
  if (n > static_cast<size_t>(std::numeric_limits<int32_t>::max()))
    fail("{}: metadata 'tokenizer.ggml.tokens' has {} tokens, too many", g.path(), n);
  v.scores = g.get_floats("tokenizer.ggml.scores").value_or(std::vector<float>{});
  v.token_types = g.get_ints("tokenizer.ggml.token_type").value_or(std::vector<int32_t>{});
  v.merges = g.get_strings("tokenizer.ggml.merges").value_or(std::vector<std::string>{});
  for (const auto& [key, size] :
       {std::pair<const char*, size_t>{"tokenizer.ggml.scores", v.scores.size()},
        {"tokenizer.ggml.token_type", v.token_types.size()}})
    if (size != 0 && size != n)
      fail("{}: metadata '{}' has {} entries but tokenizer.ggml.tokens has {}", g.path(), key, size,
           n);
  // llama.cpp's defaults when the ids are not written: SentencePiece's <s> = 1, </s> = 2.
  const bool spm = v.model == "llama";
  v.bos_id = token_id(g, "tokenizer.ggml.bos_token_id", n, spm ? 1 : -1);
  v.eos_id = token_id(g, "tokenizer.ggml.eos_token_id", n, spm ? 2 : -1);
  v.unk_id = token_id(g, "tokenizer.ggml.unknown_token_id", n, spm ? 0 : -1);
  v.pad_id = token_id(g, "tokenizer.ggml.padding_token_id", n, -1);
  // llama.cpp adds BOS by default for SentencePiece vocabularies and the Llama 3 and Tekken
  // byte-level ones; tokenizer.ggml.add_bos_token overrides it.
  const bool bos_pre =
      v.pre == "llama3" || v.pre == "llama-bpe" || v.pre == "llama-v3" || v.pre == "tekken";
  v.add_bos = g.get_bool("tokenizer.ggml.add_bos_token").value_or(spm || bos_pre);
  v.chat_template = g.get_string("tokenizer.chat_template").value_or("");
  return v;
}

// Dequantizes a block-quantized tensor into `ckpt.dequantized` and returns its f32 view. A value
// that comes out inf or NaN can only come from a non-finite scale: the block is corrupt.
TensorView dequantize_tensor(const GgufFile& g, const GgufFile::Tensor& t, const std::string& name,
                             Checkpoint& ckpt) {
  const QuantFormat& q = *t.quant;
  const size_t n_blocks = t.nbytes / static_cast<size_t>(q.block_bytes);
  std::vector<float>& out = ckpt.dequantized.emplace_back(n_blocks * q.block_size);
  dequantize(q, t.data, n_blocks, out.data());
  const auto bad = std::find_if(out.begin(), out.end(), [](float v) { return !std::isfinite(v); });
  if (bad != out.end()) {
    const size_t block = static_cast<size_t>(bad - out.begin()) / q.block_size;
    fail(
        "{}: offset {}: tensor '{}' ({}) block {} is corrupt: its scales give the value {} at "
        "element {}",
        g.path(), t.offset + block * q.block_bytes, t.name, q.name, block, *bad, bad - out.begin());
  }
  return TensorView{name,
                    DType::kF32,
                    t.shape,
                    reinterpret_cast<const uint8_t*>(out.data()),
                    out.size() * sizeof(float),
                    g.path()};
}

}  // namespace

EmbeddedVocab load_gguf_vocab(const std::string& path) {
  const GgufFile g(path);
  if (!g.has("tokenizer.ggml.model"))
    fail("{}: this GGUF file carries no tokenizer (no metadata 'tokenizer.ggml.model')", path);
  return read_vocab(g);
}

Checkpoint load_gguf(const std::string& path) {
  GgufFile g(path);
  const std::optional<std::string> arch = g.get_string("general.architecture");
  if (!arch) fail("{}: metadata 'general.architecture' is missing", path);
  if (*arch != "llama")
    fail("{}: metadata 'general.architecture' = '{}' is not supported (only llama)", path, *arch);

  Checkpoint ckpt;
  ckpt.path = path;
  ckpt.format = "gguf";
  ckpt.config_source = path;
  ModelConfig& c = ckpt.config;
  c.arch = Architecture::kLlama;
  c.rope_layout = RopeLayout::kInterleaved;
  c.dim = meta_dim(g, "llama.embedding_length");
  c.n_layers = meta_dim(g, "llama.block_count");
  c.ffn_dim = meta_dim(g, "llama.feed_forward_length");
  c.n_heads = meta_dim(g, "llama.attention.head_count");
  c.n_kv_heads = meta_dim(g, "llama.attention.head_count_kv", c.n_heads);
  c.max_seq_len = meta_dim(g, "llama.context_length");
  if (c.n_heads % c.n_kv_heads != 0)
    fail(
        "{}: metadata 'llama.attention.head_count_kv' = {} does not divide "
        "llama.attention.head_count = {}",
        path, c.n_kv_heads, c.n_heads);
  if (g.has("llama.attention.key_length")) {
    c.head_dim = meta_dim(g, "llama.attention.key_length");
    if (meta_dim(g, "llama.attention.value_length", c.head_dim) != c.head_dim)
      fail("{}: metadata 'llama.attention.value_length' differs from key_length = {}", path,
           c.head_dim);
  } else {
    if (c.dim % c.n_heads != 0)
      fail(
          "{}: metadata 'llama.embedding_length' = {} is not divisible by "
          "llama.attention.head_count = {}",
          path, c.dim, c.n_heads);
    c.head_dim = c.dim / c.n_heads;
  }
  if (const int rot = meta_dim(g, "llama.rope.dimension_count", c.head_dim); rot != c.head_dim)
    fail(
        "{}: metadata 'llama.rope.dimension_count' = {} is not head_dim = {} (partial RoPE is "
        "not supported)",
        path, rot, c.head_dim);
  if (g.get_int("llama.expert_count").value_or(0) > 0)
    fail("{}: metadata 'llama.expert_count' > 0: mixture-of-experts models are not supported",
         path);
  const std::optional<double> eps = g.get_float("llama.attention.layer_norm_rms_epsilon");
  if (!eps) fail("{}: metadata 'llama.attention.layer_norm_rms_epsilon' is missing", path);
  c.norm_eps = static_cast<float>(*eps);
  c.rope_theta = g.get_float("llama.rope.freq_base").value_or(10000.0);
  const std::string scaling = g.get_string("llama.rope.scaling.type").value_or("none");
  if (scaling == "linear") {
    c.rope_scaling.type = RopeScaling::Type::kLinear;
    const std::optional<double> factor = g.get_float("llama.rope.scaling.factor");
    if (!factor) fail("{}: metadata 'llama.rope.scaling.factor' is missing", path);
    c.rope_scaling.factor = *factor;
  } else if (scaling != "none") {
    fail("{}: metadata 'llama.rope.scaling.type' = '{}' is not supported (none, linear are)", path,
         scaling);
  }

  if (g.has("tokenizer.ggml.model")) ckpt.vocab = read_vocab(g);
  if (ckpt.vocab) {
    c.bos_id = ckpt.vocab->bos_id;
    c.eos_ids.clear();
    if (ckpt.vocab->eos_id >= 0) c.eos_ids.push_back(ckpt.vocab->eos_id);
    // Chat models end a turn with end-of-turn / end-of-message tokens as well.
    for (const char* key : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
      const int id = token_id(g, key, ckpt.vocab->tokens.size(), -1);
      if (id >= 0 && std::find(c.eos_ids.begin(), c.eos_ids.end(), id) == c.eos_ids.end())
        c.eos_ids.push_back(id);
    }
  }

  bool has_output = false;
  for (const GgufFile::Tensor& t : g.tensors()) {
    if (t.name == "rope_freqs.weight") {
      if (t.dtype != DType::kF32 || t.quant != nullptr || t.shape.size() != 1)
        fail("{}: tensor 'rope_freqs.weight' must be a 1-D F32 tensor", path);
      const float* f = reinterpret_cast<const float*>(t.data);
      c.rope_freq_factors.assign(f, f + t.shape[0]);
      continue;
    }
    const std::string name = hf_name(t.name).value_or(t.name);
    has_output |= name == "lm_head.weight";
    TensorView v = t.quant ? dequantize_tensor(g, t, name, ckpt)
                           : TensorView{name, t.dtype, t.shape, t.data, t.nbytes, path};
    if (!ckpt.tensors.emplace(name, std::move(v)).second)
      fail("{}: tensors '{}' and another both map to '{}'", path, t.name, name);
  }
  c.tie_embeddings = !has_output;

  const TensorView* embed = ckpt.find("model.embed_tokens.weight");
  if (g.has("llama.vocab_size")) {
    c.vocab_size = meta_dim(g, "llama.vocab_size");
  } else if (ckpt.vocab) {
    c.vocab_size = static_cast<int>(ckpt.vocab->tokens.size());
  } else if (embed != nullptr && embed->shape.size() == 2 && embed->shape[0] > 0 &&
             embed->shape[0] <= std::numeric_limits<int>::max()) {
    c.vocab_size = static_cast<int>(embed->shape[0]);
  } else {
    fail(
        "{}: the vocabulary size is unknown (no 'llama.vocab_size', no tokenizer.ggml.tokens, "
        "no token_embd.weight)",
        path);
  }
  if (ckpt.vocab && ckpt.vocab->tokens.size() > static_cast<size_t>(c.vocab_size))
    fail(
        "{}: metadata 'tokenizer.ggml.tokens' has {} tokens, more than the model's vocabulary "
        "of {}",
        path, ckpt.vocab->tokens.size(), c.vocab_size);
  c.weights_dtype = embed != nullptr ? embed->dtype : DType::kF32;
  ckpt.files.push_back(g.release_file());
  return ckpt;
}

}  // namespace llm42
