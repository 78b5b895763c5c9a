#include "text/added_vocab.h"

#include "text/unicode.h"

namespace vlm::text {

void AddedVocab::add(const AddedToken& t) {
  auto it = by_content_.find(t.content);
  if (it != by_content_.end()) {
    by_id_.erase(tokens_[it->second].id);
    tokens_[it->second] = t;
    by_id_[t.id] = it->second;
    return;
  }
  auto jt = by_id_.find(t.id);
  if (jt != by_id_.end()) {  // same id, new content: the old content no longer maps here
    by_content_.erase(tokens_[jt->second].content);
    tokens_[jt->second] = t;
    by_content_[t.content] = jt->second;
    return;
  }
  by_id_[t.id] = tokens_.size();
  by_content_[t.content] = tokens_.size();
  tokens_.push_back(t);
}

int32_t AddedVocab::max_id() const {
  int32_t m = -1;
  for (const auto& t : tokens_) m = std::max(m, t.id);
  return m;
}

void AddedVocab::Matcher::insert(const std::string& s, int32_t tok) {
  uint64_t node = 0;
  for (unsigned char c : s) {
    uint64_t key = node << 8 | c;
    const uint64_t* child = edges.find(key);
    if (child) {
      node = *child;
    } else {
      uint64_t n = token.size();
      token.push_back(-1);
      edges.insert(key, n);
      node = n;
    }
  }
  if (token[node] < 0) token[node] = tok;
  first_byte[static_cast<unsigned char>(s[0])] = true;
}

namespace {

int32_t last_char(std::string_view s) {
  if (s.empty()) return -1;
  size_t p = s.size() - 1, len;
  while (p > 0 && (static_cast<unsigned char>(s[p]) & 0xC0) == 0x80) --p;
  return utf8_decode(s, p, &len);
}

int32_t first_char(std::string_view s) {
  size_t len;
  return s.empty() ? -1 : utf8_decode(s, 0, &len);
}

}  // namespace

void AddedVocab::scan(std::string_view s, const Matcher& m, std::vector<Segment>& out) const {
  size_t start = 0;  // end of the previous emitted match
  for (size_t i = 0; i < s.size();) {
    if (!m.first_byte[static_cast<unsigned char>(s[i])]) {
      ++i;
      continue;
    }
    uint64_t node = 0;
    int32_t best = -1;
    size_t best_end = 0;
    for (size_t j = i; j < s.size(); ++j) {
      const uint64_t* child = m.edges.find(node << 8 | static_cast<unsigned char>(s[j]));
      if (!child) break;
      node = *child;
      if (m.token[node] >= 0) best = m.token[node], best_end = j + 1;
    }
    if (best < 0) {
      ++i;
      continue;
    }
    const AddedToken& t = tokens_[best];
    size_t b = i, e = best_end;
    i = best_end;  // like aho-corasick's non-overlapping iteration, go on after this match
    if (b < start) continue;
    if (t.single_word) {
      bool start_ok = b == 0 || !is_word_char(last_char(s.substr(0, b)));
      bool stop_ok = e == s.size() || !is_word_char(first_char(s.substr(e)));
      if (!start_ok || !stop_ok) continue;
    }
    if (t.lstrip) {
      size_t nb = b;
      while (nb > start) {
        size_t p = nb - 1, len;
        while (p > start && (static_cast<unsigned char>(s[p]) & 0xC0) == 0x80) --p;
        if (!is_whitespace(utf8_decode(s, p, &len))) break;
        nb = p;
      }
      b = nb;
    }
    if (t.rstrip) {
      size_t len;
      while (e < s.size() && is_whitespace(utf8_decode(s, e, &len))) e += len;
      i = std::max(i, e);
    }
    if (start < b) out.push_back({start, b, -1});
    out.push_back({b, e, t.id});
    start = e;
  }
  if (start < s.size()) out.push_back({start, s.size(), -1});
}

void AddedVocab::split(std::string_view s, bool normalized_set, std::vector<Segment>& out) const {
  const Matcher& m = normalized_set ? norm_ : raw_;
  if (m.empty()) {
    if (!s.empty()) out.push_back({0, s.size(), -1});
    return;
  }
  scan(s, m, out);
}

}  // namespace vlm::text
