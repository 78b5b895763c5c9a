// The interface every model family implements, and what its processor hands it.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/compute.h"
#include "core/error.h"
#include "core/tensor.h"
#include "media/image.h"
#include "nn/layers.h"
#include "nn/lora.h"

namespace vlm {

class FeatureCache;
class SafetensorsFile;

// One part of a chat message: text, a decoded image, or a video as decoded (already sampled) frames.
struct ContentPart {
  enum class Kind { Text, Image, Video } kind = Kind::Text;
  std::string text;
  Image image;
  std::vector<Image> frames;
  double fps = 0;  // video: the rate the frames were sampled at (0: unknown, the processor's default)
};

struct ChatMessage {
  std::string role;  // "system", "user", "assistant"
  std::vector<ContentPart> content;
};

struct ProcessingOptions {
  int resize_width = 0, resize_height = 0;  // 0 = model default
  int64_t min_pixels = 0, max_pixels = 0;   // 0 = preprocessor_config.json
  bool add_generation_prompt = true;
  ThreadPool* pool = nullptr;  // splits image resizing over these threads when set
};

// What a processor produces: prompt ids plus model-specific vision tensors.
struct ModelInput {
  std::vector<int32_t> ids;
  std::vector<Tensor> images;  // per image (Qwen2-VL: F32 patches [t*h*w, 1176]; PaliGemma: F32 [3, H, W])
  std::vector<std::array<int64_t, 3>> image_grids;  // Qwen2-VL: {t, h, w} per image
  std::vector<Tensor> videos;
  std::vector<std::array<int64_t, 3>> video_grids;
  std::vector<double> video_second_per_grid;  // Qwen2.5-VL: seconds per temporal grid step, per video
  std::string prompt_text;                    // rendered prompt, for display/debugging
  // The decoder runs a long prompt this many tokens at a time, so activation memory stays bounded
  // (causal models; a prefix-LM runs its bidirectional prefix at once). <= 0: all at once.
  int64_t prefill_chunk = 512;
  // Called after every prefill chunk but the last, and between the vision tower's blocks.
  std::function<void()> between_chunks;
  // Prompt cache: rows [0, cached_rows) are already in the sequence's KV cache, so build_prompt may
  // skip the vision encoder for media whose tokens all lie there (their rows are never run).
  int64_t cached_rows = 0;
  // Vision-feature cache shared by the sequences of a model (models/feature_cache.h); null: none.
  std::shared_ptr<FeatureCache> feature_cache;
};

class Processor {
 public:
  virtual ~Processor() = default;
  virtual ModelInput prepare(const std::vector<ChatMessage>& messages, const ProcessingOptions& options) const = 0;
};

// State of one generation: KV cache and positions.
class Sequence {
 public:
  virtual ~Sequence() = default;
  // Runs the prompt (vision encoder included); returns the logits of its last position [vocab].
  virtual std::vector<float> prefill(const ModelInput& input) = 0;
  // Appends one token; returns its logits [vocab].
  virtual std::vector<float> step(int32_t token) = 0;
  virtual int64_t length() const = 0;  // tokens processed so far
  // Bounds the KV cache to `max_rows` rows (0 = unbounded), keeping the first `keep` rows and
  // evicting the oldest others. Models whose attention cannot drop rows reject a bound.
  virtual void set_kv_window(int64_t max_rows, int64_t keep) {
    (void)keep;
    if (max_rows > 0) fail("this model does not support a bounded KV cache (max_kv_size)");
  }
  // Prompt cache: runs `input` as the sequence's whole prompt, keeping the longest prefix of the
  // cached rows whose tokens (and, at image/video positions, media content) match it and prefilling
  // only the rest; *reused receives the number of prompt tokens taken from the cache. Returns the
  // logits of the last position. The default supports only an empty sequence.
  virtual std::vector<float> prefill_reusing(const ModelInput& input, int64_t* reused) {
    if (length() > 0) fail("this model cannot reuse a cached prompt");
    if (reused) *reused = 0;
    return prefill(input);
  }
  // How many leading tokens of `keys` (Model::prompt_keys) the cache holds and could reuse.
  virtual int64_t cached_prefix(const std::vector<uint64_t>& keys) const {
    (void)keys;
    return 0;
  }
  // Prompt-cache files (safetensors): the cached rows, their keys and positions, with `metadata`
  // added to the header. Throws when the cache cannot be saved or the file does not fit this model.
  virtual void save_cache(const std::string& path, const std::map<std::string, std::string>& metadata) const {
    (void)path, (void)metadata;
    fail("this model cannot save its prompt cache");
  }
  virtual void load_cache(const SafetensorsFile& file) {
    (void)file;
    fail("this model cannot load a prompt cache");
  }
  virtual size_t cache_bytes() const { return 0; }    // memory held by the KV cache
  virtual void release_scratch() {}                   // frees working buffers (a pooled sequence keeps its cache)
  virtual double vision_ms() const = 0;               // time spent in the vision encoder during prefill
  virtual int64_t vision_flops() const { return 0; }  // the work of that encoding (Compute::counters)
  // Reports intermediate tensors of later prefills and steps (nn::Observation names); null: none.
  virtual void set_observer(const nn::Observer* observer) { (void)observer; }
  // LoRA adapters (loaded by this sequence's model) applied to the later prefills and steps.
  virtual void set_adapters(nn::LoraSet adapters) {
    if (!adapters.empty()) fail("this model does not support LoRA adapters");
  }
};

struct ModelInfo {
  std::string model_type;
  int64_t vocab_size = 0;
  int64_t context_length = 0;    // max_position_embeddings
  std::vector<int32_t> eos_ids;  // from config.json (generation_config.json is merged by the loader)
  int64_t num_parameters = 0;
};

class Model {
 public:
  virtual ~Model() = default;
  virtual const ModelInfo& info() const = 0;
  // Load-time preparation of the weights for env's precision (repacking for fast kernels).
  virtual void prepare(const Compute& env) { (void)env; }
  // Loads a LoRA adapter directory (MLX or PEFT format) for this model's text decoder.
  virtual std::shared_ptr<const nn::LoraAdapter> load_adapter(const std::string& dir) const {
    fail(info().model_type, ": LoRA adapters are not supported for this model (", dir, ")");
  }
  // A new generation state that computes on `env` (threads and precision).
  virtual std::unique_ptr<Sequence> start(const Compute& env) const = 0;
  // One key per prompt token for prompt-cache matching: the token id, or at an image/video position a
  // hash of the item's processed pixels and the token's place in it. Empty: no reuse.
  virtual std::vector<uint64_t> prompt_keys(const ModelInput& input) const {
    (void)input;
    return {};
  }
  // Advances each sequence (started from this model) by its token; returns each one's logits.
  // The default steps them one by one; decoder models share one pass over the weights.
  virtual std::vector<std::vector<float>> step_batch(std::span<Sequence* const> sequences,
                                                     std::span<const int32_t> tokens) const {
    if (sequences.size() != tokens.size())
      fail("step_batch: ", sequences.size(), " sequences, ", tokens.size(), " tokens");
    std::vector<std::vector<float>> out;
    for (size_t i = 0; i < sequences.size(); ++i) out.push_back(sequences[i]->step(tokens[i]));
    return out;
  }
};

}  // namespace vlm
