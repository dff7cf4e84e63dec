// Server-sent events (the WHATWG HTML "event stream" format): fed bytes in arbitrary pieces,
// it yields each event when its blank line arrives. Lines end with CRLF, LF or CR; "data"
// lines are joined with "\n"; comments (":...") and unknown fields are ignored.
#pragma once

#include <functional>
#include <string>
#include <string_view>

namespace llm42::client {

struct SseEvent {
  std::string event;  // the "event" field; empty for the default "message"
  std::string data;
};

class SseParser {
 public:
  void feed(std::string_view bytes, const std::function<void(const SseEvent&)>& on_event);

 private:
  void line(std::string_view l, const std::function<void(const SseEvent&)>& on_event);

  std::string line_;
  bool after_cr_ = false;  // the last byte was CR: a following LF belongs to it
  SseEvent event_;
  bool has_data_ = false;
};

}  // namespace llm42::client
