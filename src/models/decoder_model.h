// The generic decoder-only model and its sequence, shared by every family: a family supplies its
// vision encoder and says how a prompt becomes decoder rows (embeddings with vision features
// merged, positions, attention kind); the KV cache, chunked prefill, KV window, decode steps and
// batched steps live here, once.
#pragma once
#include <array>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "models/model.h"
#include "nn/decoder.h"

namespace vlm {

// What a prompt contributes to the decoder.
struct PromptRows {
  std::vector<float> embeddings;  // [n, hidden]: the rows the first layer receives (scaled, merged)
  nn::Positions positions;        // absolute, continuing after what the sequence has already seen
  int64_t next_position = 0;      // position of the first token after the prompt
  bool prefix_lm = false;         // the prompt attends to itself bidirectionally (PaliGemma)
  // Row ranges [start, end) of the prompt that attend to themselves bidirectionally on top of the
  // causal mask (Gemma 3: the soft tokens of one image); sorted, disjoint, never split by chunks.
  std::vector<std::array<int64_t, 2>> bidirectional;
};

class DecoderModel : public Model {
 public:
  const ModelInfo& info() const override { return info_; }
  std::unique_ptr<Sequence> start(const Compute& env) const override;
  std::vector<std::vector<float>> step_batch(std::span<Sequence* const> sequences,
                                             std::span<const int32_t> tokens) const override;
  const nn::TextDecoder& decoder() const { return decoder_; }
  void prepare(const Compute& env) override { decoder_.prepare(env); }
  std::shared_ptr<const nn::LoraAdapter> load_adapter(const std::string& dir) const override;

  // Builds the decoder rows of `input`, whose first position is `first_position`; runs the vision
  // encoder (adding its time to *vision_ms) and reports intermediates to `observer`.
  virtual PromptRows build_prompt(const Compute& env, const ModelInput& input, int64_t first_position,
                                  const nn::Observer* observer, double* vision_ms) const = 0;
  // The decoder row of one generated token (its embedding, scaled as the family requires).
  virtual void embed_token(int32_t token, float* out) const;
  // Position of the very first prompt token (PaliGemma counts from 1).
  virtual int64_t first_position() const { return 0; }
  // Whether positions have three axes (multimodal RoPE).
  bool three_axis_positions() const { return !decoder_.config().ropes[0].mrope_section.empty(); }

  // Prompt cache (models/prompt_cache.cpp). Where a prompt's media sit: per item, the placeholder
  // token it fills, how many of them (in order of appearance among that token's occurrences), its
  // processed pixels and grid. The default (none) makes every key of a prompt with media depend on
  // all of its media, so such prompts reuse each other only when all their media agree.
  struct MediaSlot {
    int32_t token = 0;
    int64_t count = 0;
    const Tensor* pixels = nullptr;
    std::array<int64_t, 3> grid{};
  };
  virtual std::vector<MediaSlot> media_slots(const ModelInput& input) const {
    (void)input;
    return {};
  }
  std::vector<uint64_t> prompt_keys(const ModelInput& input) const override;
  // Index of the first prompt token of each slot (-1 when the prompt lacks it).
  static std::vector<int64_t> slot_starts(const std::vector<int32_t>& ids, const std::vector<MediaSlot>& slots);

 protected:
  ModelInfo info_;
  nn::TextDecoder decoder_;
  float embed_scale_ = 1.f;  // applied by the default embed_token
};

// The state of one generation over a DecoderModel.
class DecoderSequence : public Sequence {
 public:
  DecoderSequence(const DecoderModel& model, const Compute& env);
  std::vector<float> prefill(const ModelInput& input) override;
  std::vector<float> step(int32_t token) override;
  int64_t length() const override { return seen_; }
  void set_kv_window(int64_t max_rows, int64_t keep) override;
  double vision_ms() const override { return vision_ms_; }
  int64_t vision_flops() const override { return vision_flops_; }
  void set_observer(const nn::Observer* observer) override { observer_ = observer; }
  void set_adapters(nn::LoraSet adapters) override;
  std::vector<float> prefill_reusing(const ModelInput& input, int64_t* reused) override;
  int64_t cached_prefix(const std::vector<uint64_t>& keys) const override;
  size_t cache_bytes() const override { return cache_.bytes(); }
  void release_scratch() override;
  void save_cache(const std::string& path, const std::map<std::string, std::string>& metadata) const override;
  void load_cache(const SafetensorsFile& file) override;

  // Batched decode: advances each sequence by its token in one pass over the weights.
  static std::vector<std::vector<float>> step_many(const DecoderModel& model, std::span<DecoderSequence* const> seqs,
                                                   std::span<const int32_t> tokens);

 private:
  // Runs `rows` rows of x (at `positions`) for this sequence alone; logits of the last row when
  // `want_logits`.
  std::vector<float> run(float* x, int64_t rows, const nn::Positions& positions, bool want_logits,
                         std::vector<std::array<int64_t, 2>> blocks = {});
  void check_room(int64_t rows) const;
  // Builds `input` from `first_position` and runs its rows [from, n) after the cached ones.
  std::vector<float> run_prompt(const ModelInput& input, int64_t first_position, int64_t from);
  void note_eviction(int64_t evicted);  // rows left the window: the keys no longer describe the cache

  const DecoderModel& model_;
  Compute env_;
  nn::KVCache cache_;
  nn::DecoderWorkspace ws_;
  nn::Buffer hidden_;
  nn::Buffer token_row_;  // the decoder row of the token being stepped (reused every step)
  const nn::Observer* observer_ = nullptr;
  nn::LoraSet lora_;
  int64_t seen_ = 0;           // tokens processed (positions count these, not the rows a window keeps)
  int64_t next_position_ = 0;  // position of the next token
  int64_t prefix_rows_ = 0;    // cache rows every later token sees bidirectionally
  int64_t window_ = 0, keep_ = 0;
  double vision_ms_ = 0;
  int64_t vision_flops_ = 0;
  std::vector<uint64_t> keys_;  // prompt cache: the key of every cached row, while keys_valid_
  bool keys_valid_ = true;
};

}  // namespace vlm
