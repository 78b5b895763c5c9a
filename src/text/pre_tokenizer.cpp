#include "text/pre_tokenizer.h"

#include <algorithm>
#include <array>
#include <functional>

#include "core/error.h"
#include "text/regex.h"
#include "text/unicode.h"

namespace vlm::text {

MatchList ranges_to_matches(size_t size, const std::vector<std::pair<size_t, size_t>>& ranges) {
  MatchList out;
  size_t prev = 0;
  for (auto [b, e] : ranges) {
    if (prev != b) out.push_back({{prev, b}, false});
    out.push_back({{b, e}, true});
    prev = e;
  }
  if (prev != size) out.push_back({{prev, size}, false});
  return out;
}

void split_piece(const Piece& piece, const MatchList& matches, SplitBehavior behavior, std::vector<Piece>& out) {
  MatchList parts;
  bool prev_match = false;
  switch (behavior) {
    case SplitBehavior::kRemoved:
      for (const auto& m : matches)
        if (!m.second) parts.push_back(m);
      break;
    case SplitBehavior::kIsolated: parts = matches; break;
    case SplitBehavior::kMergedWithPrevious:
      for (const auto& m : matches) {
        if (m.second && !prev_match && !parts.empty()) {
          parts.back().first.second = m.first.second;
        } else {
          parts.push_back(m);
        }
        prev_match = m.second;
      }
      break;
    case SplitBehavior::kMergedWithNext:
      for (size_t k = matches.size(); k-- > 0;) {
        const auto& m = matches[k];
        if (m.second && !prev_match && !parts.empty()) {
          parts.back().first.first = m.first.first;
        } else {
          parts.push_back(m);
        }
        prev_match = m.second;
      }
      std::reverse(parts.begin(), parts.end());
      break;
    case SplitBehavior::kContiguous:
      for (const auto& m : matches) {
        if (m.second == prev_match && !parts.empty()) {
          parts.back().first.second = m.first.second;
        } else {
          parts.push_back(m);
        }
        prev_match = m.second;
      }
      break;
  }
  for (const auto& p : parts) {
    auto [b, e] = p.first;
    if (e > b) out.push_back({piece.text.substr(b, e - b), piece.offset + b});
  }
}

namespace {

const char* kWhere = "tokenizer.json pre_tokenizer";
const char* kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

SplitBehavior parse_behavior(const std::string& s) {
  if (s == "Removed") return SplitBehavior::kRemoved;
  if (s == "Isolated") return SplitBehavior::kIsolated;
  if (s == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (s == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (s == "Contiguous") return SplitBehavior::kContiguous;
  fail(kWhere, ": unknown split behavior '", s, "'");
}

// Splits every piece with a matcher returning a piece's MatchList.
void split_all(std::vector<Piece>& pieces, SplitBehavior behavior,
               const std::function<MatchList(const std::string&)>& f) {
  std::vector<Piece> out;
  out.reserve(pieces.size() * 2);
  for (const Piece& p : pieces) split_piece(p, f(p.text), behavior, out);
  pieces = std::move(out);
}

// Each character satisfying `pred` is its own match (HF's `impl Pattern for Fn(char) -> bool`).
MatchList char_matches(const std::string& s, const std::function<bool(int32_t)>& pred) {
  MatchList out;
  size_t len, run = 0;
  for (size_t i = 0; i < s.size(); i += len) {
    int32_t cp = utf8_decode(s, i, &len);
    if (pred(cp)) {
      if (run < i) out.push_back({{run, i}, false});
      out.push_back({{i, i + len}, true});
      run = i + len;
    }
  }
  if (run < s.size()) out.push_back({{run, s.size()}, false});
  return out;
}

class Split : public PreTokenizer {
 public:
  explicit Split(const json& cfg)
      : pattern_(cfg.at("pattern"), kWhere),
        behavior_(parse_behavior(json_require<std::string>(cfg, "behavior", kWhere))),
        invert_(json_get<bool>(cfg, "invert", false, kWhere)) {}
  void apply(std::vector<Piece>& pieces) const override {
    split_all(pieces, behavior_, [&](const std::string& s) {
      MatchList m = ranges_to_matches(s.size(), pattern_.find(s));
      if (invert_)
        for (auto& x : m) x.second = !x.second;
      return m;
    });
  }

 private:
  Pattern pattern_;
  SplitBehavior behavior_;
  bool invert_;
};

class ByteLevel : public PreTokenizer {
 public:
  explicit ByteLevel(const json& cfg)
      : add_prefix_space_(json_get<bool>(cfg, "add_prefix_space", true, kWhere)),
        use_regex_(json_get<bool>(cfg, "use_regex", true, kWhere)) {
    if (use_regex_) regex_ = std::make_unique<Regex>(kGpt2Pattern);
  }
  void apply(std::vector<Piece>& pieces) const override {
    if (add_prefix_space_)
      for (Piece& p : pieces)
        if (p.text.empty() || p.text[0] != ' ') p.text.insert(0, 1, ' ');
    if (use_regex_)
      split_all(pieces, SplitBehavior::kIsolated,
                [&](const std::string& s) { return ranges_to_matches(s.size(), regex_->find_all(s)); });
    static const auto table = [] {  // byte -> its 1-2 byte UTF-8 stand-in, without string indirection
      std::array<std::array<char, 3>, 256> t{};
      for (int b = 0; b < 256; ++b) {
        const std::string& u = byte_to_unicode(static_cast<uint8_t>(b));
        t[b] = {u[0], u.size() > 1 ? u[1] : '\0', static_cast<char>(u.size())};
      }
      return t;
    }();
    std::string mapped;
    for (Piece& p : pieces) {
      mapped.clear();
      for (unsigned char c : p.text) mapped.append(table[c].data(), static_cast<size_t>(table[c][2]));
      p.text.swap(mapped);
    }
  }

 private:
  bool add_prefix_space_, use_regex_;
  std::unique_ptr<Regex> regex_;
};

class Metaspace : public PreTokenizer {
 public:
  enum class Prepend { kAlways, kFirst, kNever };
  explicit Metaspace(const json& cfg) {
    replacement_ = json_get<std::string>(cfg, "replacement", "\xE2\x96\x81", kWhere);
    split_ = json_get<bool>(cfg, "split", true, kWhere);
    std::string scheme = json_get<std::string>(cfg, "prepend_scheme", "", kWhere);
    if (scheme.empty()) scheme = json_get<bool>(cfg, "add_prefix_space", true, kWhere) ? "always" : "never";
    prepend_ = scheme == "first" ? Prepend::kFirst : scheme == "never" ? Prepend::kNever : Prepend::kAlways;
  }
  void apply(std::vector<Piece>& pieces) const override {
    for (Piece& p : pieces) {
      std::string t;
      for (char c : p.text) {
        if (c == ' ') {
          t += replacement_;
        } else {
          t += c;
        }
      }
      bool starts = t.compare(0, replacement_.size(), replacement_) == 0;
      if (!starts && (prepend_ == Prepend::kAlways || (prepend_ == Prepend::kFirst && p.offset == 0)))
        t.insert(0, replacement_);
      p.text = std::move(t);
    }
    if (split_)
      split_all(pieces, SplitBehavior::kMergedWithNext,
                [&](const std::string& s) { return ranges_to_matches(s.size(), find_all_literal(s, replacement_)); });
  }

 private:
  std::string replacement_;
  bool split_ = true;
  Prepend prepend_ = Prepend::kAlways;
};

class CharSplit : public PreTokenizer {
 public:
  CharSplit(std::function<bool(int32_t)> pred, SplitBehavior b) : pred_(std::move(pred)), behavior_(b) {}
  void apply(std::vector<Piece>& pieces) const override {
    split_all(pieces, behavior_, [&](const std::string& s) { return char_matches(s, pred_); });
  }

 private:
  std::function<bool(int32_t)> pred_;
  SplitBehavior behavior_;
};

class Whitespace : public PreTokenizer {
 public:
  Whitespace() : regex_(R"(\w+|[^\w\s]+)") {}
  void apply(std::vector<Piece>& pieces) const override {
    split_all(pieces, SplitBehavior::kRemoved, [&](const std::string& s) {
      MatchList m = ranges_to_matches(s.size(), regex_.find_all(s));
      for (auto& x : m) x.second = !x.second;
      return m;
    });
  }

 private:
  Regex regex_;
};

class Sequence : public PreTokenizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<PreTokenizer>> items) : items_(std::move(items)) {}
  void apply(std::vector<Piece>& pieces) const override {
    for (const auto& p : items_) p->apply(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> items_;
};

}  // namespace

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& cfg) {
  if (cfg.is_null()) return nullptr;
  std::string type = json_require<std::string>(cfg, "type", kWhere);
  if (type == "Split") return std::make_unique<Split>(cfg);
  if (type == "ByteLevel") return std::make_unique<ByteLevel>(cfg);
  if (type == "Metaspace") return std::make_unique<Metaspace>(cfg);
  if (type == "Whitespace") return std::make_unique<Whitespace>();
  if (type == "WhitespaceSplit") return std::make_unique<CharSplit>(is_whitespace, SplitBehavior::kRemoved);
  if (type == "Punctuation") {
    auto b = parse_behavior(json_get<std::string>(cfg, "behavior", "Isolated", kWhere));
    return std::make_unique<CharSplit>(is_punctuation, b);
  }
  if (type == "Digits") {
    bool individual = json_get<bool>(cfg, "individual_digits", false, kWhere);
    return std::make_unique<CharSplit>(is_numeric, individual ? SplitBehavior::kIsolated : SplitBehavior::kContiguous);
  }
  if (type == "CharDelimiterSplit") {
    std::string d = json_require<std::string>(cfg, "delimiter", kWhere);
    size_t len;
    int32_t cp = d.empty() ? -2 : utf8_decode(d, 0, &len);
    return std::make_unique<CharSplit>([cp](int32_t c) { return c == cp; }, SplitBehavior::kRemoved);
  }
  if (type == "BertPreTokenizer") {
    std::vector<std::unique_ptr<PreTokenizer>> items;
    items.push_back(std::make_unique<CharSplit>(is_whitespace, SplitBehavior::kRemoved));
    items.push_back(std::make_unique<CharSplit>(is_punctuation, SplitBehavior::kIsolated));
    return std::make_unique<Sequence>(std::move(items));
  }
  if (type == "Sequence") {
    std::vector<std::unique_ptr<PreTokenizer>> items;
    for (const auto& c : cfg.at("pretokenizers"))
      if (auto p = make_pre_tokenizer(c)) items.push_back(std::move(p));
    return std::make_unique<Sequence>(std::move(items));
  }
  fail(kWhere, ": unsupported type '", type, "'");
}

}  // namespace vlm::text
