#include "nn/kv_cache.h"

#include <algorithm>
#include <cstring>

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

void KVCache::append(int layer, const float* k, const float* v, int64_t n) {
  reserve(length_ + n);
  std::memcpy(k_[layer].data() + length_ * width_, k, size_t(n * width_) * sizeof(float));
  std::memcpy(v_[layer].data() + length_ * width_, v, size_t(n * width_) * sizeof(float));
}

}  // namespace vlm::nn
