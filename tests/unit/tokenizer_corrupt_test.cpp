// Broken tokenizer files must give an llm42::Error that names the file and what is wrong — never
// a crash, a hang or a silent half-tokenizer. scripts/test.sh runs these suites (Corrupt*) under
// AddressSanitizer and UndefinedBehaviorSanitizer too.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>

#include "model/checkpoint.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/mapped_file.h"

namespace llm42 {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// A scratch folder for one test, removed at the end.
class ScratchDir {
 public:
  ScratchDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() /
            fmt::format("llm42_{}_{}_{}", info->test_suite_name(), info->name(), getpid());
    fs::create_directories(path_);
  }
  ~ScratchDir() { fs::remove_all(path_); }
  std::string write(const std::string& name, std::string_view bytes) const {
    const std::string p = (path_ / name).string();
    std::ofstream(p, std::ios::binary)
        .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return p;
  }
  std::string path() const { return path_.string(); }

 private:
  fs::path path_;
};

// Runs `load`, which must throw llm42::Error whose message holds every string of `needles`.
template <typename F>
void expect_error(F&& load, const std::vector<std::string>& needles, const std::string& what) {
  try {
    load();
    ADD_FAILURE() << what << ": no error";
  } catch (const Error& e) {
    for (const std::string& n : needles)
      EXPECT_NE(std::string(e.what()).find(n), std::string::npos)
          << what << ": the message does not mention '" << n << "': " << e.what();
  }
}

// ---------------------------------------------------------------------------------------------
// llama2.c tokenizer files

TEST(CorruptTokenizerLlama2c, EveryTruncationIsAnError) {
  LLM42_SHARED_OR_SKIP(path, "models/stories260K/tok512.bin");
  const std::string full = read_file(path);
  ScratchDir dir;
  // Every cut in the header and the first tokens, then every 13th byte, then the last bytes.
  for (size_t n = 0; n < full.size(); n += n < 512 || n + 16 > full.size() ? 1 : 13) {
    const std::string p = dir.write("tok.bin", std::string_view(full).substr(0, n));
    expect_error([&] { load_llama2c_tokenizer(p, 512); }, {p}, fmt::format("cut at {}", n));
  }
  EXPECT_NO_THROW(load_llama2c_tokenizer(dir.write("tok.bin", full), 512));
}

TEST(CorruptTokenizerLlama2c, BadFieldsAreNamed) {
  LLM42_SHARED_OR_SKIP(path, "models/stories260K/tok512.bin");
  const std::string full = read_file(path);
  ScratchDir dir;
  const auto patched = [&](size_t at, const void* bytes, size_t n) {
    std::string s = full;
    std::memcpy(s.data() + at, bytes, n);
    return dir.write("tok.bin", s);
  };
  // Token 0 starts at byte 4: score at 4, length at 8.
  const int32_t huge = 1 << 30, negative = -5, zero = 0;
  const float nan = std::nanf("");
  std::string p = patched(8, &huge, 4);
  expect_error([&] { load_llama2c_tokenizer(p, 512); }, {p, "token 0", "length"}, "huge length");
  p = patched(8, &negative, 4);
  expect_error([&] { load_llama2c_tokenizer(p, 512); }, {p, "token 0"}, "negative length");
  p = patched(4, &nan, 4);
  expect_error([&] { load_llama2c_tokenizer(p, 512); }, {p, "score"}, "NaN score");
  p = patched(0, &zero, 4);
  expect_error([&] { load_llama2c_tokenizer(p, 512); }, {p, "max_token_length"}, "header");
  p = dir.write("tok.bin", full + "extra");
  expect_error([&] { load_llama2c_tokenizer(p, 512); }, {p, "left"}, "trailing bytes");
  p = dir.write("tok.bin", full);
  expect_error([&] { load_llama2c_tokenizer(p, 600); }, {p, "truncated"}, "vocab too large");
  expect_error([&] { load_llama2c_tokenizer(p, 500); }, {p, "left"}, "vocab too small");
  expect_error([&] { load_llama2c_tokenizer(p, 2); }, {p, "vocab_size"}, "vocab of 2");
  expect_error([&] { load_llama2c_tokenizer(dir.path() + "/missing.bin", 512); }, {"missing.bin"},
               "missing file");
}

TEST(CorruptTokenizerLlama2c, RandomBytesNeverCrash) {
  ScratchDir dir;
  std::mt19937 rng(42);
  for (int i = 0; i < 300; ++i) {
    std::string s(rng() % 200, '\0');
    for (char& c : s) c = static_cast<char>(rng());
    if (s.size() >= 4) {
      const int32_t max_len = 1 + static_cast<int32_t>(rng() % 8);
      std::memcpy(s.data(), &max_len, 4);
    }
    const std::string p = dir.write("tok.bin", s);
    try {
      const auto tok = load_llama2c_tokenizer(p, 4 + static_cast<int>(rng() % 8));
      // A file that happens to parse must still tokenize safely.
      tok->decode(tok->encode("some text \xFF"));
    } catch (const Error&) {
    }
  }
}

// ---------------------------------------------------------------------------------------------
// tokenizer.json

json minimal_tokenizer() {
  return json::parse(R"({
    "version": "1.0",
    "added_tokens": [{"id": 3, "content": "<s>", "single_word": false, "lstrip": false,
                      "rstrip": false, "normalized": false, "special": true}],
    "normalizer": null,
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "\\s+|[^\\s]+"}, "behavior": "Isolated",
         "invert": false},
        {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]},
    "post_processor": {"type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [],
        "special_tokens": {"<s>": {"id": "<s>", "ids": [3], "tokens": ["<s>"]}}},
    "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
    "model": {"type": "BPE", "dropout": null, "unk_token": null, "byte_fallback": false,
              "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}
  })");
}

TEST(CorruptTokenizerJson, TheMinimalFileIsFine) {
  ScratchDir dir;
  const auto tok = load_hf_tokenizer(dir.write("tokenizer.json", minimal_tokenizer().dump()));
  EXPECT_EQ(tok->encode("ab"), (std::vector<int32_t>{3, 2}));
  EXPECT_EQ(tok->encode("ab", false), (std::vector<int32_t>{2}));
  EXPECT_EQ(tok->decode({3, 2, 0}), "aba");
  EXPECT_EQ(tok->bos_id(), 3);
}

struct Mutation {
  const char* what;
  std::function<void(json&)> edit;
  std::vector<std::string> needles;  // besides the file name
};

TEST(CorruptTokenizerJson, WrongTypesAndMissingFieldsAreNamed) {
  const std::vector<Mutation> mutations = {
      {"top level", [](json& j) { j = json::array(); }, {"expected an object"}},
      {"no model", [](json& j) { j.erase("model"); }, {"model", "missing"}},
      {"model type", [](json& j) { j["model"]["type"] = "Unigram"; }, {"Unigram", "not supported"}},
      {"model type number", [](json& j) { j["model"]["type"] = 7; }, {"model.type", "string"}},
      {"vocab array", [](json& j) { j["model"]["vocab"] = json::array(); }, {"model.vocab"}},
      {"vocab id string",
       [](json& j) { j["model"]["vocab"]["a"] = "x"; },
       {"model.vocab.a", "integer"}},
      {"vocab id negative",
       [](json& j) { j["model"]["vocab"]["a"] = -1; },
       {"model.vocab.a", "outside"}},
      {"vocab id huge", [](json& j) { j["model"]["vocab"]["a"] = 1ll << 40; }, {"outside"}},
      {"vocab id twice", [](json& j) { j["model"]["vocab"]["b"] = 0; }, {"also given"}},
      {"vocab empty",
       [](json& j) {
         j["model"]["vocab"] = json::object();
         j["model"]["merges"] = json::array();
       },
       {"empty"}},
      {"merges object",
       [](json& j) { j["model"]["merges"] = json::object(); },
       {"model.merges", "array"}},
      {"merge one token", [](json& j) { j["model"]["merges"] = {"a"}; }, {"model.merges[0]"}},
      {"merge unknown",
       [](json& j) { j["model"]["merges"] = {"a c"}; },
       {"'c'", "not in the vocabulary"}},
      {"merge numbers",
       [](json& j) {
         j["model"]["merges"] = {json::array({1, 2})};
       },
       {"model.merges[0][0]", "string"}},
      {"dropout", [](json& j) { j["model"]["dropout"] = 0.1; }, {"dropout"}},
      {"prefix",
       [](json& j) { j["model"]["continuing_subword_prefix"] = "##"; },
       {"continuing_subword_prefix"}},
      {"byte_fallback type",
       [](json& j) { j["model"]["byte_fallback"] = "yes"; },
       {"byte_fallback", "true or false"}},
      {"added not array", [](json& j) { j["added_tokens"] = 1; }, {"added_tokens", "array"}},
      {"added no id",
       [](json& j) { j["added_tokens"][0].erase("id"); },
       {"added_tokens[0].id", "missing"}},
      {"added content number",
       [](json& j) { j["added_tokens"][0]["content"] = 5; },
       {"added_tokens[0].content"}},
      {"added special string",
       [](json& j) { j["added_tokens"][0]["special"] = "true"; },
       {"added_tokens[0].special"}},
      {"normalizer type",
       [](json& j) {
         j["normalizer"] = {{"type", "Lowercase"}};
       },
       {"normalizer.type", "Lowercase"}},
      {"normalizer regex",
       [](json& j) {
         j["normalizer"] =
             json::parse(R"({"type":"Replace","pattern":{"Regex":"x"},"content":"y"})");
       },
       {"normalizer.pattern", "Regex"}},
      {"normalizer no type",
       [](json& j) { j["normalizer"] = json::object(); },
       {"normalizer.type", "missing"}},
      {"regex does not compile",
       [](json& j) { j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(a"; },
       {"pre_tokenizer.pretokenizers[0].pattern", "compile"}},
      {"split behavior",
       [](json& j) { j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Sideways"; },
       {"behavior", "Sideways"}},
      {"pattern kind",
       [](json& j) {
         j["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {{"Glob", "*"}};
       },
       {"String", "Regex"}},
      {"pretokenizers not array",
       [](json& j) { j["pre_tokenizer"]["pretokenizers"] = "x"; },
       {"pre_tokenizer.pretokenizers", "array"}},
      {"pre_tokenizer type",
       [](json& j) {
         j["pre_tokenizer"] = {{"type", "Whitespace"}};
       },
       {"Whitespace", "not supported"}},
      {"template unknown special",
       [](json& j) { j["post_processor"]["single"][0]["SpecialToken"]["id"] = "<x>"; },
       {"'<x>'", "special_tokens"}},
      {"template id not a token",
       [](json& j) { j["post_processor"]["special_tokens"]["<s>"]["ids"] = {99}; },
       {"id 99", "not a token"}},
      {"template sequence B",
       [](json& j) { j["post_processor"]["single"][1]["Sequence"]["id"] = "B"; },
       {"sequence 'B'"}},
      {"template no sequence",
       [](json& j) { j["post_processor"]["single"].erase(1); },
       {"no sequence"}},
      {"post_processor type",
       [](json& j) {
         j["post_processor"] = {{"type", "BertProcessing"}};
       },
       {"BertProcessing"}},
      {"no decoder", [](json& j) { j.erase("decoder"); }, {"decoder", "missing"}},
      {"decoder type",
       [](json& j) {
         j["decoder"] = {{"type", "WordPiece"}};
       },
       {"WordPiece", "not supported"}},
      {"strip two",
       [](json& j) {
         j["decoder"] = json::parse(
             R"({"type":"Sequence","decoders":[{"type":"Fuse"},{"type":"Strip","content":" ","start":2,"stop":0}]})");
       },
       {"Strip"}},
      {"mixed decoders",
       [](json& j) {
         j["decoder"] = json::parse(
             R"({"type":"Sequence","decoders":[{"type":"ByteLevel"},{"type":"ByteFallback"}]})");
       },
       {"ByteLevel mixed"}},
  };
  ScratchDir dir;
  for (const Mutation& m : mutations) {
    json j = minimal_tokenizer();
    m.edit(j);
    const std::string p = dir.write("tokenizer.json", j.dump());
    std::vector<std::string> needles = m.needles;
    needles.push_back(p);
    expect_error([&] { load_hf_tokenizer(p); }, needles, m.what);
  }
}

TEST(CorruptTokenizerJson, TruncatedAndInvalidTextIsAnError) {
  ScratchDir dir;
  const std::string full = minimal_tokenizer().dump();
  for (size_t n = 0; n < full.size(); ++n) {
    const std::string p = dir.write("tokenizer.json", std::string_view(full).substr(0, n));
    expect_error([&] { load_hf_tokenizer(p); }, {p}, fmt::format("cut at {}", n));
  }
  std::string s = full;
  s[s.size() / 2] = '\xFF';
  const std::string p = dir.write("tokenizer.json", s);
  expect_error([&] { load_hf_tokenizer(p); }, {p, "not valid JSON"}, "a stray byte");
  expect_error([&] { load_hf_tokenizer(dir.path()); }, {dir.path(), "directory"}, "a folder");
  expect_error([&] { load_hf_tokenizer(dir.path() + "/none.json"); }, {"none.json"}, "missing");
}

TEST(CorruptTokenizerJson, RealFileCutShort) {
  LLM42_SHARED_OR_SKIP(path, "tokenizers/llama2/tokenizer.json");
  const std::string full = read_file(path);
  ScratchDir dir;
  for (size_t n : {size_t{0}, size_t{1}, full.size() / 3, full.size() - 2}) {
    const std::string p = dir.write("tokenizer.json", std::string_view(full).substr(0, n));
    expect_error([&] { load_hf_tokenizer(p); }, {p, "not valid JSON"}, fmt::format("cut at {}", n));
  }
}

TEST(CorruptTokenizerJson, BadConfigBesideIsNamed) {
  ScratchDir dir;
  const std::string p = dir.write("tokenizer.json", minimal_tokenizer().dump());
  std::string c = dir.write("tokenizer_config.json", R"({"bos_token": "<nope>"})");
  expect_error([&] { load_hf_tokenizer(p); }, {c, "bos_token", "<nope>"}, "unknown bos");
  c = dir.write("tokenizer_config.json", R"({"eos_token": 5})");
  expect_error([&] { load_hf_tokenizer(p); }, {c, "eos_token"}, "eos number");
  c = dir.write("tokenizer_config.json", "{");
  expect_error([&] { load_hf_tokenizer(p); }, {c, "not valid JSON"}, "broken config");
  dir.write("tokenizer_config.json", R"({"bos_token": {"content": "<s>"}, "eos_token": "ab"})");
  const auto tok = load_hf_tokenizer(p);
  EXPECT_EQ(tok->bos_id(), 3);
  EXPECT_EQ(tok->eos_ids(), std::vector<int32_t>{2});
}

// ---------------------------------------------------------------------------------------------
// GGUF vocabularies

TEST(CorruptTokenizerVocab, InconsistentVocabulariesAreNamed) {
  EmbeddedVocab good;
  good.model = "llama";
  good.tokens = {"<unk>", "<s>", "</s>", "\u2581", "a", "\u2581a"};
  good.scores = {0, 0, 0, -1, -2, -3};
  good.token_types = {2, 3, 3, 1, 1, 1};
  good.bos_id = 1;
  good.eos_id = 2;
  good.unk_id = 0;
  EXPECT_EQ(tokenizer_from_vocab(good)->encode("a"), (std::vector<int32_t>{1, 5}));
  EXPECT_EQ(tokenizer_from_vocab(good)->encode("b", false), (std::vector<int32_t>{3, 0}));

  const std::vector<std::pair<std::function<void(EmbeddedVocab&)>, std::string>> cases = {
      {[](EmbeddedVocab& v) { v.model = "bert"; }, "'bert' is not supported"},
      {[](EmbeddedVocab& v) { v.tokens.clear(); }, "empty"},
      {[](EmbeddedVocab& v) { v.scores.pop_back(); }, "6 tokens but 5 scores"},
      {[](EmbeddedVocab& v) { v.token_types.push_back(1); }, "6 tokens but 7 token types"},
      {[](EmbeddedVocab& v) { v.scores[3] = std::nanf(""); }, "token 3"},
      {[](EmbeddedVocab& v) { v.bos_id = 6; }, "BOS id 6"},
      {[](EmbeddedVocab& v) { v.eos_id = -7; }, "EOS id -7"},
      {[](EmbeddedVocab& v) {
         v.model = "gpt2";
         v.pre = "mystery";
       },
       "'mystery' is not supported"},
      {[](EmbeddedVocab& v) {
         v.model = "gpt2";
         v.merges = {"a c"};
       },
       "not in the vocabulary"},
      {[](EmbeddedVocab& v) {
         v.model = "gpt2";
         v.merges = {"ab"};
       },
       "merge 0"},
  };
  for (const auto& [edit, needle] : cases) {
    EmbeddedVocab v = good;
    edit(v);
    expect_error([&] { tokenizer_from_vocab(v); }, {"GGUF vocabulary", needle}, needle);
  }
}

}  // namespace
}  // namespace llm42
