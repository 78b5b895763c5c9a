// Per-layer key/value cache: rows of [kv_heads * head_dim] floats, growable (capacity doubles).
// Usage per forward step of n new tokens: for each layer, append(layer, k, v, n) then read
// keys(layer)/values(layer), whose first row is cache row first_row(layer), up to row length()+n;
// finally advance(n). A sliding-window layer keeps only the rows its window can still reach.
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
  int64_t capacity() const;  // rows allocated in the largest layer

  // Layer `layer` attends to the last `window` positions only (Gemma 3's local layers): rows older
  // than the window are dropped after advance(), in blocks of at least `window` rows, so the layer
  // holds at most about 2 * window rows plus one step (a ring buffer with amortised copies).
  void set_layer_window(int layer, int64_t window);
  // Cache row of keys(layer)[0] (0 unless the layer's window dropped older rows).
  int64_t first_row(int layer) const { return layers_[size_t(layer)].first; }

  // Writes n rows after the committed ones (growing as needed). Rows become part of length()
  // only after advance(n), so every layer of one step writes at the same offset.
  void append(int layer, const float* k, const float* v, int64_t n);
  void advance(int64_t n);
  // Bounds the cache to `max_rows` (0 = unbounded): when a step needs room, the oldest rows after
  // the first `keep` (attention sinks, as mlx-lm's rotating cache keeps) are evicted. Eviction goes
  // in blocks of at least max_rows/8 rows so the copy is amortised over many decode steps.
  void set_window(int64_t max_rows, int64_t keep);
  // Makes room for `n` new rows under the window; returns how many rows were evicted.
  int64_t make_room(int64_t n);

  // Drops everything after the first `n` rows; throws when a sliding-window layer no longer holds
  // the rows its window would need after them.
  void truncate(int64_t n);
  void clear();

  const float* keys(int layer) const { return layers_[size_t(layer)].k.data(); }
  const float* values(int layer) const { return layers_[size_t(layer)].v.data(); }
  size_t bytes() const;

 private:
  struct Layer {
    std::vector<float> k, v;
    int64_t first = 0, capacity = 0, window = 0;
  };
  void reserve(Layer& l, int64_t rows);
  int64_t width_ = 0, length_ = 0;
  int64_t max_rows_ = 0, keep_ = 0;
  std::vector<Layer> layers_;
};

}  // namespace vlm::nn
