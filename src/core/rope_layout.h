// How RoPE pairs the dimensions of a head: part of a model's config (model/config.h) and of the
// RoPE table the kernels read (backend/backend.h).
#pragma once

namespace llm42 {

//   kInterleaved: (x[2i], x[2i+1]) — Meta/llama2.c layout, kept by GGUF `llama` files.
//   kHalf:        (x[i], x[i + head_dim/2]) — Hugging Face `rotate_half` layout.
enum class RopeLayout { kInterleaved, kHalf };

}  // namespace llm42
