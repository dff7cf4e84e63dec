// llm42 tokenize: encode text to ids or decode ids to text with any tokenizer llm42 reads. One
// text (--text, or a whole --input file) prints one id per line with its text; --json prints a
// JSON array instead. With --input and --json the file is JSON lines, one request per line and
// one answer per line, so that a test can send thousands of strings through one process:
//   encode: a JSON string, or {"bytes_hex": "..."} for bytes that are not valid UTF-8
//           -> a JSON array of ids
//   decode: a JSON array of ids -> a JSON string
// Ends with one line on stderr: bytes, tokens, time and tokens/s.
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "model/checkpoint.h"
#include "model/gguf.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"
#include "util/error.h"
#include "util/log.h"
#include "util/mapped_file.h"
#include "util/timer.h"

namespace llm42::cli {
namespace {

using nlohmann::json;

struct TokenizeOptions {
  std::string tokenizer;
  int vocab_size = 0;
  std::string text;
  std::string input;
  bool decode = false;
  bool no_special = false;
  bool literal_special = false;
  bool json = false;
};

std::unique_ptr<Tokenizer> open_tokenizer(const TokenizeOptions& o) {
  const std::string& p = o.tokenizer;
  if (is_directory(p)) {
    if (!file_exists(p + "/tokenizer.json")) fail("{}: no tokenizer.json in this directory", p);
    return load_hf_tokenizer(p + "/tokenizer.json");
  }
  if (p.ends_with(".json")) return load_hf_tokenizer(p);
  if (p.ends_with(".gguf")) return tokenizer_from_vocab(load_gguf_vocab(p));
  if (o.vocab_size <= 0)
    fail("{}: a llama2.c tokenizer file does not record its size; give --vocab-size", p);
  return load_llama2c_tokenizer(p, o.vocab_size);
}

// Token text for people: whole UTF-8 characters as they are, control characters and stray bytes
// escaped.
std::string printable(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<uint8_t>(s[i]);
    const size_t n = c >= 0x80 ? utf8::char_length(s, i) : 1;
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\\') {
      out += "\\\\";
    } else if ((c >= 0x20 && c < 0x7F) || n > 1) {
      out.append(s.substr(i, n));
      i += n;
      continue;
    } else {
      out += fmt::format("\\x{:02X}", c);
    }
    ++i;
  }
  return out;
}

std::vector<int32_t> parse_id_list(std::string_view s, const std::string& where) {
  std::vector<int32_t> ids;
  std::string cur;
  const auto flush = [&] {
    if (cur.empty()) return;
    if (cur.size() > 10 || cur.find_first_not_of("-0123456789") != std::string::npos ||
        cur.find('-', 1) != std::string::npos)
      fail("{}: '{}' is not a token id", where, cur);
    const long long v = std::stoll(cur);
    if (v < INT32_MIN || v > INT32_MAX) fail("{}: {} is out of range for a token id", where, cur);
    ids.push_back(static_cast<int32_t>(v));
    cur.clear();
  };
  for (char c : s) {
    if (c == ' ' || c == ',' || c == '\n' || c == '\t' || c == '\r' || c == '[' || c == ']')
      flush();
    else
      cur += c;
  }
  flush();
  return ids;
}

std::string from_hex(std::string_view hex, const std::string& where) {
  if (hex.size() % 2 != 0) fail("{}: bytes_hex has an odd number of digits", where);
  std::string out;
  for (size_t i = 0; i < hex.size(); i += 2) {
    int v = 0;
    for (char c : hex.substr(i, 2)) {
      v <<= 4;
      if (c >= '0' && c <= '9')
        v |= c - '0';
      else if (c >= 'a' && c <= 'f')
        v |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F')
        v |= c - 'A' + 10;
      else
        fail("{}: bytes_hex has '{}', not a hex digit", where, c);
    }
    out += static_cast<char>(v);
  }
  return out;
}

struct Totals {
  size_t bytes = 0, tokens = 0;
  double seconds = 0;  // in encode or decode only
};

// One encode request of a JSON-lines file.
std::string request_text(const json& j, const std::string& where) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.size() == 1 && j.contains("bytes_hex") && j["bytes_hex"].is_string())
    return from_hex(j["bytes_hex"].get<std::string>(), where);
  fail("{}: expected a JSON string or {{\"bytes_hex\": \"...\"}}, found {}", where, j.type_name());
}

void run_json_lines(const Tokenizer& tok, const TokenizeOptions& o, Totals& t) {
  const std::string content = read_file(o.input);
  std::string out;
  size_t line_no = 0;
  for (size_t pos = 0; pos < content.size();) {
    size_t end = content.find('\n', pos);
    if (end == std::string::npos) end = content.size();
    const std::string_view line(content.data() + pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    const std::string where = fmt::format("{}:{}", o.input, line_no);
    json j;
    try {
      j = json::parse(line);
    } catch (const json::parse_error& e) {
      fail("{}: not valid JSON: {}", where, e.what());
    }
    if (o.decode) {
      if (!j.is_array()) fail("{}: expected a JSON array of ids, found {}", where, j.type_name());
      std::vector<int32_t> ids;
      for (const json& v : j) {
        if (!v.is_number_integer() || v.get<int64_t>() < INT32_MIN || v.get<int64_t>() > INT32_MAX)
          fail("{}: {} is not a token id", where, v.dump());
        ids.push_back(v.get<int32_t>());
      }
      const double t0 = now_seconds();
      const std::string text = tok.decode(ids, o.no_special);
      t.seconds += now_seconds() - t0;
      t.tokens += ids.size();
      t.bytes += text.size();
      out += json(text).dump(-1, ' ', false, json::error_handler_t::replace);
    } else {
      const std::string text = request_text(j, where);
      const double t0 = now_seconds();
      const std::vector<int32_t> ids = tok.encode(text, !o.no_special, !o.literal_special);
      t.seconds += now_seconds() - t0;
      t.bytes += text.size();
      t.tokens += ids.size();
      out += json(ids).dump();
    }
    out += '\n';
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
}

void run_one(const Tokenizer& tok, const TokenizeOptions& o, Totals& t) {
  const std::string input = o.input.empty() ? o.text : read_file(o.input);
  const std::string where = o.input.empty() ? "--text" : o.input;
  if (o.decode) {
    const std::vector<int32_t> ids = parse_id_list(input, where);
    const double t0 = now_seconds();
    const std::string text = tok.decode(ids, o.no_special);
    t.seconds = now_seconds() - t0;
    t.tokens = ids.size();
    t.bytes = text.size();
    if (o.json) {
      std::printf("%s\n", json(text).dump(-1, ' ', false, json::error_handler_t::replace).c_str());
    } else {
      std::fwrite(text.data(), 1, text.size(), stdout);
      std::fputc('\n', stdout);
    }
    return;
  }
  const double t0 = now_seconds();
  const std::vector<int32_t> ids = tok.encode(input, !o.no_special, !o.literal_special);
  t.seconds = now_seconds() - t0;
  t.bytes = input.size();
  t.tokens = ids.size();
  if (o.json) {
    std::printf("%s\n", json(ids).dump().c_str());
    return;
  }
  for (int32_t id : ids)
    std::printf("%d\t'%s'\n", id, printable(tok.token_bytes(id, true)).c_str());
}

int run(const TokenizeOptions& o) {
  const double t0 = now_seconds();
  const std::unique_ptr<Tokenizer> tok = open_tokenizer(o);
  const double load_s = now_seconds() - t0;
  Totals t;
  if (o.json && !o.input.empty())
    run_json_lines(*tok, o, t);
  else
    run_one(*tok, o, t);
  const double s = t.seconds;
  log_info(
      "tokenize: {} {} bytes {} {} tokens in {:.3f} s ({:.0f} tokens/s); tokenizer loaded in "
      "{:.3f} s",
      o.decode ? "decoded" : "encoded", t.bytes, o.decode ? "from" : "into", t.tokens, s,
      s > 0 ? static_cast<double>(t.tokens) / s : 0.0, load_s);
  return 0;
}

}  // namespace

void register_tokenize(CLI::App& app) {
  CLI::App* sub = app.add_subcommand("tokenize", "Encode or decode text with a model's tokenizer");
  auto o = std::make_shared<TokenizeOptions>();
  sub->add_option("--tokenizer", o->tokenizer,
                  "tokenizer.json, a directory holding one, a llama2.c tokenizer .bin (with "
                  "--vocab-size) or a .gguf model")
      ->required();
  sub->add_option("--vocab-size", o->vocab_size, "Number of tokens in a llama2.c tokenizer file");
  auto* text = sub->add_option("--text", o->text,
                               "Text to encode, or with --decode ids separated by spaces or "
                               "commas");
  auto* input = sub->add_option("--input", o->input,
                                "File to encode (raw bytes) or decode (ids); with --json, JSON "
                                "lines: one string (or {\"bytes_hex\": ...}) or id array per line");
  text->excludes(input);
  input->excludes(text);
  sub->add_flag("--decode", o->decode, "Decode ids to text instead of encoding");
  sub->add_flag("--no-special", o->no_special,
                "Encode: add no BOS/EOS (HF add_special_tokens=False); decode: leave special "
                "tokens out (HF skip_special_tokens=True)");
  sub->add_flag("--literal-special", o->literal_special,
                "Encode special-token text such as <|eot_id|> as plain text, not as the token");
  sub->add_flag("--json", o->json, "Print JSON; with --input, read and write JSON lines");
  bind(*sub, [o, text, input] {
    if (text->count() == 0 && input->count() == 0) fail("tokenize: give --text or --input");
    return run(*o);
  });
}

}  // namespace llm42::cli
