#include "nn/kv_cache.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"

namespace vlm::nn {

KVCache::KVCache(int layers, int kv_heads, int head_dim, int64_t initial_capacity)
    : width_(int64_t(kv_heads) * head_dim), k_(size_t(layers)), v_(size_t(layers)) {
  reserve(std::max<int64_t>(1, initial_capacity));
}

void KVCache::reserve(int64_t rows) {
  if (rows <= capacity_) return;
  int64_t cap = std::max<int64_t>(rows, capacity_ * 2);
  for (auto* store : {&k_, &v_})
    for (auto& layer : *store) layer.resize(size_t(cap * width_));
  capacity_ = cap;
}

void KVCache::set_window(int64_t max_rows, int64_t keep) {
  if (max_rows < 0 || keep < 0 || (max_rows > 0 && keep >= max_rows))
    fail("KV cache window: need 0 <= keep (", keep, ") < max size (", max_rows, ")");
  max_rows_ = max_rows;
  keep_ = keep;
}

int64_t KVCache::make_room(int64_t n) {
  if (max_rows_ <= 0 || length_ + n <= max_rows_) return 0;
  if (n > max_rows_ - keep_)
    fail("KV cache window of ", max_rows_, " rows (", keep_, " kept) cannot take a step of ", n,
         " tokens: raise the window or lower the prefill chunk");
  int64_t drop = std::max(length_ + n - max_rows_, (max_rows_ - keep_) / 8);
  drop = std::min(drop, length_ - keep_);
  const int64_t moved = length_ - keep_ - drop;
  for (auto* store : {&k_, &v_})
    for (auto& layer : *store)
      std::memmove(layer.data() + keep_ * width_, layer.data() + (keep_ + drop) * width_,
                   size_t(moved * width_) * sizeof(float));
  length_ -= drop;
  return drop;
}

void KVCache::append(int layer, const float* k, const float* v, int64_t n) {
  reserve(length_ + n);
  std::memcpy(k_[layer].data() + length_ * width_, k, size_t(n * width_) * sizeof(float));
  std::memcpy(v_[layer].data() + length_ * width_, v, size_t(n * width_) * sizeof(float));
}

}  // namespace vlm::nn
