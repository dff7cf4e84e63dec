// load_hf_tokenizer: a Hugging Face tokenizer.json with a BPE model, read into the BpeTokenizer
// pipeline. Every component is checked: a field of the wrong type, a missing field or a component
// this pipeline does not implement is an llm42::Error naming the file and the JSON path.
#include <algorithm>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>

#include "tokenizer/bpe_tokenizer.h"
#include "util/error.h"
#include "util/log.h"
#include "util/mapped_file.h"

namespace llm42 {
namespace {

using nlohmann::json;

// Ids above this are taken as corruption rather than allocated for.
constexpr int64_t kMaxTokenId = (1 << 24) - 1;

// A JSON value with the path that leads to it, for messages.
struct Node {
  const json& value;
  std::string path;
  const std::string& file;

  [[noreturn]] void error(std::string_view what) const {
    fail("{}: {}: {}", file, path.empty() ? "(top level)" : path, what);
  }
  [[noreturn]] void expected(std::string_view type) const {
    error(fmt::format("expected {}, found {}", type, value.type_name()));
  }

  bool has(const char* key) const {
    return value.is_object() && value.contains(key) && !value.at(key).is_null();
  }
  Node at(const char* key) const {
    if (!value.is_object()) expected("an object");
    if (!has(key)) Node{value, join(key), file}.error("missing");
    return {value.at(key), join(key), file};
  }
  Node at(size_t i) const { return {value.at(i), fmt::format("{}[{}]", path, i), file}; }
  std::string join(std::string_view key) const {
    return path.empty() ? std::string(key) : fmt::format("{}.{}", path, key);
  }

  const std::string& str() const {
    if (!value.is_string()) expected("a string");
    return value.get_ref<const std::string&>();
  }
  bool boolean() const {
    if (!value.is_boolean()) expected("true or false");
    return value.get<bool>();
  }
  int64_t integer(int64_t lo, int64_t hi) const {
    if (!value.is_number_integer()) expected("an integer");
    const int64_t v = value.is_number_unsigned() && value.get<uint64_t>() > INT64_MAX
                          ? std::numeric_limits<int64_t>::max()
                          : value.get<int64_t>();
    if (v < lo || v > hi) error(fmt::format("{} is outside [{}, {}]", v, lo, hi));
    return v;
  }
  const json& array() const {
    if (!value.is_array()) expected("an array");
    return value;
  }
  const json& object() const {
    if (!value.is_object()) expected("an object");
    return value;
  }
  const std::string& type() const { return at("type").str(); }

  // Optional members: absent or null gives the default.
  bool opt_bool(const char* key, bool def) const { return has(key) ? at(key).boolean() : def; }
  std::string opt_str(const char* key) const { return has(key) ? at(key).str() : std::string(); }

  [[noreturn]] void unsupported(std::string_view supported) const {
    Node{value, join("type"), file}.error(
        fmt::format("'{}' is not supported (supported: {})", type(), supported));
  }
};

// {"String": s} or {"Regex": r}.
struct Pattern {
  std::string text;
  bool literal;
};
Pattern pattern_of(const Node& n) {
  n.object();
  if (n.has("String")) return {n.at("String").str(), true};
  if (n.has("Regex")) return {n.at("Regex").str(), false};
  n.error("expected {\"String\": ...} or {\"Regex\": ...}");
}

std::unique_ptr<BpeModel> parse_model(const Node& m) {
  if (m.type() != "BPE") m.unsupported("BPE");
  if (m.has("dropout")) {
    const Node d = m.at("dropout");
    if (!d.value.is_number() || d.value.get<double>() != 0.0)
      d.error("BPE dropout is random and not supported; it must be null");
  }
  for (const char* affix : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (!m.opt_str(affix).empty()) m.at(affix).error("a non-empty affix is not supported");

  const Node vocab = m.at("vocab");
  std::vector<std::string> pieces;
  for (const auto& [text, id_json] : vocab.object().items()) {
    const Node idn{id_json, vocab.join(text), m.file};
    const auto id = static_cast<size_t>(idn.integer(0, kMaxTokenId));
    if (id >= pieces.size()) pieces.resize(id + 1);
    if (!pieces[id].empty()) idn.error(fmt::format("id {} is also given to '{}'", id, pieces[id]));
    if (text.empty()) idn.error("empty token text");
    pieces[id] = text;
  }
  if (pieces.empty()) vocab.error("the vocabulary is empty");

  BpeOptions o;
  o.byte_fallback = m.opt_bool("byte_fallback", false);
  o.fuse_unk = m.opt_bool("fuse_unk", false);
  o.ignore_merges = m.opt_bool("ignore_merges", false);
  const std::string unk = m.opt_str("unk_token");

  std::vector<std::pair<std::string, std::string>> merges;
  const Node mn = m.has("merges") ? m.at("merges") : Node{json::array(), m.join("merges"), m.file};
  for (size_t i = 0; i < mn.array().size(); ++i) {
    const Node e = mn.at(i);
    if (e.value.is_string()) {
      const std::string& s = e.str();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        e.error(fmt::format("'{}' is not two tokens separated by one space", s));
      merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    } else if (e.value.is_array() && e.value.size() == 2) {
      std::string left = e.at(size_t{0}).str();
      merges.emplace_back(std::move(left), e.at(size_t{1}).str());
    } else {
      e.expected("\"left right\" or [left, right]");
    }
  }

  if (!unk.empty()) {
    const auto it = std::find(pieces.begin(), pieces.end(), unk);
    if (it != pieces.end())
      o.unk_id = static_cast<int32_t>(it - pieces.begin());
    else
      log_warn("{}: model.unk_token '{}' is not in the vocabulary; unknown characters are dropped",
               m.file, unk);
  }
  auto model = std::make_unique<BpeModel>(std::move(pieces), o);
  std::string missing;
  if (!model->add_ranked_merges(merges, missing))
    mn.error(fmt::format("merge result or part '{}' is not in the vocabulary", missing));
  return model;
}

std::vector<AddedToken> parse_added_tokens(const Node& root) {
  std::vector<AddedToken> out;
  if (!root.has("added_tokens")) return out;
  const Node list = root.at("added_tokens");
  for (size_t i = 0; i < list.array().size(); ++i) {
    const Node n = list.at(i);
    n.object();
    AddedToken t;
    t.id = static_cast<int32_t>(n.at("id").integer(0, kMaxTokenId));
    t.content = n.at("content").str();
    if (t.content.empty()) n.at("content").error("empty token text");
    t.special = n.opt_bool("special", false);
    t.lstrip = n.opt_bool("lstrip", false);
    t.rstrip = n.opt_bool("rstrip", false);
    t.single_word = n.opt_bool("single_word", false);
    t.normalized = n.opt_bool("normalized", !t.special);
    out.push_back(std::move(t));
  }
  return out;
}

void parse_normalizer(const Node& n, std::vector<NormalizerStep>& steps) {
  const std::string& type = n.type();
  if (type == "Sequence") {
    const Node list = n.at("normalizers");
    for (size_t i = 0; i < list.array().size(); ++i) parse_normalizer(list.at(i), steps);
  } else if (type == "NFC") {
    steps.push_back({NormalizerStep::Kind::kNfc, {}, {}});
  } else if (type == "Prepend") {
    steps.push_back({NormalizerStep::Kind::kPrepend, n.at("prepend").str(), {}});
  } else if (type == "Replace") {
    const Pattern p = pattern_of(n.at("pattern"));
    if (!p.literal) n.at("pattern").error("a Regex pattern in Replace is not supported");
    steps.push_back({NormalizerStep::Kind::kReplace, n.at("content").str(), p.text});
  } else {
    n.unsupported("NFC, Prepend, Replace, Sequence");
  }
}

SplitBehavior parse_behavior(const Node& n) {
  const std::string& b = n.str();
  if (b == "Removed") return SplitBehavior::kRemoved;
  if (b == "Isolated") return SplitBehavior::kIsolated;
  if (b == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (b == "Contiguous") return SplitBehavior::kContiguous;
  n.error(fmt::format("unknown split behavior '{}'", b));
}

void parse_pre_tokenizer(const Node& n, std::vector<PreTokenizerStep>& steps) {
  const std::string& type = n.type();
  if (type == "Sequence") {
    const Node list = n.at("pretokenizers");
    for (size_t i = 0; i < list.array().size(); ++i) parse_pre_tokenizer(list.at(i), steps);
  } else if (type == "Split") {
    const Node pn = n.at("pattern");
    const Pattern p = pattern_of(pn);
    PreTokenizerStep s;
    s.kind = PreTokenizerStep::Kind::kSplit;
    s.regex =
        std::make_shared<const Regex>(p.text, fmt::format("{}: {}", n.file, pn.path), p.literal);
    s.behavior = parse_behavior(n.at("behavior"));
    s.invert = n.opt_bool("invert", false);
    steps.push_back(std::move(s));
  } else if (type == "ByteLevel") {
    PreTokenizerStep s;
    s.kind = PreTokenizerStep::Kind::kByteLevel;
    s.add_prefix_space = n.opt_bool("add_prefix_space", true);
    if (n.opt_bool("use_regex", true))
      s.regex = std::make_shared<const Regex>(kGpt2Pattern, "GPT-2 ByteLevel pattern");
    steps.push_back(std::move(s));
  } else {
    n.unsupported("Split, ByteLevel, Sequence");
  }
}

int32_t known_id(const Node& n, const BpeModel& model, const std::vector<AddedToken>& added) {
  const auto id = static_cast<int32_t>(n.integer(0, kMaxTokenId));
  if (id < model.size() && !model.piece(id).empty()) return id;
  for (const AddedToken& t : added)
    if (t.id == id) return id;
  n.error(fmt::format("id {} is not a token", id));
}

void parse_post_processor(const Node& n, const BpeModel& model,
                          const std::vector<AddedToken>& added, BpeTokenizerParts& parts) {
  const std::string& type = n.type();
  if (type == "Sequence") {
    const Node list = n.at("processors");
    for (size_t i = 0; i < list.array().size(); ++i)
      parse_post_processor(list.at(i), model, added, parts);
  } else if (type == "ByteLevel") {
    // Adjusts offsets only; adds no ids.
  } else if (type == "TemplateProcessing") {
    const Node single = n.at("single");
    const Node specials = n.at("special_tokens");
    bool seen_sequence = false;
    for (size_t i = 0; i < single.array().size(); ++i) {
      const Node item = single.at(i);
      if (item.has("Sequence")) {
        const std::string& id = item.at("Sequence").at("id").str();
        if (id != "A") item.error(fmt::format("sequence '{}' in a single template", id));
        if (seen_sequence) item.error("the sequence appears twice");
        seen_sequence = true;
      } else if (item.has("SpecialToken")) {
        const Node name = item.at("SpecialToken").at("id");
        if (!specials.object().contains(name.str()))
          name.error(fmt::format("'{}' is not in special_tokens", name.str()));
        const Node ids = specials.at(name.str().c_str()).at("ids");
        for (size_t k = 0; k < ids.array().size(); ++k)
          (seen_sequence ? parts.suffix : parts.prefix)
              .push_back(known_id(ids.at(k), model, added));
      } else {
        item.error("expected {\"Sequence\": ...} or {\"SpecialToken\": ...}");
      }
    }
    if (!seen_sequence) single.error("the template has no sequence A");
  } else {
    n.unsupported("TemplateProcessing, ByteLevel, Sequence");
  }
}

void parse_decoder(const Node& n, DecoderSpec& d, bool& fused) {
  const std::string& type = n.type();
  if (type == "Sequence") {
    const Node list = n.at("decoders");
    for (size_t i = 0; i < list.array().size(); ++i) parse_decoder(list.at(i), d, fused);
  } else if (type == "ByteLevel") {
    d.byte_level = true;
  } else if (type == "Replace") {
    const Pattern p = pattern_of(n.at("pattern"));
    if (!p.literal) n.at("pattern").error("a Regex pattern in Replace is not supported");
    if (!d.replace_from.empty()) n.error("a second Replace decoder is not supported");
    if (d.byte_fallback) n.error("Replace after ByteFallback is not supported");
    d.replace_from = p.text;
    d.replace_to = n.at("content").str();
  } else if (type == "ByteFallback") {
    d.byte_fallback = true;
  } else if (type == "Fuse") {
    fused = true;
  } else if (type == "Strip") {
    const std::string& content = n.at("content").str();
    const int64_t start = n.at("start").integer(0, kMaxTokenId);
    const int64_t stop = n.at("stop").integer(0, kMaxTokenId);
    if (content != " " || start > 1 || stop != 0 || !fused)
      n.error(
          "only Strip of one leading space after Fuse is supported (content ' ', start 1, "
          "stop 0)");
    d.strip_leading_space = start == 1;
  } else {
    n.unsupported("ByteLevel, Replace, ByteFallback, Fuse, Strip, Sequence");
  }
}

// The id of a token text: an added token's, else the vocabulary's.
std::optional<int32_t> find_token(const BpeTokenizerParts& parts, std::string_view text) {
  for (const AddedToken& t : parts.added_tokens)
    if (t.content == text) return t.id;
  return parts.model->find(text);
}

// A token named in tokenizer_config.json: a string or {"content": ...}.
std::optional<int32_t> config_token(const Node& config, const char* key,
                                    const BpeTokenizerParts& parts) {
  if (!config.has(key)) return std::nullopt;
  const Node n = config.at(key);
  const std::string& text = n.value.is_object() ? n.at("content").str() : n.str();
  const auto id = find_token(parts, text);
  if (!id) n.error(fmt::format("'{}' is not a token of the tokenizer", text));
  return id;
}

}  // namespace

std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& path) {
  if (is_directory(path)) fail("{}: is a directory; give the tokenizer.json inside it", path);
  const std::string text = read_file(path);
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::parse_error& e) {
    fail("{}: not valid JSON: {}", path, e.what());
  }
  const Node root{doc, "", path};
  root.object();

  BpeTokenizerParts parts;
  parts.model = parse_model(root.at("model"));
  parts.added_tokens = parse_added_tokens(root);

  std::vector<NormalizerStep> norm;
  if (root.has("normalizer")) parse_normalizer(root.at("normalizer"), norm);
  parts.normalizer = Normalizer(std::move(norm));

  std::vector<PreTokenizerStep> pre;
  if (root.has("pre_tokenizer")) parse_pre_tokenizer(root.at("pre_tokenizer"), pre);
  parts.pre_tokenizer = PreTokenizer(std::move(pre));

  if (root.has("post_processor"))
    parse_post_processor(root.at("post_processor"), *parts.model, parts.added_tokens, parts);

  bool fused = false;
  parse_decoder(root.at("decoder"), parts.decoder, fused);
  const DecoderSpec& d = parts.decoder;
  if (d.byte_level && (d.byte_fallback || !d.replace_from.empty() || d.strip_leading_space))
    root.at("decoder").error("ByteLevel mixed with SentencePiece decoders is not supported");

  // BOS and EOS as transformers would report them; the post-processor alone decides what
  // encode(add_special) adds.
  if (!parts.prefix.empty()) parts.bos_id = parts.prefix.front();
  const std::string config_path =
      (std::filesystem::path(path).parent_path() / "tokenizer_config.json").string();
  if (file_exists(config_path)) {
    json config;
    try {
      config = json::parse(read_file(config_path));
    } catch (const json::parse_error& e) {
      fail("{}: not valid JSON: {}", config_path, e.what());
    }
    const Node c{config, "", config_path};
    c.object();
    if (const auto bos = config_token(c, "bos_token", parts)) parts.bos_id = *bos;
    if (const auto eos = config_token(c, "eos_token", parts)) parts.eos_ids = {*eos};
  }
  auto tok = std::make_unique<BpeTokenizer>(std::move(parts));
  return tok;
}

}  // namespace llm42
