#include "core/tensor.h"

#include <fmt/format.h>

#include "util/error.h"

namespace llm42 {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::kF32:
    case DType::kI32:
      return 4;
    case DType::kF16:
    case DType::kBF16:
      return 2;
  }
  return 0;
}

std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::kF32:
      return "f32";
    case DType::kF16:
      return "f16";
    case DType::kBF16:
      return "bf16";
    case DType::kI32:
      return "i32";
  }
  return "?";
}

DType parse_dtype(std::string_view name) {
  if (name == "f32" || name == "float32" || name == "float" || name == "fp32") return DType::kF32;
  if (name == "f16" || name == "float16" || name == "half" || name == "fp16") return DType::kF16;
  if (name == "bf16" || name == "bfloat16") return DType::kBF16;
  fail("unknown dtype '{}' (expected f32, f16 or bf16)", name);
}

std::string_view device_name(Device d) { return d == Device::kCPU ? "cpu" : "cuda"; }

Tensor::Tensor(void* data_, DType dtype_, Device device_, std::initializer_list<int64_t> dims)
    : data(data_), dtype(dtype_), device(device_), ndim(static_cast<int>(dims.size())) {
  LLM42_ASSERT(dims.size() <= kMaxDims);
  size_t i = 0;
  for (int64_t d : dims) shape[i++] = d;
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= shape[static_cast<size_t>(i)];
  return n;
}

Tensor Tensor::rows(int64_t begin, int64_t end) const {
  LLM42_ASSERT(ndim >= 1 && begin >= 0 && begin <= end && end <= shape[0], "rows [{}, {}) of {}",
               begin, end, shape_string());
  Tensor t = *this;
  t.shape[0] = end - begin;
  t.data = static_cast<char*>(data) + static_cast<size_t>(begin * row_size()) * dtype_size(dtype);
  return t;
}

Tensor Tensor::reshape(std::initializer_list<int64_t> dims) const {
  Tensor t(data, dtype, device, dims);
  LLM42_ASSERT(t.numel() == numel(), "reshape {} to {}", shape_string(), t.shape_string());
  return t;
}

std::string Tensor::shape_string() const {
  std::string s = "[";
  for (int i = 0; i < ndim; ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[static_cast<size_t>(i)]);
  }
  return s + "]";
}

}  // namespace llm42
