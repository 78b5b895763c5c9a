// A strided n-d array over shared storage. Views (slices, transposes, reshapes of contiguous
// data) share the storage; the storage is either owned (64-byte aligned heap) or borrowed from
// something kept alive by the tensor, such as a memory-mapped safetensors file.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"

namespace vlm {

using Shape = std::vector<int64_t>;

std::string shape_str(const Shape& s);
int64_t shape_numel(const Shape& s);

class Tensor {
 public:
  Tensor() = default;

  // Uninitialised / zero-filled owning tensors.
  static Tensor empty(DType dtype, Shape shape);
  static Tensor zeros(DType dtype, Shape shape);
  // Borrows `data`; `keepalive` owns whatever `data` points into (an mmap, a buffer...).
  static Tensor borrow(DType dtype, Shape shape, const void* data, std::shared_ptr<const void> keepalive);
  // Copies a float vector into a new F32 tensor.
  static Tensor from_floats(const std::vector<float>& v, Shape shape);

  bool defined() const { return storage_ != nullptr; }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }  // in elements
  int ndim() const { return int(shape_.size()); }
  int64_t dim(int i) const { return shape_.at(i < 0 ? i + ndim() : i); }
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype_); }
  bool is_contiguous() const;

  template <typename T>
  T* data() {
    return reinterpret_cast<T*>(raw());
  }
  template <typename T>
  const T* data() const {
    return reinterpret_cast<const T*>(raw());
  }
  void* raw() { return static_cast<char*>(storage_.get()) + offset_ * int64_t(dtype_size(dtype_)); }
  const void* raw() const {
    return static_cast<const char*>(storage_.get()) + offset_ * int64_t(dtype_size(dtype_));
  }

  // Views (no copy).
  Tensor slice(int dim, int64_t start, int64_t end) const;
  Tensor select(int dim, int64_t index) const;  // drops `dim`
  Tensor transpose(int d0, int d1) const;
  Tensor permute(const std::vector<int>& order) const;
  Tensor reshape(Shape shape) const;  // requires contiguity; one -1 allowed

  // Copies.
  Tensor contiguous() const;
  Tensor clone() const;
  Tensor to(DType dtype) const;  // float formats <-> float formats, integers -> F32/I64
  std::vector<float> to_floats() const;
  std::vector<int64_t> to_ints() const;

 private:
  DType dtype_ = DType::F32;
  Shape shape_, strides_;
  int64_t offset_ = 0;
  std::shared_ptr<void> storage_;  // points at element 0 of the underlying buffer
};

// Row-major strides for a shape.
Shape contiguous_strides(const Shape& s);

}  // namespace vlm
