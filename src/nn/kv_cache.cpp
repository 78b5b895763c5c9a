#include "nn/kv_cache.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"

namespace vlm::nn {

KVCache::KVCache(int layers, int kv_heads, int head_dim, int64_t initial_capacity)
    : width_(int64_t(kv_heads) * head_dim), layers_(size_t(layers)) {
  for (Layer& l : layers_) reserve(l, std::max<int64_t>(1, initial_capacity));
}

void KVCache::reserve(Layer& l, int64_t rows) {
  if (rows <= l.capacity) return;
  l.capacity = std::max<int64_t>(rows, l.capacity * 2);
  l.k.resize(size_t(l.capacity * width_));
  l.v.resize(size_t(l.capacity * width_));
}

int64_t KVCache::capacity() const {
  int64_t c = 0;
  for (const Layer& l : layers_) c = std::max(c, l.capacity);
  return c;
}

size_t KVCache::bytes() const {
  size_t b = 0;
  for (const Layer& l : layers_) b += 2 * size_t(l.capacity * width_) * sizeof(float);
  return b;
}

void KVCache::set_layer_window(int layer, int64_t window) {
  if (layer < 0 || layer >= int(layers_.size()) || window < 0)
    fail("KV cache: bad sliding window ", window, " for layer ", layer);
  layers_[size_t(layer)].window = window;
}

void KVCache::set_window(int64_t max_rows, int64_t keep) {
  if (max_rows < 0 || keep < 0 || (max_rows > 0 && keep >= max_rows))
    fail("KV cache window: need 0 <= keep (", keep, ") < max size (", max_rows, ")");
  max_rows_ = max_rows;
  keep_ = keep;
}

// Moves `rows` rows starting at stored row `from` to stored row `to`, in keys and values.
static void move_rows(std::vector<float>& k, std::vector<float>& v, int64_t width, int64_t to, int64_t from,
                      int64_t rows) {
  if (rows <= 0 || to == from) return;
  std::memmove(k.data() + to * width, k.data() + from * width, size_t(rows * width) * sizeof(float));
  std::memmove(v.data() + to * width, v.data() + from * width, size_t(rows * width) * sizeof(float));
}

int64_t KVCache::make_room(int64_t n) {
  if (max_rows_ <= 0 || length_ + n <= max_rows_) return 0;
  if (n > max_rows_ - keep_)
    fail("KV cache window of ", max_rows_, " rows (", keep_, " kept) cannot take a step of ", n,
         " tokens: raise the window or lower the prefill chunk");
  int64_t drop = std::max(length_ + n - max_rows_, (max_rows_ - keep_) / 8);
  drop = std::min(drop, length_ - keep_);
  // Cache rows [keep, keep + drop) go; later rows move down by `drop`.
  const int64_t end = keep_ + drop;
  for (Layer& l : layers_) {
    if (l.first >= end) {
      l.first -= drop;  // a sliding layer that no longer holds the evicted rows
    } else if (l.first >= keep_) {
      move_rows(l.k, l.v, width_, 0, end - l.first, length_ - end);
      l.first = keep_;
    } else {
      move_rows(l.k, l.v, width_, keep_ - l.first, end - l.first, length_ - end);
    }
  }
  length_ -= drop;
  return drop;
}

void KVCache::append(int layer, const float* k, const float* v, int64_t n) {
  Layer& l = layers_[size_t(layer)];
  const int64_t at = length_ - l.first;
  reserve(l, at + n);
  std::memcpy(l.k.data() + at * width_, k, size_t(n * width_) * sizeof(float));
  std::memcpy(l.v.data() + at * width_, v, size_t(n * width_) * sizeof(float));
}

void KVCache::advance(int64_t n) {
  length_ += n;
  for (Layer& l : layers_) {
    if (l.window <= 0) continue;
    // The next query (at row length_ or later) sees rows > length_ - window: keep window - 1.
    const int64_t stored = length_ - l.first, keep = l.window - 1;
    if (stored < 2 * l.window) continue;
    move_rows(l.k, l.v, width_, 0, stored - keep, keep);
    l.first = length_ - keep;
  }
}

void KVCache::truncate(int64_t n) {
  if (n >= length_) return;
  if (n <= 0) return clear();  // nothing before row 0 is needed, whatever a window dropped
  for (const Layer& l : layers_)
    if (l.first > std::max<int64_t>(0, n - std::max<int64_t>(l.window - 1, 0)))
      fail("KV cache: cannot go back to ", n, " rows: a sliding-window layer already dropped rows before ", l.first);
  length_ = n;
}

void KVCache::clear() {
  length_ = 0;
  for (Layer& l : layers_) l.first = 0;
}

}  // namespace vlm::nn
