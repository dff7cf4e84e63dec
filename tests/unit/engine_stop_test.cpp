// Stop handling of a sequence: stop strings found in the text alone, min_tokens, ignore_eos,
// include_stop_str_in_output, and streamed text that never splits a UTF-8 character and that
// is the same whether tokens are committed one a step (global) or a window at once (dvr).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "engine/sequence.h"
#include "engine_harness.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace llm42::test {
namespace {

TEST(EngineStop, FindStopLooksOnlyAtTextEndingInTheNewToken) {
  Request r;
  r.stop_strings = {"cd", "xyz"};
  // "cd" ended before the new token's text began: found then, not now.
  EXPECT_EQ(find_stop("abcdef", 4, r), std::string::npos);
  EXPECT_EQ(find_stop("abcdef", 3, r), 2u);
  EXPECT_EQ(find_stop("abxyzcd", 3, r), 2u);  // the earliest of those ending past 3
  r.include_stop_str_in_output = true;
  EXPECT_EQ(find_stop("abxyzcd", 3, r), 5u);
  EXPECT_EQ(find_stop("abcdef", 3, r), 4u);
}

TEST(EngineStop, ReleasableTextEndsOnACharacter) {
  Request r;
  EXPECT_EQ(releasable_text("ab\xe6\x97\xa5", r), 5u);  // no stop strings: everything
  r.stop_strings = {"xyz"};                             // holds 2 bytes back
  // "ab日本": 8 bytes; 6 would split 本 (bytes 5..7), so only "ab日" goes out.
  EXPECT_EQ(releasable_text("ab\xe6\x97\xa5\xe6\x9c\xac", r), 5u);
  EXPECT_EQ(releasable_text("abcd", r), 2u);
  EXPECT_EQ(releasable_text("a", r), 0u);
}

// Random weights over a byte tokenizer: the output is random bytes, mostly invalid UTF-8 and
// multi-byte characters, which is where byte-based holding and cutting went wrong.
TestModel byte_model() {
  TestModel m;
  BackendOptions o;
  o.threads = 2;
  m.backend = make_backend(o);
  ModelConfig c = tiny_test_config();
  c.bos_id = 1;
  c.eos_ids = {2};
  m.model = std::make_unique<Transformer>(*m.backend, dummy_weights(*m.backend, c, DType::kF32, 5),
                                          2048, 2048);
  m.tokenizer = make_byte_tokenizer(c.vocab_size, 1, 2);
  return m;
}

struct Streamed {
  std::vector<std::string> chunks;
  std::vector<int32_t> ids;
  FinishReason reason = FinishReason::kNone;
  std::string text() const {
    std::string t;
    for (const std::string& c : chunks) t += c;
    return t;
  }
};

std::vector<Streamed> run(TestModel& m, DeterminismMode mode, const std::vector<Request>& reqs) {
  EngineConfig c;
  c.mode = mode;
  c.window = 8;
  c.group = 2;
  c.max_num_seqs = 8;
  c.num_blocks = 256;
  c.check_integrity = true;
  Engine engine(*m.model, c, m.tokenizer.get());
  std::vector<Streamed> out(reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i)
    engine.add_request(reqs[i], [&out, i](RequestOutput&& o) {
      out[i].chunks.push_back(o.text);
      out[i].ids.insert(out[i].ids.end(), o.tokens.begin(), o.tokens.end());
      if (o.finished) out[i].reason = o.finish_reason;
    });
  engine.run_until_idle();
  return out;
}

std::vector<Request> stop_requests(const std::vector<std::string>& stops, int min_tokens,
                                   bool include_stop) {
  std::vector<Request> reqs;
  for (int i = 0; i < 12; ++i) {
    Request r;
    r.prompt = {1, static_cast<int32_t>(40 + i), static_cast<int32_t>(100 + 7 * i)};
    r.deterministic = true;
    r.sampling.temperature = 1.0f;
    r.sampling.seed = 1000 + i;
    r.max_tokens = 60;
    r.stop_strings = stops;
    r.min_tokens = min_tokens;
    r.include_stop_str_in_output = include_stop;
    reqs.push_back(r);
  }
  return reqs;
}

TEST(EngineStop, StreamedTextIsAFunctionOfTheTokens) {
  TestModel m = byte_model();
  // A long stop string that never occurs holds back 7 bytes: cuts inside characters before.
  // U+FFFD (random bytes are mostly invalid UTF-8) stops them after min_tokens.
  for (const auto& [stops, min_tokens] :
       {std::pair{std::vector<std::string>{"~~~~~~~~"}, 0},
        std::pair{std::vector<std::string>{"\xef\xbf\xbd", "~~~~~~~~"}, 20}}) {
    const std::vector<Request> reqs = stop_requests(stops, min_tokens, false);
    const std::vector<Streamed> global = run(m, DeterminismMode::kGlobal, reqs);
    const std::vector<Streamed> dvr = run(m, DeterminismMode::kDvr, reqs);
    int multibyte = 0;
    for (size_t i = 0; i < reqs.size(); ++i) {
      EXPECT_EQ(global[i].ids, dvr[i].ids) << i;
      EXPECT_EQ(global[i].text(), dvr[i].text()) << i;
      for (const Streamed* s : {&global[i], &dvr[i]})
        for (const std::string& chunk : s->chunks) EXPECT_TRUE(utf8::is_valid(chunk)) << i;
      for (unsigned char ch : global[i].text()) multibyte += ch >= 0x80;
    }
    EXPECT_GT(multibyte, 0) << "the workload should produce non-ASCII text";
  }
}

TEST(EngineStop, MinTokensAndIncludeStopString) {
  TestModel m = byte_model();
  // U+FFFD is frequent in random bytes: a stop string that ends most requests early.
  const std::string stop = "\xef\xbf\xbd";
  const std::vector<Streamed> plain =
      run(m, DeterminismMode::kDvr, stop_requests({stop}, 0, false));
  const std::vector<Streamed> kept = run(m, DeterminismMode::kDvr, stop_requests({stop}, 0, true));
  const std::vector<Streamed> late =
      run(m, DeterminismMode::kDvr, stop_requests({stop}, 30, false));
  int stopped = 0;
  for (size_t i = 0; i < plain.size(); ++i) {
    if (plain[i].reason != FinishReason::kStop) continue;
    ++stopped;
    EXPECT_EQ(kept[i].text(), plain[i].text() + stop) << i;
    EXPECT_EQ(kept[i].ids, plain[i].ids) << i;
    EXPECT_GE(late[i].ids.size(), 30u) << i;
    // The same tokens up to where the plain request stopped.
    EXPECT_EQ(std::vector<int32_t>(late[i].ids.begin(), late[i].ids.begin() + plain[i].ids.size()),
              plain[i].ids)
        << i;
  }
  EXPECT_GT(stopped, 0);
  // EOS and stop token ids do not finish a request before min_tokens either.
  std::vector<Request> reqs = stop_requests({}, 0, false);
  for (Request& r : reqs) r.stop_ids = {3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  const std::vector<Streamed> early = run(m, DeterminismMode::kDvr, reqs);
  for (Request& r : reqs) r.min_tokens = 40;
  const std::vector<Streamed> held = run(m, DeterminismMode::kDvr, reqs);
  int stopped_early = 0;
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_GE(held[i].ids.size(), 40u) << i;
    stopped_early += early[i].ids.size() < 40;
  }
  EXPECT_GT(stopped_early, 0);
  // ignore_eos: EOS (id 2, frequent in random output) never finishes a request.
  reqs = stop_requests({}, 0, false);
  const std::vector<Streamed> with_eos = run(m, DeterminismMode::kDvr, reqs);
  for (Request& r : reqs) r.ignore_eos = true;
  const std::vector<Streamed> ignoring = run(m, DeterminismMode::kDvr, reqs);
  int eos_ended = 0;
  for (size_t i = 0; i < reqs.size(); ++i) {
    eos_ended += with_eos[i].reason == FinishReason::kStop;
    EXPECT_EQ(ignoring[i].ids.size(), 60u) << i;
    EXPECT_EQ(ignoring[i].reason, FinishReason::kLength) << i;
  }
  EXPECT_GT(eos_ended, 0);
}

}  // namespace
}  // namespace llm42::test
