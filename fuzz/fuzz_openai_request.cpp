// libFuzzer target: the OpenAI request parser and its expansion into engine requests, for both
// endpoints. Anything but success or an ApiError (400) is a bug. Seed corpus:
// tests/fuzz_corpus/openai_request.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "server/api_error.h"
#include "server/openai_request.h"
#include "server/openai_response.h"
#include "server/request_builder.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  using namespace llm42::server;
  const std::string_view body(reinterpret_cast<const char*>(bytes), size);
  for (Endpoint e : {Endpoint::kCompletions, Endpoint::kChatCompletions}) {
    try {
      const ApiRequest r = parse_api_request(body, e);
      if (r.n < 1 || r.prompts.empty()) __builtin_trap();
      PromptContext ctx;
      ctx.max_seq_len = 64;
      build_engine_requests(r, ctx);
    } catch (const ApiError& err) {
      if (err.status() != 400) __builtin_trap();
      dump_json(err.to_json());
    }
  }
  return 0;
}
