#include "models/feature_cache.h"

#include <string>

#include "core/sha256.h"

namespace vlm {

FeatureCache::Features FeatureCache::find(uint64_t key) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = index_.find(key);
  if (it == index_.end()) return nullptr;
  order_.splice(order_.begin(), order_, it->second);
  return it->second->second;
}

void FeatureCache::put(uint64_t key, std::vector<float> features) {
  const size_t bytes = features.size() * sizeof(float);
  if (bytes > max_bytes_) return;
  auto shared = std::make_shared<const std::vector<float>>(std::move(features));
  std::lock_guard<std::mutex> lock(mutex_);
  if (index_.count(key)) return;
  order_.emplace_front(key, std::move(shared));
  index_[key] = order_.begin();
  bytes_ += bytes;
  while (bytes_ > max_bytes_) {
    bytes_ -= order_.back().second->size() * sizeof(float);
    index_.erase(order_.back().first);
    order_.pop_back();
  }
}

size_t FeatureCache::bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return bytes_;
}

size_t FeatureCache::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return order_.size();
}

uint64_t media_item_hash(int32_t token, const std::array<int64_t, 3>& grid, const Tensor& pixels) {
  Sha256 h;
  h.update(&token, sizeof token);
  h.update(grid.data(), sizeof grid);
  const int64_t ndim = pixels.ndim();
  h.update(&ndim, sizeof ndim);
  h.update(pixels.shape().data(), pixels.shape().size() * sizeof(int64_t));
  if (pixels.is_contiguous()) {
    h.update(pixels.raw(), pixels.nbytes());
  } else {
    std::vector<float> v = pixels.to_floats();
    h.update(v.data(), v.size() * sizeof(float));
  }
  return std::stoull(h.hex().substr(0, 16), nullptr, 16);
}

}  // namespace vlm
