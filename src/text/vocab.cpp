#include "text/vocab.h"

#include <cstring>

namespace vlm::text {

uint64_t Vocab::hash(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h ^ (h >> 29);
}

void Vocab::reserve(size_t n) {
  entries_.reserve(n);
  entry_ids_.reserve(n);
  size_t cap = 16;
  while (cap < n * 2) cap <<= 1;
  if (cap > table_.size()) {
    table_.assign(cap, -1);
    for (size_t e = 0; e < entries_.size(); ++e) {
      std::string_view t(arena_.data() + entries_[e].off, entries_[e].len);
      size_t mask = cap - 1;
      size_t i = hash(t) & mask;
      while (table_[i] >= 0) i = (i + 1) & mask;
      table_[i] = static_cast<int32_t>(e);
    }
  }
}

void Vocab::grow() { reserve(table_.empty() ? 16 : table_.size()); }

void Vocab::add(std::string_view token, int32_t id) {
  if (id < 0) return;
  if ((count_ + 1) * 2 > table_.size()) grow();
  size_t mask = table_.size() - 1;
  size_t i = hash(token) & mask;
  for (; table_[i] >= 0; i = (i + 1) & mask) {
    const Span& s = entries_[table_[i]];
    if (s.len == token.size() && std::memcmp(arena_.data() + s.off, token.data(), token.size()) == 0) return;
  }
  Span span{static_cast<uint32_t>(arena_.size()), static_cast<uint32_t>(token.size())};
  arena_.append(token);
  table_[i] = static_cast<int32_t>(entries_.size());
  entries_.push_back(span);
  entry_ids_.push_back(id);
  ++count_;
  if (static_cast<size_t>(id) >= by_id_.size()) by_id_.resize(static_cast<size_t>(id) + 1);
  if (by_id_[id].len == 0) by_id_[id] = span;
}

int32_t Vocab::find(std::string_view token) const {
  if (table_.empty()) return -1;
  size_t mask = table_.size() - 1;
  for (size_t i = hash(token) & mask; table_[i] >= 0; i = (i + 1) & mask) {
    const Span& s = entries_[table_[i]];
    if (s.len == token.size() && std::memcmp(arena_.data() + s.off, token.data(), token.size()) == 0)
      return entry_ids_[table_[i]];
  }
  return -1;
}

std::string_view Vocab::token(int32_t id) const {
  if (!has_id(id)) return {};
  return std::string_view(arena_.data() + by_id_[id].off, by_id_[id].len);
}

void U64Map::reserve(size_t n) {
  size_t cap = 16;
  while (cap < n * 2) cap <<= 1;
  if (cap <= keys_.size()) return;
  std::vector<uint64_t> ok = std::move(keys_), ov = std::move(values_);
  keys_.assign(cap, kEmpty);
  values_.assign(cap, 0);
  count_ = 0;
  for (size_t i = 0; i < ok.size(); ++i)
    if (ok[i] != kEmpty) insert(ok[i], ov[i]);
}

void U64Map::insert(uint64_t key, uint64_t value) {
  if ((count_ + 1) * 2 > keys_.size()) reserve(keys_.empty() ? 16 : keys_.size());
  size_t mask = keys_.size() - 1;
  size_t i = mix(key) & mask;
  for (; keys_[i] != kEmpty; i = (i + 1) & mask)
    if (keys_[i] == key) return;
  keys_[i] = key;
  values_[i] = value;
  ++count_;
}

}  // namespace vlm::text
