// Byte-pair encoding as in HF tokenizers' models/bpe: lowest-rank merge first (ties: leftmost), with
// unk/fuse_unk, byte_fallback, continuing_subword_prefix / end_of_word_suffix and ignore_merges.
#include <algorithm>
#include <functional>
#include <mutex>
#include <unordered_map>

#include "core/error.h"
#include "text/model.h"
#include "text/unicode.h"

namespace vlm::text {

void read_vocab_object(const JsonScanner& js, size_t at, Vocab& vocab) {
  std::string_view s = js.text();
  vocab.reserve(s.size() / 24);
  // Batched like the merges (see Bpe::Bpe): hash and prefetch a group of keys before inserting them.
  constexpr size_t kBatch = 64;
  std::vector<std::string> keys(kBatch);
  std::vector<int32_t> ids(kBatch);
  std::vector<uint64_t> hashes(kBatch);
  size_t fill = 0;
  auto flush = [&] {
    for (size_t k = 0; k < fill; ++k) vocab.prefetch(hashes[k] = Vocab::hash(keys[k]));
    for (size_t k = 0; k < fill; ++k) vocab.add(keys[k], ids[k], hashes[k]);
    fill = 0;
  };
  js.for_each_member(at, [&](const std::string& key, size_t v) {
    int64_t id = 0;
    size_t i = v;
    bool neg = js.at(i) == '-';
    if (neg) ++i;
    size_t b = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') id = id * 10 + (s[i++] - '0');
    if (i == b || neg || id > INT32_MAX) js.error(v, "vocab id must be a non-negative integer");
    keys[fill] = key;
    ids[fill] = static_cast<int32_t>(id);
    if (++fill == kBatch) flush();
    return i;
  });
  flush();
}

std::string byte_piece(uint8_t b) {
  static const char* hex = "0123456789ABCDEF";
  return std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">";
}

namespace {

class Bpe : public Model {
 public:
  explicit Bpe(const ModelSpec& spec);
  void tokenize(std::string_view word, std::vector<int32_t>& out) const override;

 private:
  void merge_word(std::string_view word, std::vector<int32_t>& out) const;
  const uint64_t* find_merge(int32_t a, int32_t b) const {
    return merges_.find((static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b));
  }

  U64Map merges_;  // (left id, right id) -> (rank << 32 | merged id)
  int32_t unk_id_ = -1;
  std::string prefix_, suffix_;
  bool fuse_unk_ = false, byte_fallback_ = false, ignore_merges_ = false;
  int32_t byte_ids_[256];
  // Vocabulary ids of single characters below U+0800 (covers the byte-level alphabet): skips hashing.
  std::vector<int32_t> small_char_ids_;

  static constexpr size_t kCacheCapacity = 10000;
  static constexpr size_t kCacheMaxWord = 256;
  mutable std::mutex cache_mu_;
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
  };
  mutable std::unordered_map<std::string, std::vector<int32_t>, Hash, std::equal_to<>> cache_;
};

Bpe::Bpe(const ModelSpec& spec) {
  const json& p = spec.params;
  const std::string where = "tokenizer.json model (BPE)";
  if (spec.vocab_at == std::string::npos) fail(where, ": missing 'vocab'");
  read_vocab_object(*spec.js, spec.vocab_at, vocab_);
  prefix_ = json_get<std::string>(p, "continuing_subword_prefix", "", where);
  suffix_ = json_get<std::string>(p, "end_of_word_suffix", "", where);
  fuse_unk_ = json_get<bool>(p, "fuse_unk", false, where);
  byte_fallback_ = json_get<bool>(p, "byte_fallback", false, where);
  ignore_merges_ = json_get<bool>(p, "ignore_merges", false, where);
  std::string unk = json_get<std::string>(p, "unk_token", "", where);
  if (!unk.empty()) unk_id_ = vocab_.find(unk);
  for (int b = 0; b < 256; ++b) byte_ids_[b] = byte_fallback_ ? vocab_.find(byte_piece(static_cast<uint8_t>(b))) : -1;
  if (prefix_.empty() && suffix_.empty()) {
    small_char_ids_.resize(0x800);
    std::string ch;
    for (int32_t cp = 0; cp < 0x800; ++cp) {
      ch.clear();
      utf8_append(ch, cp);
      small_char_ids_[cp] = vocab_.find(ch);
    }
  }

  if (spec.merges_at == std::string::npos) return;
  const JsonScanner& js = *spec.js;
  // Merges are resolved in batches: hash all three strings, prefetch their slots, then probe, so that
  // the cache misses of ~1M random lookups overlap instead of serializing.
  constexpr size_t kBatch = 64;
  std::vector<std::string> a(kBatch), b(kBatch), merged(kBatch);
  std::vector<uint64_t> ha(kBatch), hb(kBatch), hm(kBatch), keys(kBatch), values(kBatch);
  size_t fill = 0;
  uint32_t rank = 0;
  auto resolve = [&] {
    for (size_t k = 0; k < fill; ++k) {
      ha[k] = Vocab::hash(a[k]), hb[k] = Vocab::hash(b[k]), hm[k] = Vocab::hash(merged[k]);
      vocab_.prefetch(ha[k]), vocab_.prefetch(hb[k]), vocab_.prefetch(hm[k]);
    }
    for (size_t k = 0; k < fill; ++k, ++rank) {
      int32_t ia = vocab_.find(a[k], ha[k]), ib = vocab_.find(b[k], hb[k]), im = vocab_.find(merged[k], hm[k]);
      keys[k] = ~0ull;
      if (ia < 0 || ib < 0 || im < 0) continue;
      keys[k] = (static_cast<uint64_t>(ia) << 32) | static_cast<uint32_t>(ib);
      values[k] = (static_cast<uint64_t>(rank) << 32) | static_cast<uint32_t>(im);
      merges_.prefetch(keys[k]);
    }
    for (size_t k = 0; k < fill; ++k)
      if (keys[k] != ~0ull) merges_.insert(keys[k], values[k]);
    fill = 0;
  };
  merges_.reserve(js.text().size() / 64);
  js.for_each_element(spec.merges_at, [&](size_t i) {
    size_t end;
    std::string& ma = a[fill];
    std::string& mb = b[fill];
    if (js.at(i) == '"') {
      end = js.parse_string(i, ma);
      size_t sp = ma.find(' ');
      // HF requires exactly two space-separated parts
      if (sp == std::string::npos || ma.find(' ', sp + 1) != std::string::npos)
        js.error(i, "merge must be two tokens separated by one space");
      mb.assign(ma, sp + 1);
      ma.resize(sp);
    } else {
      int k = 0;
      end = js.for_each_element(i, [&](size_t e) { return js.parse_string(e, k++ == 0 ? ma : mb); });
      if (k != 2) js.error(i, "merge pair must have two tokens");
    }
    std::string_view tail(mb);
    if (!prefix_.empty() && tail.substr(0, prefix_.size()) == prefix_) tail.remove_prefix(prefix_.size());
    merged[fill].assign(ma).append(tail);
    if (++fill == kBatch) resolve();
    return end;
  });
  resolve();
}

void Bpe::tokenize(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    int32_t id = vocab_.find(word);
    if (id >= 0) {
      out.push_back(id);
      return;
    }
  }
  if (word.size() > kCacheMaxWord) {
    merge_word(word, out);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = cache_.find(word);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  size_t start = out.size();
  merge_word(word, out);
  std::lock_guard<std::mutex> lock(cache_mu_);
  if (cache_.size() >= kCacheCapacity) cache_.clear();
  cache_.emplace(std::string(word), std::vector<int32_t>(out.begin() + static_cast<ptrdiff_t>(start), out.end()));
}

struct Symbol {
  int32_t id;
  int32_t prev, next;
  bool alive;
};

struct Candidate {
  uint32_t rank;
  int32_t pos;
  int32_t new_id;
  bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
};

void Bpe::merge_word(std::string_view word, std::vector<int32_t>& out) const {
  thread_local std::vector<Symbol> syms;
  thread_local std::string piece;
  syms.clear();
  bool last_unk = false;
  size_t len;
  for (size_t i = 0; i < word.size(); i += len) {
    len = utf8_len(static_cast<unsigned char>(word[i]));
    if (i + len > word.size()) len = word.size() - i;
    std::string_view ch = word.substr(i, len);
    int32_t id;
    if (!small_char_ids_.empty()) {
      auto c0 = static_cast<unsigned char>(ch[0]);
      if (len == 1)
        id = small_char_ids_[c0];
      else if (len == 2)
        id = small_char_ids_[((c0 & 0x1F) << 6) | (static_cast<unsigned char>(ch[1]) & 0x3F)];
      else
        id = vocab_.find(ch);
    } else {
      piece.clear();
      if (i > 0) piece += prefix_;
      piece.append(ch);
      if (i + len == word.size()) piece += suffix_;
      id = vocab_.find(piece);
    }
    if (id >= 0) {
      syms.push_back({id, -1, -1, true});
      last_unk = false;
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (size_t k = 0; k < len; ++k) all &= byte_ids_[static_cast<unsigned char>(ch[k])] >= 0;
      if (all) {
        for (size_t k = 0; k < len; ++k) syms.push_back({byte_ids_[static_cast<unsigned char>(ch[k])], -1, -1, true});
        last_unk = false;
        continue;
      }
    }
    if (unk_id_ < 0) continue;  // HF drops the character when there is no unk token
    if (!(fuse_unk_ && last_unk)) syms.push_back({unk_id_, -1, -1, true});
    last_unk = true;
  }
  int32_t n = static_cast<int32_t>(syms.size());
  for (int32_t i = 0; i < n; ++i) {
    syms[i].prev = i - 1;
    syms[i].next = i + 1 < n ? i + 1 : -1;
  }
  thread_local std::vector<Candidate> heap;
  heap.clear();
  const auto later = std::greater<Candidate>();
  auto push = [&](int32_t pos, const uint64_t* m) {
    heap.push_back({static_cast<uint32_t>(*m >> 32), pos, static_cast<int32_t>(*m & 0xffffffffu)});
    std::push_heap(heap.begin(), heap.end(), later);
  };
  for (int32_t i = 0; i + 1 < n; ++i)
    if (const uint64_t* m = find_merge(syms[i].id, syms[i + 1].id)) push(i, m);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    Candidate top = heap.back();
    heap.pop_back();
    Symbol& left = syms[top.pos];
    if (!left.alive || left.next < 0) continue;
    Symbol& right = syms[left.next];
    const uint64_t* m = find_merge(left.id, right.id);
    if (!m || static_cast<int32_t>(*m & 0xffffffffu) != top.new_id) continue;
    left.id = top.new_id;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) syms[right.next].prev = top.pos;
    if (left.prev >= 0)
      if (const uint64_t* pm = find_merge(syms[left.prev].id, left.id)) push(left.prev, pm);
    if (left.next >= 0)
      if (const uint64_t* nm = find_merge(left.id, syms[left.next].id)) push(top.pos, nm);
  }
  for (int32_t i = 0; i >= 0 && i < n; i = syms[i].next) out.push_back(syms[i].id);
}

}  // namespace

std::unique_ptr<Model> make_bpe(const ModelSpec& spec) {
  return std::make_unique<Bpe>(spec);
}

std::unique_ptr<Model> make_model(const ModelSpec& spec) {
  std::string type = json_get<std::string>(spec.params, "type", "", "tokenizer.json model");
  if (type.empty()) {  // older files omit the type; infer it from the fields
    if (spec.merges_at != std::string::npos)
      type = "BPE";
    else if (spec.params.contains("unk_id"))
      type = "Unigram";
    else if (spec.params.contains("max_input_chars_per_word"))
      type = "WordPiece";
  }
  if (type == "BPE") return make_bpe(spec);
  if (type == "WordPiece") return make_wordpiece(spec);
  if (type == "Unigram") return make_unigram(spec);
  fail("tokenizer.json model: unsupported type '", type, "'");
}

}  // namespace vlm::text
