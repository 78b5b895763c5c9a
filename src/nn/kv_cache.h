// Per-layer key/value cache: rows of [kv_heads * head_dim] floats, growable (capacity doubles).
// Usage per forward step of n new tokens: for each layer, append(layer, k, v, n) then read
// keys(layer)/values(layer) over length()+n rows; finally advance(n).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace vlm::nn {

class KVCache {
 public:
  KVCache() = default;
  KVCache(int layers, int kv_heads, int head_dim, int64_t initial_capacity = 256);

  int64_t length() const { return length_; }  // committed rows
  int64_t row_width() const { return width_; }
  int64_t capacity() const { return capacity_; }

  // Writes n rows after the committed ones (growing as needed). Rows become part of length()
  // only after advance(n), so every layer of one step writes at the same offset.
  void append(int layer, const float* k, const float* v, int64_t n);
  void advance(int64_t n) { length_ += n; }
  // Bounds the cache to `max_rows` (0 = unbounded): when a step needs room, the oldest rows after
  // the first `keep` (attention sinks, as mlx-lm's rotating cache keeps) are evicted. Eviction goes
  // in blocks of at least max_rows/8 rows so the copy is amortised over many decode steps.
  void set_window(int64_t max_rows, int64_t keep);
  // Makes room for `n` new rows under the window; returns how many rows were evicted.
  int64_t make_room(int64_t n);

  // Drops everything after the first `n` rows.
  void truncate(int64_t n) { length_ = n < length_ ? n : length_; }
  void clear() { length_ = 0; }

  const float* keys(int layer) const { return k_[layer].data(); }
  const float* values(int layer) const { return v_[layer].data(); }
  size_t bytes() const { return k_.size() * 2 * size_t(capacity_ * width_) * sizeof(float); }

 private:
  void reserve(int64_t rows);
  int64_t width_ = 0, capacity_ = 0, length_ = 0;
  int64_t max_rows_ = 0, keep_ = 0;
  std::vector<std::vector<float>> k_, v_;
};

}  // namespace vlm::nn
