#include "engine/sequence.h"

#include <algorithm>

namespace llm42 {

size_t find_stop(const std::string& text, size_t text_before, const Request& req) {
  size_t cut = std::string::npos;
  size_t cut_end = std::string::npos;
  for (const std::string& st : req.stop_strings) {
    // Occurrences that start here or later end past text_before.
    const size_t from = text_before + 1 > st.size() ? text_before + 1 - st.size() : 0;
    const size_t at = text.find(st, from);
    if (at != std::string::npos && at < cut) {
      cut = at;
      cut_end = at + st.size();
    }
  }
  return req.include_stop_str_in_output ? cut_end : cut;
}

size_t releasable_text(const std::string& text, const Request& req) {
  size_t hold = 0;
  for (const std::string& st : req.stop_strings) hold = std::max(hold, st.size() - 1);
  size_t upto = text.size() > hold ? text.size() - hold : 0;
  // Back to the first byte of a character (continuation bytes are 10xxxxxx).
  while (upto > 0 && upto < text.size() && (static_cast<unsigned char>(text[upto]) & 0xC0) == 0x80)
    --upto;
  return upto;
}

}  // namespace llm42
