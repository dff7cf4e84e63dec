// A 64-bit digest of a sequence of values, for fingerprints that must change whenever what they
// describe changes (not a cryptographic hash: nothing here is secret or adversarial).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "util/hash.h"

namespace llm42 {

class Digest {
 public:
  Digest& add(uint64_t v) {
    h_ = mix64(h_ ^ v);
    return *this;
  }
  Digest& add(int v) { return add(static_cast<uint64_t>(static_cast<int64_t>(v))); }
  Digest& add(bool v) { return add(uint64_t{v}); }
  Digest& add(double v) {
    uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof bits);
    return add(bits);
  }
  // The length first, so that ("ab", "c") and ("a", "bc") differ.
  Digest& add(std::string_view s) {
    add(static_cast<uint64_t>(s.size()));
    for (size_t i = 0; i < s.size(); i += 8) {
      uint64_t chunk = 0;
      std::memcpy(&chunk, s.data() + i, std::min<size_t>(8, s.size() - i));
      add(chunk);
    }
    return *this;
  }
  uint64_t value() const { return h_; }

 private:
  uint64_t h_ = 0;
};

}  // namespace llm42
