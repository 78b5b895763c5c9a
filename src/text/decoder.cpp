#include "text/decoder.h"

#include "core/error.h"
#include "text/regex.h"
#include "text/unicode.h"

namespace vlm::text {
namespace {

const char* kWhere = "tokenizer.json decoder";

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  if (from.empty() || s.find(from) == std::string::npos) return;
  std::string out;
  size_t prev = 0;
  for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, prev)) {
    out.append(s, prev, p - prev);
    out.append(to);
    prev = p + from.size();
  }
  out.append(s, prev, std::string::npos);
  s.swap(out);
}

class ByteLevel : public Decoder {
 public:
  void apply(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const std::string& t : tokens) {
      size_t start = bytes.size(), len;
      bool ok = true;
      for (size_t i = 0; i < t.size() && ok; i += len) {
        int b = byte_from_unicode(utf8_decode(t, i, &len));
        if (b < 0)
          ok = false;
        else
          bytes += static_cast<char>(b);
      }
      if (!ok) {  // a token outside the byte alphabet (e.g. an added token) passes through as its bytes
        bytes.resize(start);
        bytes += t;
      }
    }
    tokens.assign(1, utf8_lossy(bytes));
  }
};

class ByteFallback : public Decoder {
 public:
  void apply(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    std::string pending;
    auto flush = [&] {
      if (pending.empty()) return;
      if (utf8_valid(pending)) {
        out.push_back(pending);
      } else {
        for (size_t k = 0; k < pending.size(); ++k) out.emplace_back("\xEF\xBF\xBD");
      }
      pending.clear();
    };
    for (std::string& t : tokens) {
      int byte = parse_byte(t);
      if (byte >= 0) {
        pending += static_cast<char>(byte);
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    tokens = std::move(out);
  }

 private:
  static int parse_byte(const std::string& t) {
    if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
    int v = 0;
    for (int k = 3; k < 5; ++k) {
      char c = t[k];
      int d = c >= '0' && c <= '9'   ? c - '0'
              : c >= 'A' && c <= 'F' ? c - 'A' + 10
              : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                     : -1;
      if (d < 0) return -1;
      v = v * 16 + d;
    }
    return v;
  }
};

class Fuse : public Decoder {
 public:
  void apply(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const auto& t : tokens) all += t;
    tokens.assign(1, std::move(all));
  }
};

class Strip : public Decoder {
 public:
  explicit Strip(const json& cfg)
      : content_(json_get<std::string>(cfg, "content", " ", kWhere)),
        start_(json_get<size_t>(cfg, "start", 0, kWhere)),
        stop_(json_get<size_t>(cfg, "stop", 0, kWhere)) {}
  void apply(std::vector<std::string>& tokens) const override {
    if (content_.empty()) return;
    for (std::string& t : tokens) {
      size_t b = 0, e = t.size();
      for (size_t k = 0; k < start_ && t.compare(b, content_.size(), content_) == 0 && b < e; ++k) b += content_.size();
      for (size_t k = 0;
           k < stop_ && e >= b + content_.size() && t.compare(e - content_.size(), content_.size(), content_) == 0; ++k)
        e -= content_.size();
      t = t.substr(b, e - b);
    }
  }

 private:
  std::string content_;
  size_t start_, stop_;
};

class Replace : public Decoder {
 public:
  explicit Replace(const json& cfg)
      : pattern_(cfg.at("pattern"), kWhere), content_(json_require<std::string>(cfg, "content", kWhere)) {}
  void apply(std::vector<std::string>& tokens) const override {
    for (std::string& t : tokens) {
      auto matches = pattern_.find(t);
      if (matches.empty()) continue;
      std::string out;
      size_t prev = 0;
      for (auto [b, e] : matches) {
        out.append(t, prev, b - prev);
        out += content_;
        prev = e;
      }
      out.append(t, prev, std::string::npos);
      t = std::move(out);
    }
  }

 private:
  Pattern pattern_;
  std::string content_;
};

class Metaspace : public Decoder {
 public:
  explicit Metaspace(const json& cfg) {
    replacement_ = json_get<std::string>(cfg, "replacement", "\xE2\x96\x81", kWhere);
    std::string scheme = json_get<std::string>(cfg, "prepend_scheme", "", kWhere);
    if (scheme.empty()) scheme = json_get<bool>(cfg, "add_prefix_space", true, kWhere) ? "always" : "never";
    strip_first_ = scheme != "never";
  }
  void apply(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string& t = tokens[i];
      replace_all(t, replacement_, " ");
      if (i == 0 && strip_first_ && !t.empty() && t[0] == ' ') t.erase(0, 1);
    }
  }

 private:
  std::string replacement_;
  bool strip_first_ = true;
};

class WordPiece : public Decoder {
 public:
  explicit WordPiece(const json& cfg)
      : prefix_(json_get<std::string>(cfg, "prefix", "##", kWhere)),
        cleanup_(json_get<bool>(cfg, "cleanup", true, kWhere)) {}
  void apply(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string& t = tokens[i];
      if (i > 0) {
        if (t.compare(0, prefix_.size(), prefix_) == 0) {
          t.erase(0, prefix_.size());
        } else {
          t.insert(0, 1, ' ');
        }
      }
      if (cleanup_) t = clean_up_tokenization(std::move(t));
    }
  }

 private:
  std::string prefix_;
  bool cleanup_;
};

class BpeDecoder : public Decoder {
 public:
  explicit BpeDecoder(const json& cfg) : suffix_(json_get<std::string>(cfg, "suffix", "</w>", kWhere)) {}
  void apply(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) replace_all(tokens[i], suffix_, i + 1 == tokens.size() ? "" : " ");
  }

 private:
  std::string suffix_;
};

class Sequence : public Decoder {
 public:
  explicit Sequence(std::vector<std::unique_ptr<Decoder>> items) : items_(std::move(items)) {}
  void apply(std::vector<std::string>& tokens) const override {
    for (const auto& d : items_) d->apply(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> items_;
};

}  // namespace

std::string clean_up_tokenization(std::string s) {
  static const std::pair<const char*, const char*> kRules[] = {
      {" .", "."},     {" ?", "?"},   {" !", "!"},   {" ,", ","},     {" ' ", "'"},
      {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
  for (auto [from, to] : kRules) replace_all(s, from, to);
  return s;
}

std::unique_ptr<Decoder> make_decoder(const json& cfg) {
  if (cfg.is_null()) return nullptr;
  std::string type = json_require<std::string>(cfg, "type", kWhere);
  if (type == "ByteLevel") return std::make_unique<ByteLevel>();
  if (type == "ByteFallback") return std::make_unique<ByteFallback>();
  if (type == "Fuse") return std::make_unique<Fuse>();
  if (type == "Strip") return std::make_unique<Strip>(cfg);
  if (type == "Replace") return std::make_unique<Replace>(cfg);
  if (type == "Metaspace") return std::make_unique<Metaspace>(cfg);
  if (type == "WordPiece") return std::make_unique<WordPiece>(cfg);
  if (type == "BPEDecoder") return std::make_unique<BpeDecoder>(cfg);
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Decoder>> items;
    for (const auto& c : cfg.at("decoders"))
      if (auto d = make_decoder(c)) items.push_back(std::move(d));
    return std::make_unique<Sequence>(std::move(items));
  }
  fail(kWhere, ": unsupported type '", type, "'");
}

}  // namespace vlm::text
