// Corrupted model files. Each real model file (llama2.c .bin, .gguf, model.safetensors with its
// config.json, a sharded index built here) is copied to a temporary folder and damaged
// systematically: truncated at every offset of its header and at a spread of offsets through the
// data, every header byte overwritten (0x00, 0xFF, one flipped bit), sizes, offsets, counts,
// n_dims and string lengths made to lie, wrong magic and version, unsupported dtypes, shapes that
// contradict the config, missing tensors. Every variant must either load (the damage was harmless,
// e.g. inside a token's text) or throw llm42::Error naming the file; never crash, read out of
// bounds or allocate what a lying count asks for. The Corrupt* suites run under ASan + UBSan.
//
// Variants are written in place into one copy and undone, so a sweep costs a load per variant,
// not a file copy. Each sweep prints one line: variants tried, errors, loads.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "model/checkpoint.h"
#include "model/gguf.h"
#include "model/safetensors.h"
#include "test_util.h"
#include "util/error.h"

namespace llm42 {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "llm42-corrupt-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void write_bytes(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

template <typename T>
std::string pod(T v) {
  return std::string(reinterpret_cast<const char*>(&v), sizeof(T));
}

template <typename T>
T read_pod(std::string_view bytes, size_t at) {
  T v;
  std::memcpy(&v, bytes.data() + at, sizeof(T));
  return v;
}

// A copy of a file that variants are written into in place and undone.
class Victim {
 public:
  Victim(std::string path, std::string original)
      : path_(std::move(path)), original_(std::move(original)) {
    reset();
  }
  const std::string& path() const { return path_; }
  const std::string& original() const { return original_; }
  size_t size() const { return original_.size(); }

  void put(size_t at, std::string_view bytes) const {
    const int fd = ::open(path_.c_str(), O_WRONLY);
    const bool ok = fd >= 0 && ::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(at)) ==
                                   static_cast<ssize_t>(bytes.size());
    if (fd >= 0) ::close(fd);
    if (!ok) throw std::runtime_error("cannot write into " + path_);
  }
  void restore(size_t at, size_t n) const { put(at, std::string_view(original_).substr(at, n)); }
  void truncate(size_t n) const {
    if (::truncate(path_.c_str(), static_cast<off_t>(n)) != 0)
      throw std::runtime_error("cannot truncate " + path_);
  }
  void reset() const { write_bytes(path_, original_); }

 private:
  std::string path_;
  std::string original_;
};

// A loaded variant must be self-consistent: every view inside one of its mapped files.
std::string check_loaded(const Checkpoint& c) {
  for (const auto& [name, t] : c.tensors) {
    if (t.nbytes != static_cast<size_t>(t.numel()) * dtype_size(t.dtype))
      return "tensor '" + name + "' has a byte count that is not numel * dtype size";
    bool inside = false;
    for (const auto& f : c.files)
      inside |= t.data >= f->data() && t.data + t.nbytes <= f->data() + f->size();
    for (const std::vector<float>& d : c.dequantized)
      inside |= t.data == reinterpret_cast<const uint8_t*>(d.data()) &&
                t.nbytes == d.size() * sizeof(float);
    if (!inside) return "tensor '" + name + "' points outside its file";
  }
  return "";
}

// Any one of these says that a file is too short.
const std::vector<std::string> kTruncationWords = {"past the end", "ends inside",   "too short",
                                                   "cannot fit",   "bytes left",    "implies",
                                                   "truncated",    "not valid JSON"};

// One sweep of variants of a file. Every error must name `file_name`; problems are reported for
// the first few variants only, then counted.
class Sweep {
 public:
  Sweep(std::string what, std::string file_name)
      : what_(std::move(what)), file_name_(std::move(file_name)) {}
  ~Sweep() {
    std::printf("[corrupt] %-48s %6d variants: %6d errors, %5d loaded, %d bad\n", what_.c_str(),
                variants_, errors_, loaded_, bad_);
  }

  // Loads `path`. A variant that `must_fail` cannot be a valid model; its error must contain
  // every one of `all_of` and, when given, one of `any_of`.
  void run(const std::string& path, bool must_fail, const std::function<std::string()>& label,
           const std::vector<std::string>& all_of = {},
           const std::vector<std::string>& any_of = {}) {
    ++variants_;
    std::string problem;
    try {
      const Checkpoint c = load_checkpoint(path);
      ++loaded_;
      problem = check_loaded(c);
      if (problem.empty() && must_fail) problem = "loaded without error";
    } catch (const Error& e) {
      ++errors_;
      const std::string msg = e.what();
      auto has = [&](const std::string& w) { return msg.find(w) != std::string::npos; };
      if (!has(file_name_)) problem = "the error does not name " + file_name_ + ": " + msg;
      for (const std::string& w : all_of)
        if (problem.empty() && !has(w)) problem = "the error lacks '" + w + "': " + msg;
      if (problem.empty() && !any_of.empty() && std::none_of(any_of.begin(), any_of.end(), has))
        problem = "the error has none of the expected words: " + msg;
    } catch (const std::exception& e) {
      problem = std::string("not an llm42::Error: ") + e.what();
    }
    if (!problem.empty() && ++bad_ <= 5)
      ADD_FAILURE() << what_ << ", " << label() << ": " << problem;
  }

  int variants() const { return variants_; }
  int errors() const { return errors_; }

 private:
  std::string what_, file_name_;
  int variants_ = 0, errors_ = 0, loaded_ = 0, bad_ = 0;
};

// Truncation points: every offset in [0, header_end], `spread` offsets through the rest, and
// both sides of each boundary (tensor starts and ends), all below the file size.
std::vector<size_t> truncation_points(size_t size, size_t header_end,
                                      const std::vector<size_t>& boundaries, size_t spread) {
  std::set<size_t> s;
  for (size_t i = 0; i <= header_end && i < size; ++i) s.insert(i);
  for (size_t k = 0; k < spread; ++k) s.insert(header_end + (size - header_end) * k / spread);
  for (size_t b : boundaries)
    for (size_t x : {b - 1, b, b + 1})
      if (x < size) s.insert(x);
  for (size_t x : {size_t{4096}, size_t{8192}, size_t{12288}, size - 1})
    if (x < size) s.insert(x);    // page boundaries: an over-read there faults
  return {s.rbegin(), s.rend()};  // descending, so each step only shortens the file
}

// Tensor starts and ends (file offsets) of a loaded checkpoint.
std::vector<size_t> tensor_boundaries(const Checkpoint& c) {
  std::vector<size_t> b;
  for (const auto& [name, t] : c.tensors)
    for (const auto& f : c.files)
      if (t.data >= f->data() && t.data < f->data() + f->size()) {
        b.push_back(static_cast<size_t>(t.data - f->data()));
        b.push_back(static_cast<size_t>(t.data - f->data()) + t.nbytes);
      }
  return b;
}

// Overwrites each byte of [begin, end) with 0x00, 0xFF and one flipped bit (a different bit per
// offset), loading each variant.
void sweep_bytes(const Victim& v, const std::string& load_path, size_t begin, size_t end,
                 Sweep& sweep, size_t stride = 1) {
  for (size_t i = begin; i < end; i += stride) {
    const auto orig = static_cast<uint8_t>(v.original()[i]);
    for (uint8_t val :
         {uint8_t{0x00}, uint8_t{0xFF}, static_cast<uint8_t>(orig ^ (1u << (i % 8)))}) {
      if (val == orig) continue;
      v.put(i, std::string(1, static_cast<char>(val)));
      sweep.run(load_path, false, [&] { return fmt::format("byte {} = 0x{:02x}", i, val); });
    }
    v.restore(i, 1);
  }
}

// ---------------------------------------------------------------------------------------------
// llama2.c

constexpr const char* kHeaderFields[] = {"dim",        "hidden_dim", "n_layers", "n_heads",
                                         "n_kv_heads", "vocab_size", "seq_len"};

class CorruptLlama2c : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string dir = test::shared_dir();
    if (dir.empty()) GTEST_SKIP() << "shared test data not found (set LLM42_SHARED_DIR)";
    original_ = read_file(dir + "/models/stories260K/stories260K.bin");
  }
  std::string original_;
  TempDir tmp_;
};

TEST_F(CorruptLlama2c, Truncated) {
  const Victim v(tmp_.file("stories260K.bin"), original_);
  const Checkpoint clean = load_checkpoint(v.path());
  const std::vector<size_t> bounds = tensor_boundaries(clean);
  // Without its trailing RoPE tables the file is still valid.
  const size_t tensors_end = *std::max_element(bounds.begin(), bounds.end());
  Sweep sweep("stories260K.bin truncated", "stories260K.bin");
  for (size_t n : truncation_points(v.size(), 28, bounds, 400)) {
    v.truncate(n);
    sweep.run(
        v.path(), n != tensors_end, [&] { return fmt::format("truncated to {}", n); }, {},
        kTruncationWords);
  }
}

// The format is ambiguous in one way: a larger vocab_size whose extra embedding rows take exactly
// the bytes of the RoPE tables describes a valid file without the tables (vocab 512 -> 576 here,
// byte 20 bit 6). Such a variant may load; every other one must fail.
TEST_F(CorruptLlama2c, HeaderBytes) {
  const Victim v(tmp_.file("stories260K.bin"), original_);
  Sweep sweep("stories260K.bin header bytes", "stories260K.bin");
  const auto must_fail = [&](size_t i, char c) {
    std::string h = original_.substr(0, 28);
    h[i] = c;
    return read_pod<int32_t>(h, 20) != 576;
  };
  for (size_t i = 0; i < 28; ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      const char c = static_cast<char>(original_[i] ^ (1 << bit));
      v.put(i, std::string(1, c));
      sweep.run(v.path(), must_fail(i, c),
                [&] { return fmt::format("byte {} bit {} flipped", i, bit); });
    }
    for (char c : {'\x00', '\xff'}) {
      if (c == original_[i]) continue;
      v.put(i, std::string(1, c));
      sweep.run(v.path(), must_fail(i, c),
                [&] { return fmt::format("byte {} = {:#x}", i, static_cast<unsigned char>(c)); });
    }
    v.restore(i, 1);
  }
}

TEST_F(CorruptLlama2c, HeaderLies) {
  const Victim v(tmp_.file("stories260K.bin"), original_);
  Sweep sweep("stories260K.bin header fields", "stories260K.bin");
  for (size_t f = 0; f < 7; ++f) {
    const int32_t orig = read_pod<int32_t>(original_, 4 * f);
    for (int64_t lie : {int64_t{0}, int64_t{-1}, int64_t{1}, int64_t{INT32_MIN}, int64_t{INT32_MAX},
                        int64_t{orig} + 1, int64_t{orig} - 1, int64_t{orig} * 2, -int64_t{orig},
                        int64_t{1} << 20, int64_t{1} << 24}) {
      const auto val = static_cast<int32_t>(lie);
      if (val == orig) continue;
      v.put(4 * f, pod(val));
      sweep.run(v.path(), true, [&] { return fmt::format("{} = {}", kHeaderFields[f], val); }, {});
    }
    v.restore(4 * f, 4);
  }
  v.put(16, pod(int32_t{3}));
  sweep.run(v.path(), true, [] { return "n_kv_heads = 3"; }, {"'n_kv_heads' = 3 does not divide"});
  v.restore(16, 4);
  v.put(0, pod(int32_t{0x616b3432}));
  sweep.run(v.path(), true, [] { return "ak42 magic"; }, {"versioned export"});
  v.restore(0, 4);
  v.put(20, pod(int32_t{-512}));  // claims an untied classifier that is not there
  sweep.run(v.path(), true, [] { return "vocab_size = -512"; }, {"lm_head.weight", "past the end"});
  v.reset();
}

TEST_F(CorruptLlama2c, TrailingBytes) {
  write_bytes(tmp_.file("stories260K.bin"), original_ + std::string(4, '\0'));
  Sweep sweep("stories260K.bin with trailing bytes", "stories260K.bin");
  sweep.run(tmp_.file("stories260K.bin"), true, [] { return "4 extra bytes"; }, {"implies"});
  write_bytes(tmp_.file("short.bin"), original_.substr(0, 20));
  Sweep short_sweep("short.bin", "short.bin");
  short_sweep.run(tmp_.file("short.bin"), true, [] { return "20 bytes"; }, {"too short"});
}

// ---------------------------------------------------------------------------------------------
// GGUF

// Where each structural field of a (valid) GGUF file is, found by walking it independently of the
// loader.
struct GgufField {
  size_t at;
  int width;  // 4 or 8 bytes
  std::string what;
};

struct GgufLayout {
  std::vector<GgufField> fields;
  std::map<std::string, size_t> value_at;        // metadata key -> offset of its value
  std::map<std::string, size_t> tensor_info_at;  // tensor name -> offset of its name length
  size_t data_start = 0;
};

GgufLayout walk_gguf(const std::string& b) {
  GgufLayout l;
  size_t p = 0;
  auto field = [&](int width, std::string what) {
    l.fields.push_back({p, width, std::move(what)});
    const uint64_t v = width == 4 ? read_pod<uint32_t>(b, p) : read_pod<uint64_t>(b, p);
    p += static_cast<size_t>(width);
    return v;
  };
  p = 4;
  field(4, "version");
  const uint64_t n_tensors = field(8, "n_tensors");
  const uint64_t n_kv = field(8, "n_kv");
  // Records the first two and the last element of arrays; the rest are skipped.
  std::function<void(uint32_t, const std::string&, bool)> value = [&](uint32_t type,
                                                                      const std::string& key,
                                                                      bool record) {
    static const size_t kFixed[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (type == 8) {
      const uint64_t n = record ? field(8, "string length in " + key) : read_pod<uint64_t>(b, p);
      if (!record) p += 8;
      p += n;
    } else if (type == 9) {
      const auto elem = static_cast<uint32_t>(field(4, "array type of " + key));
      const uint64_t n = field(8, "array count of " + key);
      for (uint64_t i = 0; i < n; ++i) value(elem, key, record && (i < 2 || i + 1 == n));
    } else {
      p += kFixed[type];
    }
  };
  for (uint64_t i = 0; i < n_kv; ++i) {
    const uint64_t len = read_pod<uint64_t>(b, p);
    const std::string key = b.substr(p + 8, len);
    field(8, "key length of " + key);
    p += len;
    const auto type = static_cast<uint32_t>(field(4, "value type of " + key));
    l.value_at[key] = p;
    value(type, key, true);
  }
  for (uint64_t i = 0; i < n_tensors; ++i) {
    const uint64_t len = read_pod<uint64_t>(b, p);
    const std::string name = b.substr(p + 8, len);
    l.tensor_info_at[name] = p;
    field(8, "name length of " + name);
    p += len;
    const uint64_t n_dims = field(4, "n_dims of " + name);
    for (uint64_t d = 0; d < n_dims; ++d) field(8, fmt::format("ne[{}] of {}", d, name));
    field(4, "type of " + name);
    field(8, "offset of " + name);
  }
  l.data_start = (p + 31) / 32 * 32;
  return l;
}

// Offsets inside a tensor info that starts at `info`: name, then n_dims, ne[], type, offset.
size_t info_ne_at(const std::string& b, size_t info) {
  return info + 8 + read_pod<uint64_t>(b, info) + 4;
}
size_t info_type_at(const std::string& b, size_t info) {
  return info_ne_at(b, info) + 8 * read_pod<uint32_t>(b, info_ne_at(b, info) - 4);
}

class CorruptGguf : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string dir = test::shared_dir();
    if (dir.empty()) GTEST_SKIP() << "shared test data not found (set LLM42_SHARED_DIR)";
    original_ = read_file(dir + "/models/stories260K/stories260K-f32.gguf");
    layout_ = walk_gguf(original_);
  }
  std::string original_;
  GgufLayout layout_;
  TempDir tmp_;
};

TEST_F(CorruptGguf, LayoutMatchesLoader) {
  ASSERT_EQ(layout_.data_start, 14144u);
  ASSERT_EQ(layout_.tensor_info_at.size(), 48u);
}

TEST_F(CorruptGguf, WrongMagicAndVersion) {
  const Victim v(tmp_.file("model.gguf"), original_);
  Sweep sweep("model.gguf magic and version", "model.gguf");
  for (const char* magic : {"GGUG", "GGML", "\0\0\0\0", "FUGG"}) {
    v.put(0, std::string(magic, 4));
    sweep.run(v.path(), true, [&] { return "magic " + std::string(magic, 4); },
              {"not a GGUF file"});
  }
  v.restore(0, 4);
  for (uint32_t version : {0u, 1u, 2u, 4u, 0xFFFFFFFFu}) {
    v.put(4, pod(version));
    sweep.run(v.path(), true, [&] { return fmt::format("version {}", version); },
              {fmt::format("GGUF version {} is not supported", version)});
  }
  v.put(4, pod(uint32_t{0x03000000}));
  sweep.run(v.path(), true, [] { return "big-endian"; }, {"big-endian"});
  v.reset();
  // The magic decides, not the name: a GGUF named .bin still loads; a damaged one named .bin is
  // read as llama2.c and rejected by its header checks.
  const Victim b(tmp_.file("model.bin"), original_);
  Sweep named("model.bin (GGUF content)", "model.bin");
  named.run(b.path(), false, [] { return "GGUF named .bin"; });
  b.put(0, "GGUG");
  named.run(b.path(), true, [] { return "GGUG named .bin"; });
}

TEST_F(CorruptGguf, Truncated) {
  const Victim v(tmp_.file("model.gguf"), original_);
  const std::vector<size_t> bounds = tensor_boundaries(load_checkpoint(v.path()));
  Sweep sweep("model.gguf truncated", "model.gguf");
  for (size_t n : truncation_points(v.size(), layout_.data_start, bounds, 300)) {
    v.truncate(n);
    sweep.run(
        v.path(), true, [&] { return fmt::format("truncated to {}", n); }, {}, kTruncationWords);
  }
}

// Every byte before the data section. The token texts, scores and types (most of it) are swept
// with a stride; every structural field is swept fully.
TEST_F(CorruptGguf, HeaderBytes) {
  const Victim v(tmp_.file("model.gguf"), original_);
  Sweep sweep("model.gguf header bytes", "model.gguf");
  const size_t tokens = layout_.value_at.at("tokenizer.ggml.tokens");
  const size_t after_types = layout_.value_at.at("tokenizer.ggml.bos_token_id") - 4 - 8 - 27;
  sweep_bytes(v, v.path(), 0, tokens + 64, sweep);
  sweep_bytes(v, v.path(), tokens + 64, after_types, sweep, 7);
  sweep_bytes(v, v.path(), after_types, layout_.data_start, sweep);
}

// Each length, count, type, n_dims, ne and offset field set to lying values.
TEST_F(CorruptGguf, FieldLies) {
  const Victim v(tmp_.file("model.gguf"), original_);
  Sweep sweep("model.gguf field lies", "model.gguf");
  const uint64_t size = v.size();
  for (const GgufField& f : layout_.fields) {
    const uint64_t orig =
        f.width == 4 ? read_pod<uint32_t>(original_, f.at) : read_pod<uint64_t>(original_, f.at);
    std::vector<std::pair<uint64_t, bool>> lies = {
        // value, must fail
        {0, false},  {1, false},         {orig + 1, false},  {orig - 1, false}, {orig * 2, false},
        {13, false}, {0x7FFFFFFF, true}, {0xFFFFFFFF, true}, {0x80000000, true}};
    if (f.width == 8)
      lies.insert(lies.end(), {{size, false},
                               {size - f.at, false},
                               {uint64_t{1} << 32, true},
                               {uint64_t{1} << 62, true},
                               {uint64_t{INT64_MAX}, true},
                               {UINT64_MAX, true},
                               {uint64_t{1} << 63, true}});
    for (const auto& [lie, must_fail] : lies) {
      if (lie == orig) continue;
      v.put(f.at, f.width == 4 ? pod(static_cast<uint32_t>(lie)) : pod(lie));
      sweep.run(v.path(), must_fail, [&] { return fmt::format("{} = {}", f.what, lie); });
    }
    v.restore(f.at, static_cast<size_t>(f.width));
  }
}

TEST_F(CorruptGguf, UnsupportedTensorType) {
  const Victim v(tmp_.file("model.gguf"), original_);
  Sweep sweep("model.gguf tensor types", "model.gguf");
  const size_t at = info_type_at(original_, layout_.tensor_info_at.at("blk.0.attn_q.weight"));
  for (const auto& [type, name] :
       std::vector<std::pair<uint32_t, std::string>>{{9, "Q8_1"},
                                                     {15, "Q8_K"},
                                                     {16, "IQ2_XXS"},
                                                     {23, "IQ4_XS"},
                                                     {26, "I32"},
                                                     {28, "F64"},
                                                     {31, "unknown"},
                                                     {1000, "unknown"}}) {
    v.put(at, pod(type));
    sweep.run(v.path(), true, [&] { return "type " + name; },
              {"'blk.0.attn_q.weight'", "type " + name, "only F32, F16, BF16 and Q4_0"});
  }
}

// The F32 tensor's bytes read as each quantized type: rows of 64 values are whole blocks of the
// 32-value formats (garbage weights, or a block whose scale is inf/NaN refused as corrupt) and
// not of the 256-value K-quants.
TEST_F(CorruptGguf, F32BytesReadAsQuantizedTypes) {
  const Victim v(tmp_.file("model.gguf"), original_);
  Sweep sweep("model.gguf as quantized types", "model.gguf");
  const size_t at = info_type_at(original_, layout_.tensor_info_at.at("blk.0.attn_q.weight"));
  for (uint32_t type : {2u, 3u, 6u, 7u, 8u, 10u, 11u, 12u, 13u, 14u}) {
    const QuantFormat* q = quant_format(type);
    ASSERT_NE(q, nullptr) << type;
    v.put(at, pod(type));
    if (q->block_size == 256) {
      sweep.run(v.path(), true, [&] { return std::string(q->name); },
                {"'blk.0.attn_q.weight'", q->name, "ne[0] = 64", "256-value blocks"});
    } else {
      sweep.run(v.path(), false, [&] { return std::string(q->name); });
    }
  }
}
TEST_F(CorruptGguf, ModelLevelErrors) {
  const Victim v(tmp_.file("model.gguf"), original_);
  Sweep sweep("model.gguf model-level errors", "model.gguf");
  // general.architecture "llama" -> "qwen2" (same length).
  const size_t arch = layout_.value_at.at("general.architecture") + 8;
  ASSERT_EQ(original_.substr(arch, 5), "llama");
  v.put(arch, "qwen2");
  sweep.run(v.path(), true, [] { return "architecture qwen2"; },
            {"'general.architecture' = 'qwen2' is not supported"});
  v.reset();
  // A renamed tensor: the model misses it.
  const size_t up = layout_.tensor_info_at.at("blk.3.ffn_up.weight") + 8;
  v.put(up, "blk.3.ffn_uq.weight");
  sweep.run(v.path(), true, [] { return "blk.3.ffn_up renamed"; },
            {"tensor 'model.layers.3.mlp.up_proj.weight' is missing"});
  v.reset();
  // Two tensors with one name.
  v.put(layout_.tensor_info_at.at("blk.0.attn_k.weight") + 8, "blk.0.attn_v.weight");
  sweep.run(v.path(), true, [] { return "duplicate name"; },
            {"'blk.0.attn_v.weight' appears twice"});
  v.reset();
  // k_proj's ne [64, 32] swapped to [32, 64]: same bytes, wrong shape for the config.
  const size_t ne = info_ne_at(original_, layout_.tensor_info_at.at("blk.0.attn_k.weight"));
  v.put(ne, pod(uint64_t{32}) + pod(uint64_t{64}));
  sweep.run(v.path(), true, [] { return "attn_k ne swapped"; },
            {"'model.layers.0.self_attn.k_proj.weight' has shape [64, 32]", "implies [32, 64]",
             "num_key_value_heads 4 * head_dim 8"});
  v.reset();
  // A tensor offset off the alignment.
  const size_t off = info_type_at(original_, layout_.tensor_info_at.at("blk.0.attn_q.weight")) + 4;
  v.put(off, pod(read_pod<uint64_t>(original_, off) + 4));
  sweep.run(v.path(), true, [] { return "misaligned offset"; },
            {"not a multiple of the alignment"});
  v.reset();
  // The metadata type of block_count lying: a string where a u32 was.
  v.put(layout_.value_at.at("llama.block_count") - 4, pod(uint32_t{6}));  // f32
  sweep.run(v.path(), true, [] { return "block_count as f32"; },
            {"'llama.block_count' has type f32, expected an integer"});
}

// A GGUF writer for synthetic files: metadata values are given as raw bytes with their type.
class GgufWriter {
 public:
  static std::string str(std::string_view s) { return pod(uint64_t{s.size()}) + std::string(s); }
  static std::string array(GgufType elem, uint64_t n, const std::string& elems) {
    return pod(static_cast<uint32_t>(elem)) + pod(n) + elems;
  }
  void kv(const std::string& key, GgufType type, const std::string& value) {
    kvs_ += str(key) + pod(static_cast<uint32_t>(type)) + value;
    ++n_kv_;
  }
  void tensor(const std::string& name, const std::vector<int64_t>& shape, uint32_t type,
              std::string_view data) {
    tensors_.push_back({name, shape, type, std::string(data)});
  }
  std::string bytes(uint64_t alignment) const {
    std::string out =
        "GGUF" + pod(uint32_t{3}) + pod(uint64_t{tensors_.size()}) + pod(n_kv_) + kvs_;
    std::string data;
    for (const Tensor& t : tensors_) {
      out += str(t.name) + pod(static_cast<uint32_t>(t.shape.size()));
      for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) out += pod(uint64_t(*it));
      out += pod(t.type) + pod(uint64_t{data.size()});
      data += t.data;
      data.resize((data.size() + alignment - 1) / alignment * alignment, '\0');
    }
    out.resize((out.size() + alignment - 1) / alignment * alignment, '\0');
    return out + data;
  }

 private:
  struct Tensor {
    std::string name;
    std::vector<int64_t> shape;
    uint32_t type;
    std::string data;
  };
  std::string kvs_;
  uint64_t n_kv_ = 0;
  std::vector<Tensor> tensors_;
};

// stories260K rewritten with every metadata value type, nested arrays and an alignment of 64,
// plus `extra` (applied to the writer before the tensors are added).
// A tensor stored with another ggml type: the type id and its data.
using Retyped = std::map<std::string, std::pair<uint32_t, std::string>>;

std::string synthetic_gguf(const GgufFile& src,
                           const std::function<void(GgufWriter&)>& extra = nullptr,
                           uint64_t alignment = 64, const Retyped& retyped = {}) {
  using T = GgufType;
  GgufWriter w;
  w.kv("general.architecture", T::kString, GgufWriter::str("llama"));
  w.kv("general.alignment", T::kU32, pod(static_cast<uint32_t>(alignment)));
  w.kv("llama.context_length", T::kU64, pod(uint64_t{512}));
  w.kv("llama.embedding_length", T::kI32, pod(int32_t{64}));
  w.kv("llama.block_count", T::kU16, pod(uint16_t{5}));
  w.kv("llama.feed_forward_length", T::kI64, pod(int64_t{172}));
  w.kv("llama.attention.head_count", T::kU8, pod(uint8_t{8}));
  w.kv("llama.attention.head_count_kv", T::kI16, pod(int16_t{4}));
  w.kv("llama.attention.layer_norm_rms_epsilon", T::kF64, pod(1e-5));
  w.kv("llama.rope.freq_base", T::kF32, pod(10000.0f));
  w.kv("test.i8", T::kI8, pod(int8_t{-3}));
  w.kv("test.bool", T::kBool, pod(uint8_t{1}));
  w.kv("test.nested", T::kArray,
       GgufWriter::array(T::kArray, 2,
                         GgufWriter::array(T::kU32, 2, pod(uint32_t{1}) + pod(uint32_t{2})) +
                             GgufWriter::array(T::kString, 1, GgufWriter::str("x"))));
  w.kv("test.empty", T::kArray, GgufWriter::array(T::kF64, 0, ""));
  w.kv("tokenizer.ggml.model", T::kString, GgufWriter::str("llama"));
  std::string toks, scores, types;
  const std::vector<std::string> tokens = *src.get_strings("tokenizer.ggml.tokens");
  for (const std::string& t : tokens) toks += GgufWriter::str(t);
  // Named: a range-for over *temporary_optional would read a destroyed vector.
  const std::vector<float> src_scores = *src.get_floats("tokenizer.ggml.scores");
  const std::vector<int32_t> src_types = *src.get_ints("tokenizer.ggml.token_type");
  for (float s : src_scores) scores += pod(s);
  for (int32_t t : src_types) types += pod(t);
  w.kv("tokenizer.ggml.tokens", T::kArray, GgufWriter::array(T::kString, tokens.size(), toks));
  w.kv("tokenizer.ggml.scores", T::kArray, GgufWriter::array(T::kF32, tokens.size(), scores));
  w.kv("tokenizer.ggml.token_type", T::kArray, GgufWriter::array(T::kI32, tokens.size(), types));
  w.kv("tokenizer.ggml.bos_token_id", T::kU32, pod(uint32_t{1}));
  w.kv("tokenizer.ggml.add_bos_token", T::kBool, pod(uint8_t{0}));
  if (extra) extra(w);
  for (const GgufFile::Tensor& t : src.tensors())
    if (const auto it = retyped.find(t.name); it != retyped.end())
      w.tensor(t.name, t.shape, it->second.first, it->second.second);
    else if (t.name != "output.weight")  // tied this time
      w.tensor(t.name, t.shape, 0, {reinterpret_cast<const char*>(t.data), t.nbytes});
  return w.bytes(alignment);
}

// blk.0.attn_q.weight (64 x 64) as Q8_0 blocks: 2 a row, 34 bytes each (f16 d, 32 x i8),
// with d = 2^-3 and q = (i * 7 % 255) - 127 for value i, so value i is exactly q / 8.
std::string q8_0_attn_q(size_t block_with_scale = SIZE_MAX, uint16_t scale = 0) {
  std::string b;
  for (size_t blk = 0; blk < 128; ++blk) {
    b += pod(uint16_t{blk == block_with_scale ? scale : uint16_t{0x3000}});  // 0x3000 = 0.125
    for (size_t l = 0; l < 32; ++l) b += static_cast<char>((blk * 32 + l) * 7 % 255 - 127);
  }
  return b;
}

TEST(LoaderGguf, QuantizedTensorIsDequantizedToF32) {
  LLM42_SHARED_OR_SKIP(path, "models/stories260K/stories260K-f32.gguf");
  const GgufFile src(path);
  TempDir tmp;
  write_bytes(tmp.file("q8.gguf"),
              synthetic_gguf(src, nullptr, 64, {{"blk.0.attn_q.weight", {8, q8_0_attn_q()}}}));
  const Checkpoint c = load_checkpoint(tmp.file("q8.gguf"));
  EXPECT_EQ(check_loaded(c), "");
  const TensorView& t = c.get("model.layers.0.self_attn.q_proj.weight", {64, 64});
  ASSERT_EQ(t.dtype, DType::kF32);
  ASSERT_EQ(t.nbytes, 64u * 64u * 4u);
  const auto* v = reinterpret_cast<const float*>(t.data);
  for (size_t i = 0; i < 64 * 64; ++i)
    ASSERT_EQ(v[i], static_cast<float>(static_cast<int8_t>(i * 7 % 255 - 127)) / 8.0f) << i;
  EXPECT_EQ(c.config.weights_dtype, DType::kF32);
}

// stories260K rewritten with a Q8_0 blk.0.attn_q.weight, then damaged.
class CorruptGgufQuantized : public ::testing::Test {
 protected:
  void SetUp() override {
    LLM42_SHARED_OR_SKIP(path, "models/stories260K/stories260K-f32.gguf");
    src_ = std::make_unique<GgufFile>(path);
  }
  std::unique_ptr<GgufFile> src_;
  TempDir tmp_;
};

TEST_F(CorruptGgufQuantized, BlocksAndSizesAreRefused) {
  const GgufFile& src = *src_;
  const std::string file = tmp_.file("q8.gguf");
  Sweep sweep("q8.gguf corrupt blocks and sizes", "q8.gguf");
  // A non-finite scale in block 77: +inf, -inf, NaN, signalling NaN.
  for (uint16_t scale : {uint16_t{0x7C00}, uint16_t{0xFC00}, uint16_t{0x7E00}, uint16_t{0x7C01}}) {
    write_bytes(file, synthetic_gguf(src, nullptr, 64,
                                     {{"blk.0.attn_q.weight", {8, q8_0_attn_q(77, scale)}}}));
    sweep.run(file, true, [&] { return fmt::format("scale {:#06x}", scale); },
              {"'blk.0.attn_q.weight'", "Q8_0", "block 77", "corrupt", "offset"});
  }
  // Subnormal and zero scales are valid blocks.
  for (uint16_t scale : {uint16_t{0x0001}, uint16_t{0x8000}, uint16_t{0x0000}}) {
    write_bytes(file, synthetic_gguf(src, nullptr, 64,
                                     {{"blk.0.attn_q.weight", {8, q8_0_attn_q(77, scale)}}}));
    sweep.run(file, false, [&] { return fmt::format("scale {:#06x}", scale); });
  }
  // Rows that are not whole blocks: a Q8_0 tensor of shape (64, 48).
  write_bytes(file, synthetic_gguf(src, [](GgufWriter& w) {
                w.tensor("test.odd", {64, 48}, 8, std::string(64 * 48 / 32 * 34, '\0'));
              }));
  sweep.run(file, true, [] { return "ne[0] = 48"; },
            {"'test.odd'", "Q8_0", "ne[0] = 48", "32-value blocks"});
  // Blocks that run past the end of the file.
  const std::string whole =
      synthetic_gguf(src, nullptr, 64, {{"blk.0.attn_q.weight", {8, q8_0_attn_q()}}});
  const GgufLayout layout = walk_gguf(whole);
  const size_t info = layout.tensor_info_at.at("blk.0.attn_q.weight");
  const size_t data_start = (layout.fields.back().at + 8 + 63) / 64 * 64;  // alignment 64
  const size_t q_start = data_start + read_pod<uint64_t>(whole, info_type_at(whole, info) + 4);
  for (size_t cut : {q_start + 1, q_start + 34 * 128 - 1}) {
    write_bytes(file, whole.substr(0, cut));
    sweep.run(file, true, [&] { return fmt::format("cut at {}", cut); }, {"past the end"});
  }
}

TEST(LoaderGguf, SyntheticAllValueTypes) {
  LLM42_SHARED_OR_SKIP(path, "models/stories260K/stories260K-f32.gguf");
  const GgufFile src(path);
  TempDir tmp;
  write_bytes(tmp.file("synthetic.gguf"), synthetic_gguf(src));
  const GgufFile g(tmp.file("synthetic.gguf"));
  EXPECT_EQ(g.get_int("test.i8"), -3);
  EXPECT_EQ(g.get_bool("test.bool"), true);
  EXPECT_EQ(g.get_int("llama.block_count"), 5);
  EXPECT_EQ(g.get_float("llama.rope.freq_base"), 10000.0);
  EXPECT_EQ(g.array_size("test.nested"), 2u);
  EXPECT_EQ(g.array_size("test.empty"), 0u);
  EXPECT_THROW(g.get_strings("test.nested"), Error);
  const Checkpoint c = load_checkpoint(tmp.file("synthetic.gguf"));
  const Checkpoint orig = load_checkpoint(path);
  EXPECT_TRUE(c.config.tie_embeddings);
  EXPECT_EQ(c.config.n_layers, 5);
  EXPECT_EQ(c.config.ffn_dim, 172);
  EXPECT_EQ(c.config.vocab_size, 512);
  ASSERT_TRUE(c.vocab.has_value());
  EXPECT_FALSE(c.vocab->add_bos);
  for (const TensorSpec& s : expected_tensors(c.config)) {
    const TensorView& a = c.get(s.name, s.shape);
    const TensorView& b = orig.get(s.name, s.shape);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data) % 64,
              reinterpret_cast<uintptr_t>(c.files[0]->data()) % 64);
    EXPECT_EQ(std::memcmp(a.data, b.data, a.nbytes), 0) << s.name;
  }
}

// Llama 3.1 GGUFs store their RoPE scaling as per-frequency divisors in rope_freqs.weight.
TEST(LoaderGguf, RopeFreqFactors) {
  LLM42_SHARED_OR_SKIP(path, "models/stories260K/stories260K-f32.gguf");
  const GgufFile src(path);
  TempDir tmp;
  const std::string factors = pod(1.0f) + pod(2.0f) + pod(4.0f) + pod(8.0f);
  write_bytes(tmp.file("freqs.gguf"), synthetic_gguf(src, [&](GgufWriter& w) {
                w.tensor("rope_freqs.weight", {4}, 0, factors);
              }));
  const Checkpoint c = load_checkpoint(tmp.file("freqs.gguf"));
  EXPECT_EQ(c.config.rope_freq_factors, (std::vector<double>{1, 2, 4, 8}));
  EXPECT_EQ(c.find("rope_freqs.weight"), nullptr);
  const std::vector<double> f = rope_inv_freq(c.config);
  EXPECT_EQ(f[3], 1.0 / std::pow(10000.0, 6.0 / 8) / 8);
}

TEST(CorruptGgufSynthetic, Errors) {
  LLM42_SHARED_OR_SKIP(path, "models/stories260K/stories260K-f32.gguf");
  const GgufFile src(path);
  TempDir tmp;
  const std::string file = tmp.file("synthetic.gguf");
  Sweep sweep("synthetic.gguf errors", "synthetic.gguf");
  auto expect = [&](const std::string& label, const std::string& bytes,
                    const std::vector<std::string>& all_of) {
    write_bytes(file, bytes);
    sweep.run(
        file, true, [&] { return label; }, all_of);
  };
  using T = GgufType;
  for (uint64_t a : {0u, 1u, 3u, 4u, 48u}) {
    // The writer pads to 64; the file says otherwise.
    std::string b = synthetic_gguf(src);
    const size_t at = b.find("general.alignment") + 17 + 4;
    std::memcpy(b.data() + at, &a, 4);
    expect(fmt::format("alignment {}", a), b, {"'general.alignment'"});
  }
  std::string deep = GgufWriter::array(T::kU8, 0, "");
  for (int i = 0; i < 10; ++i) deep = GgufWriter::array(T::kArray, 1, deep);
  expect("arrays nested 11 deep",
         synthetic_gguf(src, [&](GgufWriter& w) { w.kv("test.deep", T::kArray, deep); }),
         {"nested deeper than 8"});
  expect("bad value type",
         synthetic_gguf(src, [&](GgufWriter& w) { w.kv("test.bad", static_cast<T>(13), ""); }),
         {"value type 13 is not a GGUF value type"});
  expect("duplicate key",
         synthetic_gguf(
             src, [&](GgufWriter& w) { w.kv("llama.block_count", T::kU32, pod(uint32_t{5})); }),
         {"'llama.block_count'", "appears twice"});
  // Values patched in place: the byte after a key's name and type is its value.
  auto patched = [&](const std::string& key, const std::string& value) {
    std::string b = synthetic_gguf(src);
    b.replace(b.find(key) + key.size() + 4, value.size(), value);
    return b;
  };
  expect("bool 2", patched("tokenizer.ggml.add_bos_token", pod(uint8_t{2})),
         {"'tokenizer.ggml.add_bos_token' = 2 is not a bool"});
  expect("head_count_kv 3", patched("llama.attention.head_count_kv", pod(int16_t{3})),
         {"'llama.attention.head_count_kv' = 3 does not divide llama.attention.head_count = 8"});
  expect("head_count 0", patched("llama.attention.head_count", pod(uint8_t{0})),
         {"'llama.attention.head_count' = 0 must be a positive"});
  expect("block_count 0", patched("llama.block_count", pod(uint16_t{0})), {"'llama.block_count'"});
  expect("merges of u32",
         synthetic_gguf(src,
                        [&](GgufWriter& w) {
                          w.kv("tokenizer.ggml.merges", T::kArray,
                               GgufWriter::array(T::kU32, 1, pod(1u)));
                        }),
         {"'tokenizer.ggml.merges' is an array of u32, expected an array of string"});
  expect("eos outside vocab",
         synthetic_gguf(src,
                        [&](GgufWriter& w) {
                          w.kv("tokenizer.ggml.eos_token_id", T::kU32, pod(uint32_t{512}));
                        }),
         {"'tokenizer.ggml.eos_token_id' = 512 is outside the vocabulary of 512 tokens"});
  expect("rope_freqs size",
         synthetic_gguf(src,
                        [&](GgufWriter& w) {
                          w.tensor("rope_freqs.weight", {3}, 0, pod(1.0f) + pod(1.0f) + pod(1.0f));
                        }),
         {"3 RoPE frequency factors, expected head_dim / 2 = 4"});
  expect("rope scaling yarn",
         synthetic_gguf(src,
                        [&](GgufWriter& w) {
                          w.kv("llama.rope.scaling.type", T::kString, GgufWriter::str("yarn"));
                        }),
         {"'llama.rope.scaling.type' = 'yarn' is not supported"});
  expect("partial rope",
         synthetic_gguf(
             src,
             [&](GgufWriter& w) { w.kv("llama.rope.dimension_count", T::kU32, pod(uint32_t{4})); }),
         {"partial RoPE"});
  expect("moe",
         synthetic_gguf(
             src, [&](GgufWriter& w) { w.kv("llama.expert_count", T::kU32, pod(uint32_t{8})); }),
         {"mixture-of-experts"});
  expect("vocab smaller than tokens",
         synthetic_gguf(
             src, [&](GgufWriter& w) { w.kv("llama.vocab_size", T::kU32, pod(uint32_t{500})); }),
         {"512 tokens, more than the model's vocabulary of 500"});
  expect("iq2_xxs tensor",
         synthetic_gguf(src,
                        [&](GgufWriter& w) {
                          w.tensor("extra.weight", {2, 256}, 16, std::string(132, '\0'));
                        }),
         {"'extra.weight' has type IQ2_XXS (16)"});
}

// ---------------------------------------------------------------------------------------------
// safetensors: tiny-llama3 (config.json + model.safetensors)

// A safetensors file split into its header JSON and data section.
struct Safetensors {
  json header;
  std::string data;

  static Safetensors parse(const std::string& bytes) {
    const uint64_t n = read_pod<uint64_t>(bytes, 0);
    return {json::parse(bytes.substr(8, n)), bytes.substr(8 + n)};
  }
  std::string bytes() const {
    std::string h = header.dump();
    h.resize((h.size() + 7) / 8 * 8, ' ');  // keeps the data 8-byte aligned, as writers do
    return pod(uint64_t{h.size()}) + h + data;
  }
};

class CorruptSafetensors : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string dir = test::shared_dir();
    if (dir.empty()) GTEST_SKIP() << "shared test data not found (set LLM42_SHARED_DIR)";
    weights_ = read_file(dir + "/models/tiny-llama3/model.safetensors");
    config_ = read_file(dir + "/models/tiny-llama3/config.json");
    write_bytes(tmp_.file("config.json"), config_);
    write_bytes(tmp_.file("model.safetensors"), weights_);
    header_end_ = 8 + read_pod<uint64_t>(weights_, 0);
  }
  std::string weights_, config_;
  size_t header_end_ = 0;
  TempDir tmp_;
};

TEST_F(CorruptSafetensors, Truncated) {
  const Victim v(tmp_.file("model.safetensors"), weights_);
  const std::vector<size_t> bounds = tensor_boundaries(load_checkpoint(tmp_.path()));
  Sweep sweep("model.safetensors truncated", "model.safetensors");
  for (size_t n : truncation_points(v.size(), header_end_, bounds, 200)) {
    v.truncate(n);
    sweep.run(
        tmp_.path(), true, [&] { return fmt::format("truncated to {}", n); }, {}, kTruncationWords);
  }
}

TEST_F(CorruptSafetensors, HeaderBytes) {
  const Victim v(tmp_.file("model.safetensors"), weights_);
  Sweep sweep("model.safetensors header bytes", "model.safetensors");
  sweep_bytes(v, tmp_.path(), 0, header_end_, sweep);
}

TEST_F(CorruptSafetensors, HeaderLengthLies) {
  const Victim v(tmp_.file("model.safetensors"), weights_);
  Sweep sweep("model.safetensors header length", "model.safetensors");
  const uint64_t n = header_end_ - 8, size = v.size();
  for (const auto& [lie, must_fail] :
       std::vector<std::pair<uint64_t, bool>>{{0, true},
                                              {1, true},
                                              {7, true},
                                              {n - 1, false},
                                              {n + 1, false},
                                              {n * 2, false},
                                              {size - 8, true},
                                              {size - 7, true},
                                              {size, true},
                                              {100'000'001, true},
                                              {uint64_t{1} << 32, true},
                                              {uint64_t{1} << 63, true},
                                              {UINT64_MAX, true}}) {
    v.put(0, pod(lie));
    sweep.run(tmp_.path(), must_fail, [&] { return fmt::format("header length {}", lie); });
  }
}

TEST_F(CorruptSafetensors, HeaderLies) {
  const Safetensors st = Safetensors::parse(weights_);
  const std::string k = "model.layers.0.self_attn.k_proj.weight";
  const json entry = st.header.at(k);
  const int64_t b = entry["data_offsets"][0], e = entry["data_offsets"][1];
  const auto size = static_cast<int64_t>(st.data.size());
  Sweep sweep("model.safetensors header lies", "model.safetensors");
  struct Lie {
    std::string label;
    std::function<void(json&)> edit;
    std::vector<std::string> all_of;
  };
  auto set = [&](const char* field, json value) { return [=](json& h) { h[k][field] = value; }; };
  const std::vector<Lie> lies = {
      {"dtype F64", set("dtype", "F64"), {"'" + k + "' has unsupported dtype 'F64'"}},
      {"dtype I8", set("dtype", "I8"), {"unsupported dtype 'I8'"}},
      {"dtype Q4", set("dtype", "Q4"), {"unsupported dtype 'Q4'"}},
      {"dtype empty", set("dtype", ""), {"unsupported dtype ''"}},
      {"dtype number", set("dtype", 5), {"'dtype' is not a string"}},
      {"dtype F32", set("dtype", "F32"), {k, "needs 8192 bytes"}},
      {"dtype I32", set("dtype", "I32"), {k, "needs 8192 bytes"}},
      {"shape negative", set("shape", {-1, 64}), {k, "'shape'", "non-negative"}},
      {"shape float", set("shape", {1e30, 1}), {k, "'shape'"}},
      {"shape string", set("shape", {"a"}), {k, "'shape'"}},
      {"shape not a list", set("shape", "x"), {k, "'shape' is not a list"}},
      {"shape overflow", set("shape", {int64_t{1} << 62, 1 << 20}), {k, "'shape'", "addressed"}},
      {"shape bytes overflow", set("shape", {int64_t{1} << 62, 2}), {k, "'shape'", "addressed"}},
      {"shape scalar", set("shape", json::array()), {k, "needs 2 bytes"}},
      {"shape wrong rank",
       set("shape", {32, 64, 1}),
       {k, "has shape [32, 64, 1]", "implies [32, 64]"}},
      {"shape transposed",
       set("shape", {64, 32}),
       {k, "has shape [64, 32]",
        "implies [32, 64] = (num_key_value_heads 2 * head_dim 16, "
        "hidden_size 64)"}},
      {"offsets end+2", set("data_offsets", {b, e + 2}), {k, "hold 4098"}},
      {"offsets reversed", set("data_offsets", {e, b}), {k, "begin > end"}},
      {"offsets huge",
       set("data_offsets", {0, uint64_t{1} << 63}),
       {k, "past the end of the data"}},
      {"offsets max", set("data_offsets", {UINT64_MAX - 1, UINT64_MAX}), {k, "past the end"}},
      {"offsets negative", set("data_offsets", {-1, 5}), {k, "non-negative"}},
      {"offsets to end", set("data_offsets", {b, size}), {k}},
      {"offsets past end", set("data_offsets", {size - 4096 + 2, size + 2}), {k, "past the end"}},
      {"offsets misaligned",
       set("data_offsets", {b + 1, e + 1}),
       {k, "not a multiple of its 2-byte"}},
      {"offsets one", set("data_offsets", {b}), {k, "[begin, end] pair"}},
      {"offsets three", set("data_offsets", {b, e, e}), {k, "[begin, end] pair"}},
      {"offsets string", set("data_offsets", "x"), {k, "[begin, end] pair"}},
      {"no dtype", [&](json& h) { h[k].erase("dtype"); }, {k, "'dtype' is missing"}},
      {"no shape", [&](json& h) { h[k].erase("shape"); }, {k, "'shape' is missing"}},
      {"no offsets",
       [&](json& h) { h[k].erase("data_offsets"); },
       {k, "'data_offsets' is missing"}},
      {"entry number", [&](json& h) { h[k] = 5; }, {k, "not an object"}},
      {"entry list", [&](json& h) { h[k] = json::array(); }, {k, "not an object"}},
      {"entry removed",
       [&](json& h) { h.erase(k); },
       {"tensor '" + k + "' is missing (not in model.safetensors), but", "config.json implies it"}},
      {"unused entry out of range",
       [&](json& h) {
         h["extra"] = {{"dtype", "F32"}, {"shape", {4}}, {"data_offsets", {size, size + 16}}};
       },
       {"'extra'", "past the end"}},
      {"header a list",
       [&](json& h) {
         h = json::array({1, 2});
       },
       {"not a JSON object"}},
      {"header a string", [&](json& h) { h = "x"; }, {"not a JSON object"}},
  };
  for (const Lie& lie : lies) {
    Safetensors s = st;
    lie.edit(s.header);
    write_bytes(tmp_.file("model.safetensors"), s.bytes());
    sweep.run(
        tmp_.path(), true, [&] { return lie.label; }, lie.all_of);
  }
  // What is ignored: __metadata__ of any shape.
  Safetensors s = st;
  s.header["__metadata__"] = 5;
  write_bytes(tmp_.file("model.safetensors"), s.bytes());
  sweep.run(tmp_.path(), false, [] { return "__metadata__ = 5"; });
  EXPECT_NO_THROW(load_checkpoint(tmp_.path()));
  // Invalid JSON and trailing garbage.
  for (const std::string& text :
       {std::string("{\"a\": "), std::string("{} x"), std::string("\xff\xfe")}) {
    write_bytes(tmp_.file("model.safetensors"), pod(uint64_t{text.size()}) + text);
    sweep.run(tmp_.path(), true, [&] { return "header " + text; }, {"not valid JSON"});
  }
}

TEST_F(CorruptSafetensors, ConfigLies) {
  const json cfg = json::parse(config_);
  Sweep sweep("config.json lies", "config.json");
  struct Lie {
    std::string label;
    std::function<void(json&)> edit;
    std::vector<std::string> all_of;
  };
  const std::vector<Lie> lies = {
      {"kv heads 3",
       [](json& j) { j["num_key_value_heads"] = 3; },
       {"'num_key_value_heads' = 3 does not divide num_attention_heads = 4"}},
      {"ffn 130",
       [](json& j) { j["intermediate_size"] = 130; },
       {"'model.layers.0.mlp.gate_proj.weight' has shape [128, 64]", "implies [130, 64]",
        "intermediate_size 130"}},
      {"vocab 385",
       [](json& j) { j["vocab_size"] = 385; },
       {"'model.embed_tokens.weight' has shape [384, 64]", "vocab_size 385"}},
      {"hidden 65", [](json& j) { j["hidden_size"] = 65; }, {"hidden_size 65"}},
      {"3 layers",
       [](json& j) { j["num_hidden_layers"] = 3; },
       {"tensor 'model.layers.2.input_layernorm.weight' is missing"}},
      {"head_dim 32", [](json& j) { j["head_dim"] = 32; }, {"q_proj.weight", "head_dim 32"}},
      {"head_dim odd", [](json& j) { j["head_dim"] = 15; }, {"'head_dim' = 15"}},
      {"yarn",
       [](json& j) { j["rope_parameters"]["rope_type"] = "yarn"; },
       {"'rope_parameters.rope_type' = \"yarn\" is not supported"}},
      {"dtype int8", [](json& j) { j["dtype"] = "int8"; }, {"'dtype' = \"int8\""}},
      {"gpt2", [](json& j) { j["architectures"] = {"GPT2LMHeadModel"}; }, {"'architectures'"}},
      {"no vocab", [](json& j) { j.erase("vocab_size"); }, {"'vocab_size' is missing"}},
      {"list", [](json& j) { j = json::array(); }, {"not a JSON object"}},
      {"eos huge", [](json& j) { j["eos_token_id"] = 1LL << 40; }, {"'eos_token_id'"}},
  };
  for (const Lie& lie : lies) {
    json j = cfg;
    lie.edit(j);
    write_bytes(tmp_.file("config.json"), j.dump(2));
    sweep.run(
        tmp_.path(), true, [&] { return lie.label; }, lie.all_of);
  }
  write_bytes(tmp_.file("config.json"), config_ + "}");
  sweep.run(tmp_.path(), true, [] { return "trailing brace"; }, {"invalid JSON"});
  // An untied model declared tied still loads: the stored head is ignored, as transformers does.
  json tied = cfg;
  tied["tie_word_embeddings"] = true;
  write_bytes(tmp_.file("config.json"), tied.dump());
  sweep.run(tmp_.path(), false, [] { return "tied"; });
  // The tied tiny-qwen2 declared untied misses its head.
  TempDir q;
  const std::string qdir = test::shared_dir() + "/models/tiny-qwen2/";
  json qcfg = json::parse(read_file(qdir + "config.json"));
  qcfg["tie_word_embeddings"] = false;
  write_bytes(q.file("config.json"), qcfg.dump());
  write_bytes(q.file("model.safetensors"), read_file(qdir + "model.safetensors"));
  Sweep untied("tiny-qwen2 config.json untied", "config.json");
  untied.run(q.path(), true, [] { return "untied"; },
             {"tensor 'lm_head.weight' is missing", "output head is not tied"});
}

TEST_F(CorruptSafetensors, ConfigBytes) {
  const Victim v(tmp_.file("config.json"), config_);
  Sweep sweep("config.json bytes", "config.json");
  sweep_bytes(v, tmp_.path(), 0, v.size(), sweep);
}

// ---------------------------------------------------------------------------------------------
// Sharded safetensors: tiny-qwen2 split into two shards and an index.

class CorruptSharded : public ::testing::Test {
 protected:
  static constexpr const char* kShard1 = "model-00001-of-00002.safetensors";
  static constexpr const char* kShard2 = "model-00002-of-00002.safetensors";

  void SetUp() override {
    const std::string dir = test::shared_dir();
    if (dir.empty()) GTEST_SKIP() << "shared test data not found (set LLM42_SHARED_DIR)";
    const std::string src = dir + "/models/tiny-qwen2/";
    write_bytes(tmp_.file("config.json"), read_file(src + "config.json"));
    const Safetensors whole = Safetensors::parse(read_file(src + "model.safetensors"));
    // Layer 0 and the embedding in shard 1, the rest in shard 2.
    Safetensors parts[2];
    for (const auto& [name, e] : whole.header.items()) {
      if (name == "__metadata__") continue;
      const int s =
          name.starts_with("model.layers.0.") || name == "model.embed_tokens.weight" ? 0 : 1;
      const size_t b = e["data_offsets"][0], end = e["data_offsets"][1];
      json entry = e;
      entry["data_offsets"] = {parts[s].data.size(), parts[s].data.size() + (end - b)};
      parts[s].header[name] = entry;
      parts[s].data += whole.data.substr(b, end - b);
      index_["weight_map"][name] = s == 0 ? kShard1 : kShard2;
    }
    shard1_ = parts[0].bytes();
    shard2_ = parts[1].bytes();
    write_all();
  }
  void write_all() const {
    write_bytes(tmp_.file(kShard1), shard1_);
    write_bytes(tmp_.file(kShard2), shard2_);
    write_bytes(tmp_.file("model.safetensors.index.json"), index_.dump());
  }

  TempDir tmp_;
  json index_;
  std::string shard1_, shard2_;
};

TEST_F(CorruptSharded, LoadsLikeTheSingleFile) {
  const Checkpoint sharded = load_checkpoint(tmp_.path());
  const Checkpoint single = load_checkpoint(test::shared_dir() + "/models/tiny-qwen2");
  EXPECT_EQ(sharded.files.size(), 2u);
  ASSERT_EQ(sharded.tensors.size(), single.tensors.size());
  for (const auto& [name, t] : single.tensors) {
    const TensorView* s = sharded.find(name);
    ASSERT_NE(s, nullptr) << name;
    EXPECT_EQ(s->shape, t.shape);
    EXPECT_EQ(std::memcmp(s->data, t.data, t.nbytes), 0) << name;
  }
}

TEST_F(CorruptSharded, IndexLies) {
  Sweep sweep("sharded index lies", "model.safetensors.index.json");
  const std::string k = "model.layers.1.mlp.up_proj.weight";
  struct Lie {
    std::string label;
    std::function<void(json&)> edit;
    std::vector<std::string> all_of;
  };
  const std::vector<Lie> lies = {
      {"parent dir",
       [&](json& j) { j["weight_map"][k] = "../model.safetensors"; },
       {"'../model.safetensors' is not a file name in the same folder"}},
      {"absolute", [&](json& j) { j["weight_map"][k] = "/etc/passwd"; }, {"not a file name"}},
      {"subfolder",
       [&](json& j) { j["weight_map"][k] = "sub/x.safetensors"; },
       {"not a file name"}},
      {"dot dot", [&](json& j) { j["weight_map"][k] = ".."; }, {"not a file name"}},
      {"empty", [&](json& j) { j["weight_map"][k] = ""; }, {"not a file name"}},
      {"number", [&](json& j) { j["weight_map"][k] = 5; }, {"is not a file name"}},
      {"absent shard",
       [&](json& j) { j["weight_map"][k] = "model-00003-of-00002.safetensors"; },
       {"'model-00003-of-00002.safetensors'", "does not exist"}},
      {"wrong shard",
       [&](json& j) { j["weight_map"][k] = kShard1; },
       {"puts tensor '" + k + "' in '" + kShard1 + "', which has no such tensor"}},
      {"unknown tensor",
       [&](json& j) { j["weight_map"]["model.extra"] = kShard1; },
       {"'model.extra'", "no such tensor"}},
      {"no weight_map", [&](json& j) { j.erase("weight_map"); }, {"'weight_map' is missing"}},
      {"weight_map list", [&](json& j) { j["weight_map"] = json::array(); }, {"'weight_map'"}},
      {"weight_map empty", [&](json& j) { j["weight_map"] = json::object(); }, {"is empty"}},
      {"index a list", [&](json& j) { j = json::array(); }, {"not a JSON object"}},
  };
  for (const Lie& lie : lies) {
    json j = index_;
    lie.edit(j);
    write_bytes(tmp_.file("model.safetensors.index.json"), j.dump());
    sweep.run(
        tmp_.path(), true, [&] { return lie.label; }, lie.all_of);
  }
  write_bytes(tmp_.file("model.safetensors.index.json"), "{\"weight_map\": {");
  sweep.run(tmp_.path(), true, [] { return "invalid JSON"; }, {"invalid JSON"});
}

TEST_F(CorruptSharded, ShardLies) {
  // A tensor in both shards.
  Safetensors s2 = Safetensors::parse(shard2_);
  const Safetensors s1 = Safetensors::parse(shard1_);
  s2.header["model.embed_tokens.weight"] = s1.header["model.embed_tokens.weight"];
  write_bytes(tmp_.file(kShard2), s2.bytes());
  Sweep sweep("shard lies", ".safetensors");
  sweep.run(tmp_.path(), true, [] { return "duplicate tensor"; },
            {"tensor 'model.embed_tokens.weight' is also in"});
  write_all();
  // A tensor absent from the index and the shards.
  Safetensors less = Safetensors::parse(shard2_);
  less.header.erase("model.layers.1.self_attn.q_proj.bias");
  json index = index_;
  index["weight_map"].erase("model.layers.1.self_attn.q_proj.bias");
  write_bytes(tmp_.file(kShard2), less.bytes());
  write_bytes(tmp_.file("model.safetensors.index.json"), index.dump());
  Sweep missing("shards missing a tensor", "model.safetensors.index.json");
  missing.run(tmp_.path(), true, [] { return "missing bias"; },
              {"tensor 'model.layers.1.self_attn.q_proj.bias' is missing (not in any of the 2 "
               "shards"});
  write_all();
  // The second shard truncated at every header offset and through its data.
  const Victim v(tmp_.file(kShard2), shard2_);
  Sweep trunc("shard 2 truncated", kShard2);
  const size_t header_end = 8 + read_pod<uint64_t>(shard2_, 0);
  for (size_t n : truncation_points(v.size(), header_end, {}, 100)) {
    v.truncate(n);
    trunc.run(
        tmp_.path(), true, [&] { return fmt::format("truncated to {}", n); }, {}, kTruncationWords);
  }
}

}  // namespace
}  // namespace llm42
