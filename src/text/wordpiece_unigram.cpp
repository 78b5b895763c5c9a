// WordPiece (greedy longest-match-first) and Unigram (Viterbi over piece log-probabilities) models.
#include <limits>

#include "core/error.h"
#include "text/model.h"
#include "text/unicode.h"

namespace vlm::text {
namespace {

class WordPiece : public Model {
 public:
  explicit WordPiece(const ModelSpec& spec) {
    const std::string where = "tokenizer.json model (WordPiece)";
    if (spec.vocab_at == std::string::npos) fail(where, ": missing 'vocab'");
    read_vocab_object(*spec.js, spec.vocab_at, vocab_);
    prefix_ = json_get<std::string>(spec.params, "continuing_subword_prefix", "##", where);
    max_chars_ = json_get<size_t>(spec.params, "max_input_chars_per_word", 100, where);
    std::string unk = json_get<std::string>(spec.params, "unk_token", "[UNK]", where);
    unk_id_ = vocab_.find(unk);
  }

  void tokenize(std::string_view word, std::vector<int32_t>& out) const override {
    size_t chars = 0, len;
    for (size_t i = 0; i < word.size(); i += len) {
      len = utf8_len(static_cast<unsigned char>(word[i]));
      ++chars;
    }
    if (chars > max_chars_) return push_unk(out);
    size_t start_out = out.size();
    std::string piece;
    for (size_t start = 0; start < word.size();) {
      size_t end = word.size();
      int32_t found = -1;
      while (end > start) {
        piece.clear();
        if (start > 0) piece = prefix_;
        piece.append(word.substr(start, end - start));
        found = vocab_.find(piece);
        if (found >= 0) break;
        do --end;  // step back one whole character
        while (end > start && (static_cast<unsigned char>(word[end]) & 0xC0) == 0x80);
      }
      if (found < 0) {
        out.resize(start_out);
        return push_unk(out);
      }
      out.push_back(found);
      start = end;
    }
  }

 private:
  void push_unk(std::vector<int32_t>& out) const {
    if (unk_id_ < 0) fail("WordPiece: word needs the unk token, which is not in the vocabulary");
    out.push_back(unk_id_);
  }
  std::string prefix_;
  size_t max_chars_ = 100;
  int32_t unk_id_ = -1;
};

class Unigram : public Model {
 public:
  explicit Unigram(const ModelSpec& spec) {
    const std::string where = "tokenizer.json model (Unigram)";
    if (spec.vocab_at == std::string::npos) fail(where, ": missing 'vocab'");
    const JsonScanner& js = *spec.js;
    std::string piece;
    int32_t id = 0;
    js.for_each_element(spec.vocab_at, [&](size_t e) {
      int k = 0;
      double score = 0;
      size_t end = js.for_each_element(
          e, [&](size_t v) { return k++ == 0 ? js.parse_string(v, piece) : js.parse_number(v, score); });
      if (k != 2) js.error(e, "Unigram vocab entry must be [piece, score]");
      vocab_.add(piece, id++);
      scores_.push_back(score);
      max_len_ = std::max(max_len_, piece.size());
      return end;
    });
    unk_id_ = json_get<int32_t>(spec.params, "unk_id", -1, where);
    byte_fallback_ = json_get<bool>(spec.params, "byte_fallback", false, where);
    double min_score = std::numeric_limits<double>::max();
    for (double s : scores_) min_score = std::min(min_score, s);
    unk_score_ = (scores_.empty() ? 0.0 : min_score) - 10.0;
  }

  void tokenize(std::string_view word, std::vector<int32_t>& out) const override {
    size_t n = word.size();
    struct Node {
      double score = 0;
      int32_t id = -1;
      size_t start = 0;
      bool set = false;
    };
    std::vector<Node> best(n + 1);
    best[0].set = true;
    for (size_t i = 0; i < n;) {
      size_t clen = std::min(utf8_len(static_cast<unsigned char>(word[i])), n - i);
      if (best[i].set) {
        bool single = false;
        size_t end = i;
        while (end < n && end - i < max_len_) {
          end += std::min(utf8_len(static_cast<unsigned char>(word[end])), n - end);
          int32_t id = vocab_.find(word.substr(i, end - i));
          if (id < 0) continue;
          double s = best[i].score + scores_[id];
          if (!best[end].set || s > best[end].score) best[end] = {s, id, i, true};
          if (end - i == clen) single = true;
        }
        if (!single) {
          double s = best[i].score + unk_score_;
          if (!best[i + clen].set || s > best[i + clen].score) best[i + clen] = {s, unk_id_, i, true};
        }
      }
      i += clen;
    }
    // Backtrack, fusing consecutive unknown pieces as HF's fuse_unk does.
    std::vector<std::pair<size_t, size_t>> spans;
    std::vector<int32_t> ids;
    for (size_t e = n; e > 0;) {
      const Node& node = best[e];
      if (node.id == unk_id_ && !ids.empty() && ids.back() == unk_id_) {
        spans.back().first = node.start;
      } else {
        spans.emplace_back(node.start, e);
        ids.push_back(node.id);
      }
      e = node.start;
    }
    for (size_t k = ids.size(); k-- > 0;) {
      if (ids[k] == unk_id_ && byte_fallback_) {
        std::string_view s = word.substr(spans[k].first, spans[k].second - spans[k].first);
        std::vector<int32_t> bytes;
        for (unsigned char c : s) bytes.push_back(vocab_.find(byte_piece(c)));
        bool all = true;
        for (int32_t b : bytes) all &= b >= 0;
        if (all) {
          out.insert(out.end(), bytes.begin(), bytes.end());
          continue;
        }
      }
      if (ids[k] < 0) fail("Unigram: text needs the unk token, which the model does not define");
      out.push_back(ids[k]);
    }
  }

 private:
  std::vector<double> scores_;
  size_t max_len_ = 0;
  int32_t unk_id_ = -1;
  bool byte_fallback_ = false;
  double unk_score_ = -10.0;
};

}  // namespace

std::unique_ptr<Model> make_wordpiece(const ModelSpec& spec) {
  return std::make_unique<WordPiece>(spec);
}
std::unique_ptr<Model> make_unigram(const ModelSpec& spec) {
  return std::make_unique<Unigram>(spec);
}

}  // namespace vlm::text
