#include "text/vocab.h"

#include <functional>

namespace vlm::text {

uint64_t Vocab::hash(std::string_view s) {
  return std::hash<std::string_view>()(s);
}

void Vocab::rehash(size_t cap) {
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(cap, Slot());
  size_t mask = cap - 1;
  for (const Slot& s : old) {
    if (!s.tag) continue;
    size_t i = hash(std::string_view(arena_.data() + s.off, s.len)) & mask;
    while (slots_[i].tag) i = (i + 1) & mask;
    slots_[i] = s;
  }
}

void Vocab::reserve(size_t n) {
  size_t cap = 16;
  while (cap < n * 2) cap <<= 1;
  if (cap > slots_.size()) rehash(cap);
  arena_.reserve(n * 8);
}

void Vocab::add(std::string_view token, int32_t id, uint64_t h) {
  if (id < 0) return;
  if ((count_ + 1) * 2 > slots_.size()) rehash(slots_.empty() ? 16 : slots_.size() * 2);
  uint32_t tag = static_cast<uint32_t>(h >> 32) | 1;
  size_t mask = slots_.size() - 1;
  size_t i = h & mask;
  for (; slots_[i].tag; i = (i + 1) & mask) {
    const Slot& s = slots_[i];
    if (s.tag == tag && s.len == token.size() && std::memcmp(arena_.data() + s.off, token.data(), s.len) == 0) return;
  }
  Slot s{tag, static_cast<uint32_t>(arena_.size()), static_cast<uint32_t>(token.size()), id};
  arena_.append(token);
  slots_[i] = s;
  ++count_;
  if (static_cast<size_t>(id) >= by_id_.size()) by_id_.resize(static_cast<size_t>(id) + 1);
  if (!by_id_[id].set) by_id_[id] = {s.off, s.len, true};
}

std::string_view Vocab::token(int32_t id) const {
  if (!has_id(id)) return {};
  return std::string_view(arena_.data() + by_id_[id].off, by_id_[id].len);
}

void U64Map::reserve(size_t n) {
  size_t cap = 16;
  while (cap < n * 2) cap <<= 1;
  if (cap <= slots_.size()) return;
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(cap, Slot());
  count_ = 0;
  for (const Slot& s : old)
    if (s.key != kEmpty) insert(s.key, s.value);
}

void U64Map::insert(uint64_t key, uint64_t value) {
  if ((count_ + 1) * 2 > slots_.size()) reserve(slots_.empty() ? 16 : slots_.size());
  size_t mask = slots_.size() - 1;
  size_t i = mix(key) & mask;
  for (; slots_[i].key != kEmpty; i = (i + 1) & mask)
    if (slots_[i].key == key) return;
  slots_[i] = {key, value};
  ++count_;
}

}  // namespace vlm::text
