// Compact open-addressing tables for the vocabulary (token string <-> id) and BPE merge ranks: building
// them for a 150k-600k entry tokenizer must take milliseconds, not the time of std::unordered_map.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace vlm::text {

class Vocab {
 public:
  void reserve(size_t n);
  // Adds `token` with `id`; a duplicate token keeps its first id (as a JSON map keeps one key).
  void add(std::string_view token, int32_t id);
  int32_t find(std::string_view token) const;  // -1 when absent
  std::string_view token(int32_t id) const;     // "" when no token has `id`
  bool has_id(int32_t id) const { return id >= 0 && static_cast<size_t>(id) < by_id_.size() && by_id_[id].len; }
  int32_t size() const { return static_cast<int32_t>(by_id_.size()); }  // highest id + 1
  size_t count() const { return count_; }

 private:
  struct Span {
    uint32_t off = 0, len = 0;
  };
  static uint64_t hash(std::string_view s);
  void grow();
  std::string arena_;
  std::vector<Span> entries_;       // entry -> text
  std::vector<int32_t> entry_ids_;  // entry -> id
  std::vector<int32_t> table_;      // slot -> entry or -1
  std::vector<Span> by_id_;
  size_t count_ = 0;
};

// uint64 key -> uint64 value, open addressing; key ~0 is reserved.
class U64Map {
 public:
  void reserve(size_t n);
  void insert(uint64_t key, uint64_t value);  // keeps the first value inserted for a key
  const uint64_t* find(uint64_t key) const {
    if (keys_.empty()) return nullptr;
    size_t mask = keys_.size() - 1;
    for (size_t i = mix(key) & mask;; i = (i + 1) & mask) {
      if (keys_[i] == key) return &values_[i];
      if (keys_[i] == kEmpty) return nullptr;
    }
  }

 private:
  static constexpr uint64_t kEmpty = ~0ull;
  static uint64_t mix(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return k;
  }
  std::vector<uint64_t> keys_, values_;
  size_t count_ = 0;
};

}  // namespace vlm::text
