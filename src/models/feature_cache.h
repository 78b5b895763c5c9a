// Vision-feature cache: encoded image/video features keyed by a hash of the item's processed pixels
// and grid (which follow from the decoded pixels and the processing options), shared by every
// sequence of a model, so the same image in a new conversation skips the encoder. Bounded by the
// bytes of the features held, least recently used first out. Thread-safe.
#pragma once
#include <array>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/tensor.h"

namespace vlm {

class FeatureCache {
 public:
  explicit FeatureCache(size_t max_bytes) : max_bytes_(max_bytes) {}
  using Features = std::shared_ptr<const std::vector<float>>;

  // The features stored under `key` (now the most recently used), or null.
  Features find(uint64_t key);
  // Stores features (dropping the least recently used beyond the budget; nothing when they alone exceed it).
  void put(uint64_t key, std::vector<float> features);
  size_t bytes() const;
  size_t size() const;

 private:
  const size_t max_bytes_;
  mutable std::mutex mutex_;
  std::list<std::pair<uint64_t, Features>> order_;  // most recently used first
  std::unordered_map<uint64_t, std::list<std::pair<uint64_t, Features>>::iterator> index_;
  size_t bytes_ = 0;
};

// Hash of one media item as a model sees it: its placeholder token, grid and processed pixels.
uint64_t media_item_hash(int32_t token, const std::array<int64_t, 3>& grid, const Tensor& pixels);

}  // namespace vlm
