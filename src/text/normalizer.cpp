#include "text/normalizer.h"

#include <vector>

#include "core/error.h"
#include "text/regex.h"
#include "text/unicode.h"

namespace vlm::text {
namespace {

const char* kWhere = "tokenizer.json normalizer";

class UnicodeNorm : public Normalizer {
 public:
  explicit UnicodeNorm(NormForm f) : form_(f) {}
  std::string apply(std::string s) const override { return unicode_normalize(s, form_); }

 private:
  NormForm form_;
};

class Lowercase : public Normalizer {
 public:
  std::string apply(std::string s) const override { return to_lowercase(s); }
};

class Strip : public Normalizer {
 public:
  Strip(bool left, bool right) : left_(left), right_(right) {}
  std::string apply(std::string s) const override {
    size_t b = 0, e = s.size(), len;
    if (left_) {
      while (b < e && is_whitespace(utf8_decode(s, b, &len))) b += len;
    }
    if (right_) {
      while (e > b) {
        size_t p = e - 1;
        while (p > b && (static_cast<unsigned char>(s[p]) & 0xC0) == 0x80) --p;
        if (!is_whitespace(utf8_decode(s, p, &len))) break;
        e = p;
      }
    }
    return s.substr(b, e - b);
  }

 private:
  bool left_, right_;
};

class Replace : public Normalizer {
 public:
  explicit Replace(const json& cfg)
      : pattern_(cfg.at("pattern"), kWhere), content_(json_require<std::string>(cfg, "content", kWhere)) {}
  std::string apply(std::string s) const override {
    auto matches = pattern_.find(s);
    if (matches.empty()) return s;
    std::string out;
    size_t prev = 0;
    for (auto [b, e] : matches) {
      out.append(s, prev, b - prev);
      out += content_;
      prev = e;
    }
    out.append(s, prev, std::string::npos);
    return out;
  }

 private:
  Pattern pattern_;
  std::string content_;
};

class Prepend : public Normalizer {
 public:
  explicit Prepend(std::string p) : prepend_(std::move(p)) {}
  std::string apply(std::string s) const override { return s.empty() ? s : prepend_ + s; }

 private:
  std::string prepend_;
};

class Bert : public Normalizer {
 public:
  explicit Bert(const json& cfg) {
    clean_ = json_get<bool>(cfg, "clean_text", true, kWhere);
    chinese_ = json_get<bool>(cfg, "handle_chinese_chars", true, kWhere);
    lower_ = json_get<bool>(cfg, "lowercase", true, kWhere);
    strip_accents_ = json_get<bool>(cfg, "strip_accents", lower_, kWhere);  // null follows lowercase
  }
  std::string apply(std::string s) const override {
    std::string out;
    out.reserve(s.size());
    size_t len;
    for (size_t i = 0; i < s.size(); i += len) {
      int32_t cp = utf8_decode(s, i, &len);
      if (clean_) {
        if (cp == 0 || cp == 0xFFFD || is_control(cp)) continue;
        if (cp == '\t' || cp == '\n' || cp == '\r' || is_whitespace(cp)) {
          out += ' ';
          continue;
        }
      }
      if (chinese_ && is_chinese_char(cp)) {
        out += ' ';
        out.append(s, i, len);
        out += ' ';
        continue;
      }
      out.append(s, i, len);
    }
    if (strip_accents_) {
      std::string d = unicode_normalize(out, NormForm::kNFD);
      out.clear();
      for (size_t i = 0; i < d.size(); i += len) {
        int32_t cp = utf8_decode(d, i, &len);
        if (!is_combining_mark(cp)) out.append(d, i, len);
      }
    }
    if (lower_) out = to_lowercase(out);
    return out;
  }

 private:
  bool clean_, chinese_, lower_, strip_accents_;
};

class StripAccents : public Normalizer {
 public:
  std::string apply(std::string s) const override {
    std::string out;
    size_t len;
    for (size_t i = 0; i < s.size(); i += len) {
      int32_t cp = utf8_decode(s, i, &len);
      if (!is_combining_mark(cp)) out.append(s, i, len);
    }
    return out;
  }
};

class Sequence : public Normalizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<Normalizer>> items) : items_(std::move(items)) {}
  std::string apply(std::string s) const override {
    for (const auto& n : items_) s = n->apply(std::move(s));
    return s;
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> items_;
};

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const json& cfg) {
  if (cfg.is_null()) return nullptr;
  std::string type = json_require<std::string>(cfg, "type", kWhere);
  if (type == "NFC") return std::make_unique<UnicodeNorm>(NormForm::kNFC);
  if (type == "NFD") return std::make_unique<UnicodeNorm>(NormForm::kNFD);
  if (type == "NFKC") return std::make_unique<UnicodeNorm>(NormForm::kNFKC);
  if (type == "NFKD") return std::make_unique<UnicodeNorm>(NormForm::kNFKD);
  // SentencePiece's precompiled charsmap is (almost always) nmt_nfkc; approximate it by NFKC.
  if (type == "Precompiled") return std::make_unique<UnicodeNorm>(NormForm::kNFKC);
  if (type == "Lowercase") return std::make_unique<Lowercase>();
  if (type == "StripAccents") return std::make_unique<StripAccents>();
  if (type == "Strip")
    return std::make_unique<Strip>(json_get<bool>(cfg, "strip_left", true, kWhere),
                                   json_get<bool>(cfg, "strip_right", true, kWhere));
  if (type == "Replace") return std::make_unique<Replace>(cfg);
  if (type == "Prepend") return std::make_unique<Prepend>(json_require<std::string>(cfg, "prepend", kWhere));
  if (type == "BertNormalizer") return std::make_unique<Bert>(cfg);
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Normalizer>> items;
    for (const auto& c : cfg.at("normalizers"))
      if (auto n = make_normalizer(c)) items.push_back(std::move(n));
    return std::make_unique<Sequence>(std::move(items));
  }
  fail(kWhere, ": unsupported type '", type, "'");
}

}  // namespace vlm::text
