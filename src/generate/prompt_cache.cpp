#include "generate/prompt_cache.h"

namespace vlm {

std::unique_ptr<Sequence> SequencePool::take(const std::vector<uint64_t>& keys, int64_t* prefix) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto best = entries_.end();
  int64_t best_len = 0;
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    const int64_t len = it->sequence->cached_prefix(keys);
    if (len > best_len) best = it, best_len = len;
  }
  if (prefix) *prefix = best_len;
  if (best == entries_.end()) return nullptr;
  std::unique_ptr<Sequence> out = std::move(best->sequence);
  bytes_ -= best->bytes;
  entries_.erase(best);
  return out;
}

void SequencePool::put(std::unique_ptr<Sequence> sequence) {
  if (!sequence) return;
  sequence->release_scratch();
  const size_t bytes = sequence->cache_bytes();
  std::lock_guard<std::mutex> lock(mutex_);
  if (bytes > max_bytes_) return;
  entries_.push_front({std::move(sequence), bytes});
  bytes_ += bytes;
  while (bytes_ > max_bytes_) {
    bytes_ -= entries_.back().bytes;
    entries_.pop_back();
  }
}

size_t SequencePool::bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return bytes_;
}

size_t SequencePool::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return entries_.size();
}

}  // namespace vlm
