// Dequantization of ggml's block formats (layouts in gguf_quant.h). The arithmetic is written as
// separate f32 products and sums in the reference's order; the build's -ffp-contract=off keeps
// the compiler from fusing them.
#include "model/gguf_quant.h"

#include <cstring>
#include <iterator>

#include "util/numeric.h"

namespace llm42 {
namespace {

constexpr int kQK = 32;    // values per block of the simple formats
constexpr int kQKK = 256;  // values per K-quant super-block

constexpr QuantFormat kFormats[] = {
    {2, "Q4_0", kQK, 18},    {3, "Q4_1", kQK, 20},    {6, "Q5_0", kQK, 22},
    {7, "Q5_1", kQK, 24},    {8, "Q8_0", kQK, 34},    {10, "Q2_K", kQKK, 84},
    {11, "Q3_K", kQKK, 110}, {12, "Q4_K", kQKK, 144}, {13, "Q5_K", kQKK, 176},
    {14, "Q6_K", kQKK, 210},
};

float f16_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}

// The 4-bit value i (0..31) of a 32-value block's 16 packed bytes.
int nibble(const uint8_t* qs, int i) { return i < 16 ? qs[i] & 15 : qs[i - 16] >> 4; }

// Bit i (0..31) of a little-endian u32.
int high_bit(const uint8_t* qh, int i) { return (qh[i / 8] >> (i % 8)) & 1; }

void q4_0(const uint8_t* b, float* y) {
  const float d = f16_at(b);
  for (int i = 0; i < kQK; ++i) y[i] = d * static_cast<float>(nibble(b + 2, i) - 8);
}

void q4_1(const uint8_t* b, float* y) {
  const float d = f16_at(b), m = f16_at(b + 2);
  for (int i = 0; i < kQK; ++i) y[i] = d * static_cast<float>(nibble(b + 4, i)) + m;
}

void q5_0(const uint8_t* b, float* y) {
  const float d = f16_at(b);
  for (int i = 0; i < kQK; ++i)
    y[i] = d * static_cast<float>((nibble(b + 6, i) | high_bit(b + 2, i) << 4) - 16);
}

void q5_1(const uint8_t* b, float* y) {
  const float d = f16_at(b), m = f16_at(b + 2);
  for (int i = 0; i < kQK; ++i)
    y[i] = d * static_cast<float>(nibble(b + 8, i) | high_bit(b + 4, i) << 4) + m;
}

void q8_0(const uint8_t* b, float* y) {
  const float d = f16_at(b);
  for (int i = 0; i < kQK; ++i) y[i] = static_cast<float>(static_cast<int8_t>(b[2 + i])) * d;
}

void q2_k(const uint8_t* b, float* y) {
  const uint8_t* scales = b;
  const uint8_t* qs = b + 16;
  const float d = f16_at(b + 80), dmin = f16_at(b + 82);
  for (int i = 0; i < kQKK; ++i) {
    const int h = i / 128, j = (i / 32) % 4, l = i % 32, s = i / 16;
    const float dl = d * static_cast<float>(scales[s] & 15);
    const float ml = dmin * static_cast<float>(scales[s] >> 4);
    y[i] = dl * static_cast<float>((qs[32 * h + l] >> (2 * j)) & 3) - ml;
  }
}

void q3_k(const uint8_t* b, float* y) {
  const uint8_t* hmask = b;
  const uint8_t* qs = b + 32;
  const uint8_t* sc = b + 96;
  const float d = f16_at(b + 108);
  for (int i = 0; i < kQKK; ++i) {
    const int h = i / 128, j = (i / 32) % 4, l = i % 32, s = i / 16;
    const int low = s < 8 ? sc[s] & 15 : sc[s - 8] >> 4;
    const int high = (sc[8 + s % 4] >> (2 * (s / 4))) & 3;
    const float dl = d * static_cast<float>((low | high << 4) - 32);
    const int q = ((qs[32 * h + l] >> (2 * j)) & 3) - (((hmask[l] >> (i / 32)) & 1) ? 0 : 4);
    y[i] = dl * static_cast<float>(q);
  }
}

// Q4_K and Q5_K's 8 six-bit scales and mins, packed into 12 bytes.
void k_scale_min(const uint8_t* p, int s, int* sc, int* mn) {
  if (s < 4) {
    *sc = p[s] & 63;
    *mn = p[s + 4] & 63;
  } else {
    *sc = (p[s + 4] & 15) | ((p[s - 4] >> 2) & 48);
    *mn = (p[s + 4] >> 4) | ((p[s] >> 2) & 48);
  }
}

// Q4_K, and Q5_K when `qh` is not null.
void q45_k(const uint8_t* b, const uint8_t* qh, const uint8_t* qs, float* y) {
  const float d = f16_at(b), dmin = f16_at(b + 2);
  for (int s = 0; s < 8; ++s) {
    int sc, mn;
    k_scale_min(b + 4, s, &sc, &mn);
    const float dl = d * static_cast<float>(sc), ml = dmin * static_cast<float>(mn);
    for (int l = 0; l < 32; ++l) {
      const int i = 32 * s + l;
      int q = (qs[32 * (s / 2) + l] >> (4 * (s % 2))) & 15;
      if (qh != nullptr) q |= ((qh[l] >> s) & 1) << 4;
      y[i] = dl * static_cast<float>(q) - ml;
    }
  }
}

void q4_k(const uint8_t* b, float* y) { q45_k(b, nullptr, b + 16, y); }
void q5_k(const uint8_t* b, float* y) { q45_k(b, b + 16, b + 48, y); }

void q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const auto* scales = reinterpret_cast<const int8_t*>(b + 192);
  const float d = f16_at(b + 208);
  for (int i = 0; i < kQKK; ++i) {
    const int h = i / 128, j = (i / 32) % 4, l = i % 32;
    const int low = (ql[64 * h + 32 * (j % 2) + l] >> (4 * (j / 2))) & 15;
    const int high = (qh[32 * h + l] >> (2 * j)) & 3;
    const float dl = d * static_cast<float>(scales[i / 16]);
    y[i] = dl * static_cast<float>((low | high << 4) - 32);
  }
}

using BlockFn = void (*)(const uint8_t*, float*);

BlockFn block_fn(uint32_t type) {
  switch (type) {
    case 2:
      return q4_0;
    case 3:
      return q4_1;
    case 6:
      return q5_0;
    case 7:
      return q5_1;
    case 8:
      return q8_0;
    case 10:
      return q2_k;
    case 11:
      return q3_k;
    case 12:
      return q4_k;
    case 13:
      return q5_k;
    case 14:
      return q6_k;
    default:
      return nullptr;
  }
}

}  // namespace

const QuantFormat* quant_format(uint32_t ggml_type) {
  for (const QuantFormat& f : kFormats)
    if (f.ggml_type == ggml_type) return &f;
  return nullptr;
}

std::string quant_format_names() {
  std::string s;
  for (const QuantFormat& f : kFormats) s += (s.empty() ? "" : ", ") + std::string(f.name);
  return s;
}

void dequantize(const QuantFormat& format, const uint8_t* src, size_t n_blocks, float* dst) {
  const BlockFn fn = block_fn(format.ggml_type);
  // Blocks are independent: the result does not depend on how they are shared out.
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n_blocks; ++i)
    fn(src + i * static_cast<size_t>(format.block_bytes),
       dst + i * static_cast<size_t>(format.block_size));
}

}  // namespace llm42
