// ggml's block-quantized tensor types and their dequantization to f32 on the host.
//
// A quantized row of n values is n / block_size blocks of block_bytes each, stored one after the
// other; a tensor is its rows in order. Block layouts (ggml-common.h in ggml-org/ggml, QK_K = 256;
// f16 = IEEE half, all little-endian), with q the stored integer and y the value:
//   Q4_0  (32 values, 18 bytes): f16 d, u8 qs[16]          y[i] = d * (q - 8)
//         q of y[i] is the low nibble of qs[i] for i < 16 and the high nibble of qs[i - 16].
//   Q4_1  (32, 20): f16 d, f16 m, u8 qs[16]                  y[i] = d * q + m
//   Q5_0  (32, 22): f16 d, u32 qh, u8 qs[16]                 y[i] = d * (q - 16)
//         q = the Q4 nibble | bit i of qh << 4.
//   Q5_1  (32, 24): f16 d, f16 m, u32 qh, u8 qs[16]          y[i] = d * q + m
//   Q8_0  (32, 34): f16 d, i8 qs[32]                         y[i] = qs[i] * d
//   Q2_K  (256, 84): u8 scales[16], u8 qs[64], f16 d, f16 dmin
//         sub-block s of 16 values: (d * (scales[s] & 15)) * q - dmin * (scales[s] >> 4);
//         y[128 h + 32 j + l] has q = (qs[32 h + l] >> 2 j) & 3.
//   Q3_K  (256, 110): u8 hmask[32], u8 qs[64], u8 scales[12] (16 six-bit scales), f16 d
//         sub-block s of 16: (d * (scale[s] - 32)) * q with q = low 2 bits (as Q2_K) minus 4
//         where bit j of hmask[l] is 0 for y[32 j + l].
//   Q4_K  (256, 144): f16 d, f16 dmin, u8 scales[12] (8 six-bit scales and mins), u8 qs[128]
//         sub-block s of 32: (d * sc[s]) * q - dmin * mn[s];
//         y[64 h + 32 j + l] has q = (qs[32 h + l] >> 4 j) & 15.
//   Q5_K  (256, 176): f16 d, f16 dmin, u8 scales[12], u8 qh[32], u8 qs[128]
//         as Q4_K with q |= (bit i / 32 of qh[i % 32]) << 4.
//   Q6_K  (256, 210): u8 ql[128], u8 qh[64], i8 scales[16], f16 d
//         sub-block s of 16: (d * scales[s]) * (q - 32); y[128 h + 32 j + l] has
//         q = ((ql[64 h + l'] >> 4 (j / 2)) & 15) | ((qh[32 h + l] >> 2 j) & 3) << 4, l' = 32 (j%2)
//         + l.
// Each product and sum is rounded to f32 in the order written above, the order of the `gguf`
// Python package's dequantizer (the reference), so the results are bitwise the same as its.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace llm42 {

struct QuantFormat {
  uint32_t ggml_type;  // ggml.h's type id
  const char* name;    // "Q4_0", ...
  int block_size;      // values per block
  int block_bytes;     // bytes per block
};

// The quantized format of a ggml type id, or null when the type is not a supported quantized one.
const QuantFormat* quant_format(uint32_t ggml_type);

// The supported quantized types' names, for error messages: "Q4_0, Q4_1, ...".
std::string quant_format_names();

// Dequantizes `n_blocks` consecutive blocks of `format` at `src` into n_blocks * block_size
// floats at `dst`. Every bit pattern is a block: non-finite scales give non-finite values.
void dequantize(const QuantFormat& format, const uint8_t* src, size_t n_blocks, float* dst);

}  // namespace llm42
