// Intermediate tensors of a model run, collected through the observer (nn::Observation), for the
// oracle tests of every family.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "core/compute.h"
#include "core/error.h"
#include "models/decoder_model.h"

namespace vlm::testing {

// The compute environment the model tests run in: 2 threads, float32-exact.
inline const Compute& test_env() {
  static Compute env = Compute::make(2, Precision::kExact);
  return env;
}

struct Recorder {
  std::map<std::string, std::vector<std::vector<float>>> seen;  // name -> each report, in order
  nn::Observer observer = [this](const nn::Observation& o) { seen[std::string(o.name)].push_back(o.copy()); };

  bool has(const std::string& name) const { return seen.count(name) != 0; }
  const std::vector<std::vector<float>>& all(const std::string& name) const {
    auto it = seen.find(name);
    if (it == seen.end()) fail("no observation named '", name, "'");
    return it->second;
  }
  const std::vector<float>& last(const std::string& name) const { return all(name).back(); }
};

// One prefill of `input` in a single chunk, recording everything, plus the logits of its last
// `logits_rows` rows (computed from the last layer's residual stream with the model's head).
struct ForwardTrace {
  Recorder rec;
  std::vector<float> logits;  // [logits_rows, vocab]
};

inline ForwardTrace forward_trace(const DecoderModel& model, const ModelInput& input, int64_t logits_rows,
                                  const Compute& env = test_env(), const nn::LoraSet& adapters = {}) {
  ForwardTrace t;
  auto seq = model.start(env);
  seq->set_adapters(adapters);
  seq->set_observer(&t.rec.observer);
  ModelInput one_shot = input;
  one_shot.prefill_chunk = 0;
  seq->prefill(one_shot);
  const auto& cfg = model.decoder().config();
  const std::vector<float>& x = t.rec.last("decoder.layer");
  const int64_t rows = int64_t(x.size()) / cfg.hidden;
  std::vector<float> hidden(size_t(logits_rows * cfg.hidden));
  t.logits.resize(size_t(logits_rows * cfg.vocab));
  model.decoder().head(env, x.data() + (rows - logits_rows) * cfg.hidden, logits_rows, hidden.data(), t.logits.data());
  return t;
}

}  // namespace vlm::testing
