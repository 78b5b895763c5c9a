// A pool of finished sequences kept for reuse by later prompts (prompt cache across requests, as
// llama-server's cache_prompt and vLLM's prefix caching): a prompt takes the sequence whose cache
// shares the longest prefix with it, out of the pool, so no other request sees that sequence while
// it is in use; it is given back when done. Bounded by the bytes of the KV caches held, least
// recently used first out. Thread-safe.
#pragma once
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <vector>

#include "models/model.h"

namespace vlm {

class SequencePool {
 public:
  explicit SequencePool(size_t max_bytes) : max_bytes_(max_bytes) {}

  // The pooled sequence whose cache shares the longest reusable prefix with `keys`
  // (Model::prompt_keys), removed from the pool; null when none shares any. *prefix: that length.
  std::unique_ptr<Sequence> take(const std::vector<uint64_t>& keys, int64_t* prefix);
  // Keeps a finished sequence (its scratch memory released) as the most recently used; drops the
  // least recently used ones beyond the budget (and this one if it alone exceeds it).
  void put(std::unique_ptr<Sequence> sequence);
  size_t bytes() const;
  size_t size() const;
  size_t max_bytes() const { return max_bytes_; }

 private:
  struct Entry {
    std::unique_ptr<Sequence> sequence;
    size_t bytes = 0;
  };
  const size_t max_bytes_;
  mutable std::mutex mutex_;
  std::list<Entry> entries_;  // most recently used first
  size_t bytes_ = 0;
};

}  // namespace vlm
