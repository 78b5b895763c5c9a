#include "models/decoder_model.h"

#include <algorithm>
#include <cmath>

#include "kernels/ops.h"

namespace vlm {

std::unique_ptr<Sequence> DecoderModel::start(const Compute& env) const {
  return std::make_unique<DecoderSequence>(*this, env);
}

std::shared_ptr<const nn::LoraAdapter> DecoderModel::load_adapter(const std::string& dir) const {
  return std::make_shared<const nn::LoraAdapter>(nn::load_lora_adapter(dir, decoder_.config()));
}

void DecoderModel::embed_token(int32_t token, float* out) const {
  decoder_.embed(&token, 1, out);
  if (embed_scale_ != 1.f) scale_inplace(out, embed_scale_, decoder_.config().hidden);
}

std::vector<std::vector<float>> DecoderModel::step_batch(std::span<Sequence* const> sequences,
                                                         std::span<const int32_t> tokens) const {
  std::vector<DecoderSequence*> own;
  for (Sequence* s : sequences) {
    auto* d = dynamic_cast<DecoderSequence*>(s);
    if (!d) return Model::step_batch(sequences, tokens);
    own.push_back(d);
  }
  return DecoderSequence::step_many(*this, own, tokens);
}

DecoderSequence::DecoderSequence(const DecoderModel& model, const Compute& env)
    : model_(model), env_(env), cache_(model.decoder().make_cache()), next_position_(model.first_position()) {}

void DecoderSequence::set_kv_window(int64_t max_rows, int64_t keep) {
  if (max_rows > 0 && prefix_rows_ > 0 && max_rows <= prefix_rows_ + keep)
    fail("max_kv_size ", max_rows, " does not leave room beyond the ", prefix_rows_,
         " rows of the bidirectional prompt, which must stay cached");
  window_ = max_rows;
  keep_ = keep;
  cache_.set_window(max_rows, std::max(keep, prefix_rows_));
}

void DecoderSequence::set_adapters(nn::LoraSet adapters) {
  for (const nn::ActiveLora& a : adapters) {
    if (!a.adapter) fail("set_adapters: a null adapter");
    const nn::DecoderConfig& cfg = model_.decoder().config();
    if (a.adapter->layers.size() != size_t(cfg.num_layers))
      fail("set_adapters: adapter ", a.adapter->dir, " was loaded for a model with ", a.adapter->layers.size(),
           " decoder layers, not this one");
    for (const auto& layer : a.adapter->layers)
      for (int slot = 0; slot < nn::kLoraSlots; ++slot)
        if (const auto& m = layer[size_t(slot)]; m && (m->in_features() != nn::lora_slot_dims(cfg, slot)[0] ||
                                                       m->out_features() != nn::lora_slot_dims(cfg, slot)[1]))
          fail("set_adapters: adapter ", a.adapter->dir, " was loaded for a model of other dimensions");
    if (!std::isfinite(a.scale)) fail("set_adapters: the scale of adapter ", a.adapter->dir, " is not finite");
  }
  auto same = [](const nn::ActiveLora& a, const nn::ActiveLora& b) {
    return a.adapter == b.adapter && a.scale == b.scale;
  };
  if (!std::equal(lora_.begin(), lora_.end(), adapters.begin(), adapters.end(), same)) {
    keys_valid_ = false;  // the cached rows were computed with other adapters: not reusable
    keys_.clear();
  }
  lora_ = std::move(adapters);
}

void DecoderSequence::check_room(int64_t rows) const {
  const int64_t limit = model_.decoder().config().max_positions;
  if (limit > 0 && next_position_ + rows > limit + model_.first_position())
    fail(model_.info().model_type, ": sequence of ", seen_ + rows, " tokens exceeds max_position_embeddings ", limit);
}

std::vector<float> DecoderSequence::prefill(const ModelInput& input) {
  if (seen_ == 0) return prefill_reusing(input, nullptr);
  // A later prompt continues after everything seen: its rows are not those of the same tokens in a
  // fresh prompt (positions, a causal suffix after a prefix block), so the cache keys stop here.
  keys_valid_ = false;
  keys_.clear();
  return run_prompt(input, next_position_, 0);
}

std::vector<float> DecoderSequence::run_prompt(const ModelInput& input, int64_t first_position, int64_t from) {
  const std::string& type = model_.info().model_type;
  if (input.ids.empty()) fail(type, ": prefill needs at least one token");
  const int64_t n = int64_t(input.ids.size()), H = model_.decoder().config().hidden;
  check_room(n - from);
  // The vision tower pauses between its blocks where the prompt pauses between its chunks. Other
  // requests' steps may run in those pauses, so the encode counts its work (the vision tower and
  // projector; embedding has none) in counters of its own, then adds them to the shared ones.
  Compute build_env = env_;
  build_env.between_stages = input.between_chunks;
  build_env.counters = std::make_shared<ComputeCounters>();
  PromptRows p = model_.build_prompt(build_env, input, first_position, observer_, &vision_ms_);
  const ComputeCounters::Snapshot encode_work = build_env.snapshot();
  vision_flops_ += encode_work.flops;
  env_.count(encode_work.flops, encode_work.weight_bytes);
  if (int64_t(p.embeddings.size()) != n * H || p.positions.size() != n)
    fail(type, ": the family built ", p.positions.size(), " prompt rows for ", n, " tokens");
  if (p.prefix_lm) {
    // The whole prompt is one bidirectional block: it runs at once and stays cached.
    prefix_rows_ = cache_.length() + n - from;
    if (window_ > 0) set_kv_window(window_, keep_);
  }
  const int64_t chunk = p.prefix_lm || input.prefill_chunk <= 0 ? n : input.prefill_chunk;
  std::vector<float> logits;
  for (const auto& b : p.bidirectional) {
    if (b[0] < 0 || b[0] >= b[1] || b[1] > n)
      fail(type, ": bidirectional block [", b[0], ", ", b[1], ") outside the prompt");
    if (b[0] < from && from < b[1])  // prompt_keys() gives no keys to models with such blocks
      fail(type, ": internal error: a reused prefix ends inside a bidirectional block");
  }
  for (int64_t start = from, len = 0; start < n; start += len) {
    len = std::min(chunk, n - start);
    std::vector<std::array<int64_t, 2>> blocks;  // a chunk ends before or after a block, never inside
    for (const auto& b : p.bidirectional) {
      if (b[0] < start + len && start + len < b[1]) len = b[0] > start ? b[0] - start : b[1] - start;
      if (start <= b[0] && b[1] <= start + len) blocks.push_back({b[0] - start, b[1] - start});
    }
    nn::Positions pos;
    pos.append(p.positions, start, len);
    note_eviction(cache_.make_room(len));
    logits = run(p.embeddings.data() + start * H, len, pos, start + len == n, std::move(blocks));
    if (start + len < n && input.between_chunks) input.between_chunks();
  }
  seen_ += n - from;
  next_position_ = p.next_position;
  return logits;
}

std::vector<float> DecoderSequence::step(int32_t token) {
  if (seen_ == 0) fail(model_.info().model_type, ": step() before prefill()");
  check_room(1);
  const int64_t H = model_.decoder().config().hidden;
  float* x = token_row_.get(H);
  model_.embed_token(token, x);
  note_eviction(cache_.make_room(1));
  std::vector<float> logits =
      run(x, 1, nn::Positions::sequential(next_position_, 1, model_.three_axis_positions()), true);
  if (keys_valid_) keys_.push_back(uint64_t(uint32_t(token)));
  ++seen_;
  ++next_position_;
  return logits;
}

std::vector<float> DecoderSequence::run(float* x, int64_t rows, const nn::Positions& positions, bool want_logits,
                                        std::vector<std::array<int64_t, 2>> blocks) {
  const nn::TextDecoder& dec = model_.decoder();
  const int64_t H = dec.config().hidden;
  const nn::DecoderSpan span{rows, &cache_, prefix_rows_, std::move(blocks), &lora_};
  dec.forward(env_, x, {&span, 1}, positions, ws_, observer_);
  std::vector<float> logits(want_logits ? size_t(dec.config().vocab) : 0);
  if (observer_ && *observer_) {  // every row's final norm, for the oracle tests
    float* hidden = hidden_.get(rows * H);
    dec.head(env_, x, rows, hidden, nullptr);
    nn::observe(observer_, "decoder.norm", -1, hidden, rows, H);
  }
  if (want_logits) dec.head(env_, x + (rows - 1) * H, 1, hidden_.get(H), logits.data());
  return logits;
}

std::vector<std::vector<float>> DecoderSequence::step_many(const DecoderModel& model,
                                                           std::span<DecoderSequence* const> seqs,
                                                           std::span<const int32_t> tokens) {
  if (seqs.size() != tokens.size()) fail("step_batch: ", seqs.size(), " sequences but ", tokens.size(), " tokens");
  if (seqs.empty()) return {};
  const nn::TextDecoder& dec = model.decoder();
  const int64_t H = dec.config().hidden, V = dec.config().vocab, B = int64_t(seqs.size());
  std::vector<float> x(size_t(B * H));
  std::vector<nn::DecoderSpan> spans;
  nn::Positions positions;
  for (int64_t b = 0; b < B; ++b) {
    DecoderSequence& s = *seqs[size_t(b)];
    if (&s.model_ != &model) fail("step_batch: a sequence belongs to another model");
    if (s.seen_ == 0) fail(model.info().model_type, ": step() before prefill()");
    for (int64_t j = 0; j < b; ++j)
      if (seqs[size_t(j)] == &s) fail("step_batch: the same sequence appears twice");
    s.check_room(1);
    model.embed_token(tokens[size_t(b)], x.data() + b * H);
    s.note_eviction(s.cache_.make_room(1));
    spans.push_back({1, &s.cache_, s.prefix_rows_, {}, &s.lora_});
    positions.append(nn::Positions::sequential(s.next_position_, 1, model.three_axis_positions()), 0, 1);
  }
  DecoderSequence& lead = *seqs[0];
  dec.forward(lead.env_, x.data(), spans, positions, lead.ws_, nullptr);
  std::vector<float> logits(size_t(B * V));
  dec.head(lead.env_, x.data(), B, lead.hidden_.get(B * H), logits.data());
  std::vector<std::vector<float>> out;
  for (int64_t b = 0; b < B; ++b) {
    out.emplace_back(logits.begin() + b * V, logits.begin() + (b + 1) * V);
    DecoderSequence& s = *seqs[size_t(b)];
    if (s.keys_valid_) s.keys_.push_back(uint64_t(uint32_t(tokens[size_t(b)])));
    ++s.seen_;
    ++s.next_position_;
  }
  return out;
}

}  // namespace vlm
