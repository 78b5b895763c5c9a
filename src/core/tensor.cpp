#include "core/tensor.h"

#include <cstdlib>
#include <cstring>
#include <sstream>

namespace vlm {

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << ']';
  return os.str();
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

Shape contiguous_strides(const Shape& s) {
  Shape st(s.size());
  int64_t acc = 1;
  for (size_t i = s.size(); i-- > 0;) {
    st[i] = acc;
    acc *= s[i];
  }
  return st;
}

Tensor Tensor::empty(DType dtype, Shape shape) {
  for (int64_t d : shape)
    if (d < 0) fail("Tensor::empty: negative dimension in shape ", shape_str(shape));
  Tensor t;
  t.dtype_ = dtype;
  t.strides_ = contiguous_strides(shape);
  t.shape_ = std::move(shape);
  size_t bytes = (size_t(t.numel()) * dtype_size(dtype) + 63) & ~size_t(63);
  void* p = std::aligned_alloc(64, bytes ? bytes : 64);
  if (!p) fail("Tensor::empty: out of memory allocating ", bytes, " bytes for ", shape_str(t.shape_));
  t.storage_ = std::shared_ptr<void>(p, [](void* q) { std::free(q); });
  return t;
}

Tensor Tensor::zeros(DType dtype, Shape shape) {
  Tensor t = empty(dtype, std::move(shape));
  std::memset(t.raw(), 0, t.nbytes());
  return t;
}

Tensor Tensor::borrow(DType dtype, Shape shape, const void* data, std::shared_ptr<const void> keepalive) {
  Tensor t;
  t.dtype_ = dtype;
  t.strides_ = contiguous_strides(shape);
  t.shape_ = std::move(shape);
  // Aliasing constructor: shares ownership of `keepalive`, points at `data`.
  t.storage_ = std::shared_ptr<void>(std::const_pointer_cast<void>(keepalive), const_cast<void*>(data));
  return t;
}

Tensor Tensor::from_floats(const std::vector<float>& v, Shape shape) {
  if (shape_numel(shape) != int64_t(v.size()))
    fail("Tensor::from_floats: ", v.size(), " values do not fill shape ", shape_str(shape));
  Tensor t = empty(DType::F32, std::move(shape));
  std::memcpy(t.raw(), v.data(), v.size() * 4);
  return t;
}

bool Tensor::is_contiguous() const { return strides_ == contiguous_strides(shape_); }

Tensor Tensor::slice(int dim, int64_t start, int64_t end) const {
  if (dim < 0) dim += ndim();
  if (dim < 0 || dim >= ndim()) fail("Tensor::slice: dim ", dim, " out of range for ", shape_str(shape_));
  if (start < 0 || end < start || end > shape_[dim])
    fail("Tensor::slice: [", start, ", ", end, ") out of range for dim ", dim, " of ", shape_str(shape_));
  Tensor t = *this;
  t.offset_ += start * strides_[dim];
  t.shape_[dim] = end - start;
  return t;
}

Tensor Tensor::select(int dim, int64_t index) const {
  if (dim < 0) dim += ndim();
  Tensor t = slice(dim, index, index + 1);
  t.shape_.erase(t.shape_.begin() + dim);
  t.strides_.erase(t.strides_.begin() + dim);
  return t;
}

Tensor Tensor::transpose(int d0, int d1) const {
  std::vector<int> order(ndim());
  for (int i = 0; i < ndim(); ++i) order[i] = i;
  if (d0 < 0) d0 += ndim();
  if (d1 < 0) d1 += ndim();
  std::swap(order.at(d0), order.at(d1));
  return permute(order);
}

Tensor Tensor::permute(const std::vector<int>& order) const {
  if (int(order.size()) != ndim()) fail("Tensor::permute: order has ", order.size(), " dims, tensor ", ndim());
  Tensor t = *this;
  std::vector<bool> seen(ndim(), false);
  for (int i = 0; i < ndim(); ++i) {
    int o = order[i];
    if (o < 0 || o >= ndim() || seen[o]) fail("Tensor::permute: invalid order");
    seen[o] = true;
    t.shape_[i] = shape_[o];
    t.strides_[i] = strides_[o];
  }
  return t;
}

Tensor Tensor::reshape(Shape shape) const {
  int64_t known = 1;
  int infer = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      if (infer >= 0) fail("Tensor::reshape: more than one -1 in ", shape_str(shape));
      infer = int(i);
    } else {
      known *= shape[i];
    }
  }
  if (infer >= 0) shape[infer] = known ? numel() / known : 0;
  if (shape_numel(shape) != numel())
    fail("Tensor::reshape: cannot view ", shape_str(shape_), " as ", shape_str(shape));
  Tensor src = is_contiguous() ? *this : contiguous();
  src.shape_ = std::move(shape);
  src.strides_ = contiguous_strides(src.shape_);
  return src;
}

namespace {
// Calls fn(dst_index, src_element_offset) for every element in row-major order.
template <typename Fn>
void for_each_offset(const Shape& shape, const Shape& strides, int64_t base, Fn fn) {
  int64_t n = shape_numel(shape);
  if (n == 0) return;
  int nd = int(shape.size());
  std::vector<int64_t> idx(nd, 0);
  int64_t off = base;
  for (int64_t i = 0; i < n; ++i) {
    fn(i, off);
    for (int d = nd - 1; d >= 0; --d) {
      if (++idx[d] < shape[d]) {
        off += strides[d];
        break;
      }
      off -= strides[d] * (shape[d] - 1);
      idx[d] = 0;
    }
  }
}
}  // namespace

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  Tensor out = empty(dtype_, shape_);
  size_t es = dtype_size(dtype_);
  const char* src = static_cast<const char*>(storage_.get());
  char* dst = static_cast<char*>(out.raw());
  if (is_contiguous()) {
    std::memcpy(dst, raw(), nbytes());
  } else {
    for_each_offset(shape_, strides_, offset_,
                    [&](int64_t i, int64_t off) { std::memcpy(dst + i * es, src + off * es, es); });
  }
  return out;
}

namespace {
double load_as_double(DType t, const char* p) {
  switch (t) {
    case DType::F32: { float v; std::memcpy(&v, p, 4); return v; }
    case DType::F16: { uint16_t v; std::memcpy(&v, p, 2); return f16_to_f32(v); }
    case DType::BF16: { uint16_t v; std::memcpy(&v, p, 2); return bf16_to_f32(v); }
    case DType::I32: { int32_t v; std::memcpy(&v, p, 4); return v; }
    case DType::I64: { int64_t v; std::memcpy(&v, p, 8); return double(v); }
    case DType::U8: return uint8_t(*p);
    case DType::U32: { uint32_t v; std::memcpy(&v, p, 4); return v; }
  }
  return 0;
}
void store_from_double(DType t, char* p, double d) {
  switch (t) {
    case DType::F32: { float v = float(d); std::memcpy(p, &v, 4); break; }
    case DType::F16: { uint16_t v = f32_to_f16(float(d)); std::memcpy(p, &v, 2); break; }
    case DType::BF16: { uint16_t v = f32_to_bf16(float(d)); std::memcpy(p, &v, 2); break; }
    case DType::I32: { int32_t v = int32_t(d); std::memcpy(p, &v, 4); break; }
    case DType::I64: { int64_t v = int64_t(d); std::memcpy(p, &v, 8); break; }
    case DType::U8: *p = char(uint8_t(d)); break;
    case DType::U32: { uint32_t v = uint32_t(d); std::memcpy(p, &v, 4); break; }
  }
}
}  // namespace

Tensor Tensor::to(DType dtype) const {
  if (dtype == dtype_) return contiguous();
  Tensor out = empty(dtype, shape_);
  size_t es = dtype_size(dtype_), os = dtype_size(dtype);
  const char* src = static_cast<const char*>(storage_.get());
  char* dst = static_cast<char*>(out.raw());
  if (dtype == DType::F32 && (dtype_ == DType::BF16 || dtype_ == DType::F16) && is_contiguous()) {
    const uint16_t* s = data<uint16_t>();
    float* d = out.data<float>();
    int64_t n = numel();
    if (dtype_ == DType::BF16)
      for (int64_t i = 0; i < n; ++i) d[i] = bf16_to_f32(s[i]);
    else
      for (int64_t i = 0; i < n; ++i) d[i] = f16_to_f32(s[i]);
    return out;
  }
  for_each_offset(shape_, strides_, offset_, [&](int64_t i, int64_t off) {
    store_from_double(dtype, dst + i * os, load_as_double(dtype_, src + off * es));
  });
  return out;
}

std::vector<float> Tensor::to_floats() const {
  Tensor f = to(DType::F32);
  const float* p = f.data<float>();
  return std::vector<float>(p, p + f.numel());
}

std::vector<int64_t> Tensor::to_ints() const {
  Tensor f = to(DType::I64);
  const int64_t* p = f.data<int64_t>();
  return std::vector<int64_t>(p, p + f.numel());
}

}  // namespace vlm
