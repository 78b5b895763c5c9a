// A scripted Model/Sequence and detokenizer for generation tests: step i returns logits that make
// script[i] the argmax (or a fixed distribution), and token ids map to fixed strings.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "generate/generator.h"

namespace vlm::testing {

struct FakeScript {
  int64_t vocab = 16;
  std::vector<int32_t> tokens;      // argmax of step i (cycled); empty: use `fixed_logits`
  std::vector<float> fixed_logits;  // returned at every step when `tokens` is empty
  int64_t context_length = 0;
  std::vector<int32_t> eos_ids;
};

struct FakeCounters {
  int prefills = 0;
  int steps = 0;
  std::vector<int32_t> stepped;
};

class FakeSequence : public Sequence {
 public:
  FakeSequence(const FakeScript& s, FakeCounters& c) : s_(s), c_(c) {}
  std::vector<float> prefill(const ModelInput& input) override {
    ++c_.prefills;
    len_ = int64_t(input.ids.size());
    return logits();
  }
  std::vector<float> step(int32_t token) override {
    ++c_.steps;
    c_.stepped.push_back(token);
    ++len_;
    ++pos_;
    return logits();
  }
  int64_t length() const override { return len_; }
  double vision_ms() const override { return 1.5; }

 private:
  std::vector<float> logits() const {
    if (s_.tokens.empty()) return s_.fixed_logits;
    std::vector<float> l(size_t(s_.vocab));
    for (size_t i = 0; i < l.size(); ++i) l[i] = -float(i % 5) * 0.25f;  // non-trivial background
    l[size_t(s_.tokens[size_t(pos_) % s_.tokens.size()])] = 10.0f;
    return l;
  }
  const FakeScript& s_;
  FakeCounters& c_;
  int64_t len_ = 0, pos_ = 0;
};

class FakeModel : public Model {
 public:
  explicit FakeModel(FakeScript s) : s_(std::move(s)) {
    info_.model_type = "fake";
    info_.vocab_size = s_.vocab;
    info_.context_length = s_.context_length;
    info_.eos_ids = s_.eos_ids;
  }
  const ModelInfo& info() const override { return info_; }
  std::unique_ptr<Sequence> start(const Compute&) const override {
    return std::make_unique<FakeSequence>(s_, counters);
  }
  mutable FakeCounters counters;

 private:
  FakeScript s_;
  ModelInfo info_;
};

// Token i decodes to pieces[i]; pieces are concatenated like a byte-level detokenizer would.
class FakeText : public TextStream {
 public:
  explicit FakeText(std::map<int32_t, std::string> pieces) : pieces_(std::move(pieces)) {}
  std::string push(int32_t id) override {
    auto it = pieces_.find(id);
    return it == pieces_.end() ? "<" + std::to_string(id) + ">" : it->second;
  }
  std::string flush() override { return ""; }

 private:
  std::map<int32_t, std::string> pieces_;
};

}  // namespace vlm::testing
