// A typed, shaped view of contiguous row-major memory on one device. Tensors do not own memory:
// weights point into mapped files or backend allocations, activations into a backend workspace.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

namespace llm42 {

enum class DType : uint8_t { kF32, kF16, kBF16, kI32 };
enum class Device : uint8_t { kCPU, kCUDA };

size_t dtype_size(DType t);
std::string_view dtype_name(DType t);
// Parses "f32"/"float32", "f16"/"float16", "bf16"/"bfloat16"; throws llm42::Error otherwise.
DType parse_dtype(std::string_view name);
std::string_view device_name(Device d);

struct Tensor {
  static constexpr int kMaxDims = 4;

  void* data = nullptr;
  DType dtype = DType::kF32;
  Device device = Device::kCPU;
  int ndim = 0;
  std::array<int64_t, kMaxDims> shape{};

  Tensor() = default;
  Tensor(void* data, DType dtype, Device device, std::initializer_list<int64_t> dims);

  int64_t dim(int i) const { return shape[static_cast<size_t>(i < 0 ? ndim + i : i)]; }
  int64_t numel() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
  bool empty() const { return data == nullptr; }
  // Elements per row: the product of all dimensions but the first.
  int64_t row_size() const { return ndim == 0 ? 1 : numel() / shape[0]; }

  template <typename T>
  T* ptr() const {
    return static_cast<T*>(data);
  }
  // Rows [begin, end) of the first dimension.
  Tensor rows(int64_t begin, int64_t end) const;
  // The same memory seen with another shape of the same element count.
  Tensor reshape(std::initializer_list<int64_t> dims) const;
  std::string shape_string() const;
};

}  // namespace llm42
