// Dequantizes raw ggml blocks for tests/python/test_gguf_quant.py, which compares the result bit
// for bit with the `gguf` package's dequantizer.
//
//   dequantize_blocks TYPE IN OUT   TYPE: a ggml type id (2 = Q4_0, ... 14 = Q6_K);
//                                   IN: whole blocks of that type; OUT: the f32 values.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "model/gguf_quant.h"
#include "util/error.h"
#include "util/mapped_file.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: dequantize_blocks TYPE IN OUT\n";
    return 2;
  }
  try {
    const llm42::QuantFormat* q = llm42::quant_format(static_cast<uint32_t>(std::stoul(argv[1])));
    if (q == nullptr) llm42::fail("type {} is not a supported quantized type", argv[1]);
    const std::string in = llm42::read_file(argv[2]);
    if (in.size() % static_cast<size_t>(q->block_bytes) != 0)
      llm42::fail("{}: {} bytes is not a whole number of {}-byte {} blocks", argv[2], in.size(),
                  q->block_bytes, q->name);
    const size_t n_blocks = in.size() / static_cast<size_t>(q->block_bytes);
    std::vector<float> out(n_blocks * static_cast<size_t>(q->block_size));
    llm42::dequantize(*q, reinterpret_cast<const uint8_t*>(in.data()), n_blocks, out.data());
    std::ofstream f(argv[3], std::ios::binary);
    f.write(reinterpret_cast<const char*>(out.data()),
            static_cast<std::streamsize>(out.size() * sizeof(float)));
    if (!f) llm42::fail("{}: cannot write", argv[3]);
  } catch (const std::exception& e) {
    std::cerr << "dequantize_blocks: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
