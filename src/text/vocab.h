// Compact open-addressing tables for the vocabulary (token string <-> id) and BPE merge ranks: building
// them for a 150k-600k entry tokenizer must take milliseconds, not the time of std::unordered_map.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace vlm::text {

class Vocab {
 public:
  static uint64_t hash(std::string_view s);
  void reserve(size_t n);
  // Adds `token` with `id`; a duplicate token keeps its first id (as a JSON map keeps one key).
  void add(std::string_view token, int32_t id) { add(token, id, hash(token)); }
  void add(std::string_view token, int32_t id, uint64_t h);
  int32_t find(std::string_view token) const { return find(token, hash(token)); }
  // `h` must be hash(token); lets callers hash and prefetch a batch before probing.
  int32_t find(std::string_view token, uint64_t h) const {
    if (slots_.empty()) return -1;
    size_t mask = slots_.size() - 1;
    uint32_t tag = static_cast<uint32_t>(h >> 32) | 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
      const Slot& s = slots_[i];
      if (s.tag == 0) return -1;
      if (s.tag == tag && s.len == token.size() && std::memcmp(arena_.data() + s.off, token.data(), s.len) == 0)
        return s.id;
    }
  }
  void prefetch(uint64_t h) const {
    if (!slots_.empty()) __builtin_prefetch(&slots_[h & (slots_.size() - 1)]);
  }
  std::string_view token(int32_t id) const;  // "" when no token has `id`
  bool has_id(int32_t id) const { return id >= 0 && static_cast<size_t>(id) < by_id_.size() && by_id_[id].set; }
  int32_t size() const { return static_cast<int32_t>(by_id_.size()); }  // highest id + 1
  size_t count() const { return count_; }

 private:
  struct Slot {
    uint32_t tag = 0;  // high hash bits | 1; 0 = empty
    uint32_t off = 0, len = 0;
    int32_t id = -1;
  };
  struct Span {
    uint32_t off = 0, len = 0;
    bool set = false;
  };
  void rehash(size_t cap);
  std::string arena_;
  std::vector<Slot> slots_;
  std::vector<Span> by_id_;
  size_t count_ = 0;
};

// uint64 key -> uint64 value, open addressing; key ~0 is reserved.
class U64Map {
 public:
  void reserve(size_t n);
  void insert(uint64_t key, uint64_t value);  // keeps the first value inserted for a key
  void prefetch(uint64_t key) const {
    if (!slots_.empty()) __builtin_prefetch(&slots_[mix(key) & (slots_.size() - 1)]);
  }
  const uint64_t* find(uint64_t key) const {
    if (slots_.empty()) return nullptr;
    size_t mask = slots_.size() - 1;
    for (size_t i = mix(key) & mask;; i = (i + 1) & mask) {
      if (slots_[i].key == key) return &slots_[i].value;
      if (slots_[i].key == kEmpty) return nullptr;
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
  struct Slot {
    uint64_t key = kEmpty, value = 0;
  };
  std::vector<Slot> slots_;
  size_t count_ = 0;
};

}  // namespace vlm::text
