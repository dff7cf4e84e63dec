// libFuzzer target: the HTTP/1.1 request parser. Parses every request in the input, then the
// same bytes fed in pieces (cut where the input's first bytes say), and traps when the two
// disagree or when a documented invariant breaks. Seed corpus: tests/fuzz_corpus/http_request.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "server/http_parser.h"

namespace {

using llm42::server::HttpLimits;
using llm42::server::HttpParseStatus;
using llm42::server::HttpRequestParser;

// Requests (flattened) and the final error status, for `data` given in pieces of `step` bytes.
std::string parse_all(std::string_view data, size_t step, const HttpLimits& limits) {
  HttpRequestParser p(limits);
  std::string out, buf;
  for (size_t fed = 0; fed < data.size();) {
    const size_t n = std::min(step, data.size() - fed);
    buf.append(data.substr(fed, n));
    fed += n;
    while (!buf.empty()) {
      const HttpParseStatus st = p.parse(buf);
      if (st == HttpParseStatus::kError) {
        const int s = p.error_status();
        if (s != 400 && s != 411 && s != 413 && s != 414 && s != 431 && s != 501 && s != 505)
          __builtin_trap();
        return out + "error " + std::to_string(s);
      }
      if (st == HttpParseStatus::kIncomplete) break;
      if (p.request_size() > buf.size() || p.request().body.size() > limits.max_body_bytes)
        __builtin_trap();
      const auto& r = p.request();
      out += r.method + ' ' + r.target + ' ' + std::to_string(r.keep_alive) + '\n';
      for (const auto& [k, v] : r.headers) out += k + ':' + v + '\n';
      out += r.body + '\n';
      buf.erase(0, p.request_size());
      p.reset();
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  HttpLimits limits;
  limits.max_request_line = 512;
  limits.max_header_bytes = 2048;
  limits.max_headers = 32;
  limits.max_body_bytes = 1024;
  const std::string_view data(reinterpret_cast<const char*>(bytes), size);
  const std::string whole = parse_all(data, data.size() + 1, limits);
  const size_t step = size == 0 ? 1 : 1 + bytes[0] % 7;
  if (parse_all(data, step, limits) != whole) __builtin_trap();
  return 0;
}
