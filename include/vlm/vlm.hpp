// vlm.cpp public C++ API: load a vision-language model, turn user input (text, images, videos) into model
// input, and generate text with streaming.
//
//   auto ctx = vlm::ModelContext::load("mlx-community/Qwen2-VL-2B-Instruct-4bit");
//   vlm::UserInput in = vlm::UserInput::from_prompt("Describe the image.", {"cat.jpg"});
//   vlm::GenerationParams p;
//   p.max_tokens = 64;
//   auto r = ctx.generate(ctx.prepare(in), p, [](std::string_view text, int32_t) {
//     std::cout << text << std::flush;
//     return true;  // false stops early ("cancelled")
//   });
//
// Errors are thrown as std::runtime_error (vlm::Error) with a message naming the file/field at fault.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vlm {

// ---------------------------------------------------------------------------------------------
// Generation parameters and results.

struct SamplingParams {
  float temperature = 0.0f;          // <= 0: greedy (argmax)
  float top_p = 1.0f;                // nucleus sampling; 1 = off
  int top_k = 0;                     // 0 = off
  float min_p = 0.0f;                // 0 = off; keeps tokens with p >= min_p * p_max
  float repetition_penalty = 1.0f;   // 1 = off; HF semantics (divide positive logits, multiply negative)
  int repetition_context_size = 20;  // last N tokens (prompt included) penalised; <= 0: all of them
  std::optional<uint64_t> seed;      // absent: seeded from std::random_device
};

// A LoRA adapter of a ModelContext (the id load_adapter returned) and the scale it runs at
// (multiplies the adapter's own scale; 1 = as trained).
struct AdapterRef {
  int id = 0;
  float scale = 1.0f;
};

struct GenerationParams {
  int max_tokens = 256;
  std::vector<AdapterRef> adapters;  // LoRA adapters applied to this generation only (none: the base model)
  SamplingParams sampling;
  std::vector<std::string> stop;       // stop strings (may span tokens; never emitted)
  std::vector<int32_t> extra_eos_ids;  // in addition to the model's EOS ids
  bool ignore_eos = false;             // keep generating through EOS (benchmarks)
  bool logprobs = false;               // record the log-probability of each generated token
  int top_logprobs = 0;                // ... and of the N most likely alternatives
  int max_kv_size = 0;                 // > 0: rotating KV cache of this many tokens (first 4 kept)
  // Called between prefill chunks (UserInput::Options::prefill_chunk) and between the vision
  // encoder's blocks: a server lets other requests compute here, so a long prompt or a large
  // image does not hold up everyone else.
  std::function<void()> between_prefill_chunks;
};

struct TopLogprob {
  int32_t id = 0;
  std::string token;  // vocabulary string (e.g. "Ġthe")
  float logprob = 0;
};

struct TokenLogprob {
  int32_t id = 0;
  std::string token;
  float logprob = 0;  // log_softmax of the model's raw logits at this step
  std::vector<TopLogprob> top;
};

struct GenerationStats {
  int64_t prompt_tokens = 0;
  double prompt_ms = 0;  // prefill, vision encoder included
  double prompt_tps = 0;
  int64_t generated_tokens = 0;
  double generation_ms = 0;  // from the end of prefill to the last token
  double generation_tps = 0;
  double image_encode_ms = 0;
  int64_t peak_memory_bytes = 0;      // VmHWM of this process
  int64_t cached_tokens = 0;          // prompt tokens taken from the prompt cache (not prefilled again)
  double time_to_first_token_ms = 0;  // from the start of generate() to the first sampled token
  // Work done, for achieved rates (`vlm bench`): GFLOP of matmuls and attention in the image encoder
  // and in the whole prefill (image included), and GB of weights read by the decode steps (per step
  // one pass over the decoder's weights; in a batch, the batch's). Counted on the model's compute
  // environment, so work of other generations running on the same model at the same time counts too.
  double image_encode_gflop = 0;
  double prompt_gflop = 0;
  double decode_weight_gb = 0;
};

struct GenerationResult {
  std::string text;
  std::vector<int32_t> token_ids;  // generated ids, the final EOS included when generation stopped on it
  std::string finish_reason;       // "stop", "length" or "cancelled"
  GenerationStats stats;
  std::vector<TokenLogprob> logprobs;  // one per generated token when GenerationParams::logprobs
};

// Receives text as it becomes final (possibly empty while a partial UTF-8 character or a possible stop
// string is held back) and the token id that produced it (-1 for the final flush). Return false to stop.
using StreamCallback = std::function<bool(std::string_view text, int32_t token_id)>;

// ---------------------------------------------------------------------------------------------
// User input.

struct ImageSource {
  std::string path;            // a file, or
  std::vector<uint8_t> bytes;  // an encoded image (JPEG, PNG, WebP, GIF, BMP), or
  int width = 0, height = 0;   // a decoded 8-bit RGB image (rgb = height * width * 3, row-major)
  std::vector<uint8_t> rgb;
};

struct VideoSource {
  std::string path;                      // a video file, or
  std::vector<std::string> frame_paths;  // already extracted frames (one image per frame)
  double fps = 0;  // sampling rate (file) or rate the frames were taken at (frames); 0: Options::fps
};

struct UserInput {
  struct Part {
    enum class Type { Text, Image, Video } type = Type::Text;
    std::string text;
    ImageSource image;
    VideoSource video;

    static Part text_part(std::string text);
    static Part image_path(std::string path);
    static Part image_bytes(std::vector<uint8_t> bytes);
    static Part image_rgb(int width, int height, std::vector<uint8_t> rgb);
    static Part video_path(std::string path);
    static Part video_frames(std::vector<std::string> frame_paths);
  };
  struct Message {
    std::string role;  // "system", "user", "assistant"
    std::vector<Part> content;
  };
  struct Options {
    int resize_width = 0, resize_height = 0;  // 0: the processor's default size
    int64_t min_pixels = 0, max_pixels = 0;   // 0: preprocessor_config.json
    double fps = 2.0;                         // video frame sampling rate
    int max_frames = 0;                       // 0: no limit
    bool add_generation_prompt = true;
    int prefill_chunk = 512;  // prompt tokens per decoder pass (bounds activation memory); <= 0: all
  };

  std::vector<Message> messages;
  Options options;

  // One user turn: the images first, then the text; an optional system turn before it.
  static UserInput from_prompt(const std::string& prompt, const std::vector<std::string>& image_paths = {},
                               const std::string& system = "");
  // A chat as a JSON list of {role, content}: content a string or a list of parts, OpenAI style
  // ({"type":"text","text"}, {"type":"image_url","image_url":{"url"}} with a path, file:// or base64
  // data: URL) or Hugging Face style ({"type":"image","image":PATH}, {"type":"video","video":PATH or
  // [frame paths]}). Relative paths resolve against `base_dir`; errors name `source_name`.
  static UserInput from_messages_json(const std::string& json_text, const std::string& base_dir = "",
                                      const std::string& source_name = "messages");
};

// ---------------------------------------------------------------------------------------------
// Model ids, defaults and metadata.

struct ModelDefaults {
  std::string prompt = "Describe the image in English";
  int max_tokens = 256;
  float temperature = 0.0f;
  std::string description;
};

// Defaults per Hugging Face model id (built in: mlx-community/paligemma-3b-mix-448-8bit,
// mlx-community/Qwen2-VL-2B-Instruct-4bit); extensible at run time.
void register_model_defaults(const std::string& model_id, const ModelDefaults& defaults);
std::optional<ModelDefaults> find_model_defaults(const std::string& model_id);
std::vector<std::pair<std::string, ModelDefaults>> known_models();
std::vector<std::string> supported_model_types();  // config.json model_type values with an implementation

struct LoadOptions {
  bool offline = false;  // never download (also HF_HUB_OFFLINE=1)
  std::string revision;  // hub revision; "" = main
  int threads = 0;       // compute threads of this model; 0: VLM_THREADS, else physical cores
  // "exact" (float32 everywhere: the oracle-fixture path) or "fast" (int8/bf16 activations in
  // matmuls, float32 accumulation; logits within NMSE 1e-3 of exact); "": VLM_PRECISION, else
  // fast. Each model keeps its own.
  std::string precision;
  // Vision-feature cache: encoded images/videos kept (by content and processing options) so the
  // same image in another prompt skips the encoder; bytes, least recently used out; 0: off.
  size_t vision_cache_bytes = size_t(256) << 20;
};

// A local directory as is; a hub id ("org/name") resolved through the Hugging Face cache, downloading what
// is missing unless offline. Errors say how to get the model.
std::string resolve_model_dir(const std::string& id_or_dir, const LoadOptions& options = {});
// Downloads (or finds in the cache) a hub model; returns its local directory.
std::string download_model(const std::string& model_id, const LoadOptions& options = {});

struct ModelFileInfo {
  std::string name;
  int64_t bytes = 0;
};
struct ModelSummary {
  std::string dir;
  std::string model_type;
  std::vector<std::string> architectures;
  int64_t num_parameters = 0;  // quantized weights counted unpacked
  bool quantized = false;
  int quant_bits = 0, quant_group_size = 0;
  int64_t context_length = 0;
  std::vector<ModelFileInfo> files;
};
// Reads config.json and the weight headers only (no weights loaded).
ModelSummary inspect_model(const std::string& id_or_dir, const LoadOptions& options = {});

// ---------------------------------------------------------------------------------------------
// Tokenizer and chat template of a model directory (no weights needed).

class TextProcessor {
 public:
  static TextProcessor load(const std::string& id_or_dir, const LoadOptions& options = {});

  std::vector<int32_t> encode(const std::string& text, bool add_special_tokens = true) const;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;
  std::string token_string(int32_t id) const;
  // Renders the model's chat template; `messages_json` is a JSON list of {role, content}.
  std::string apply_chat_template(const std::string& messages_json, bool add_generation_prompt = true,
                                  bool add_vision_id = false) const;

  struct Impl;
  std::shared_ptr<Impl> impl;
};

// ---------------------------------------------------------------------------------------------
// A loaded model: weights, tokenizer, processor and configuration.

// Model input made by ModelContext::prepare (prompt ids and vision tensors).
class PreparedInput {
 public:
  const std::vector<int32_t>& ids() const;
  const std::string& prompt_text() const;
  int64_t num_images() const;
  int64_t num_videos() const;

  struct Impl;
  std::shared_ptr<Impl> impl;
};

struct ModelInfoSummary {
  std::string dir;
  std::string model_type;
  int64_t vocab_size = 0;
  int64_t context_length = 0;
  int64_t num_parameters = 0;
  std::vector<int32_t> eos_ids;  // config.json + generation_config.json + tokenizer
  double load_ms = 0;
  int threads = 0;        // compute threads this model runs on
  std::string precision;  // "exact" or "fast"
};

struct AdapterModuleSummary {
  int layer = 0;
  std::string module;  // inside the decoder layer: "self_attn.q_proj", ...
  int64_t in_features = 0, out_features = 0, rank = 0;
  float scale = 0;  // the adapter's own scale (MLX scale; PEFT lora_alpha / r, or / sqrt(r) with rsLoRA)
};
struct AdapterSummary {
  int id = 0;
  std::string name;    // as given to load_adapter (default: the directory or id)
  std::string dir;     // resolved directory
  std::string format;  // "mlx" or "peft"
  std::vector<AdapterModuleSummary> modules;
};

class ModelContext {
 public:
  static ModelContext load(const std::string& id_or_dir, const LoadOptions& options = {});

  // Loads a LoRA adapter (a directory or a Hugging Face id; MLX or PEFT format, see docs/lora.md)
  // for this model's text decoder and returns its id for GenerationParams::adapters. The base
  // weights are not copied or changed. Load adapters before generating from several threads.
  int load_adapter(const std::string& id_or_dir, const std::string& name = "", const LoadOptions& options = {});
  const std::vector<AdapterSummary>& adapters() const;
  // Writes this model with `adapters` (at their scales) merged into its weights as a new model
  // directory `out_dir` (one model.safetensors plus the base's other files). Dense weights are fused
  // in float32 and stored in their own dtype; quantized ones are dequantized, fused and re-quantized
  // with their bits and group size, or, with `dequantize`, the whole model is written dense.
  void fuse_adapters(const std::vector<AdapterRef>& adapters, const std::string& out_dir,
                     bool dequantize = false) const;

  const ModelInfoSummary& info() const;
  const TextProcessor& text() const;

  PreparedInput prepare(const UserInput& input) const;
  // Throws when the prompt does not fit the model's context.
  GenerationResult generate(const PreparedInput& input, const GenerationParams& params,
                            const StreamCallback& on_text = nullptr) const;
  GenerationResult generate(const UserInput& input, const GenerationParams& params,
                            const StreamCallback& on_text = nullptr) const;
  // Several prompts at once: all decode in lockstep, one pass over the weights per step for the
  // whole batch (higher total throughput on a memory-bound CPU). Each result equals what
  // generate() gives for that prompt alone with the same params.
  std::vector<GenerationResult> generate_batch(const std::vector<PreparedInput>& inputs,
                                               const GenerationParams& params) const;

  struct Impl;
  std::shared_ptr<Impl> impl;
};

// A conversation that keeps its KV cache between turns (prompt cache): each generation reuses the
// longest cached prefix of its prompt (token ids and, at image/video positions, the media content)
// and prefills only the rest, so a follow-up question about an image costs only the new tokens.
// Answers are those of ModelContext::generate on the same prompt. Not thread-safe: one session per
// conversation; the sessions of one model share its weights and may run on different threads.
class ChatSession {
 public:
  explicit ChatSession(const ModelContext& model, const UserInput::Options& options = {});

  // Appends `turn` (usually a user message) to the history, answers the whole conversation and
  // appends the answer as the assistant's turn (on "cancelled" or an error, the history is left as
  // it was).
  GenerationResult send(UserInput::Message turn, const GenerationParams& params,
                        const StreamCallback& on_text = nullptr);
  // Answers any prepared prompt on this session's cache; the history is left alone.
  GenerationResult generate(const PreparedInput& input, const GenerationParams& params,
                            const StreamCallback& on_text = nullptr);
  // Clears the history (the system message given to set_system stays) and the cache.
  void reset();
  void set_system(const std::string& system);           // the first message of every prompt ("" = none)
  void set_options(const UserInput::Options& options);  // image sizes etc. of later turns
  const std::vector<UserInput::Message>& history() const;
  int64_t cached_tokens() const;  // tokens whose KV rows the cache holds
  size_t cache_bytes() const;
  // Prompt-cache files (as llama.cpp's --prompt-cache, MLX's savePromptCache): safetensors holding
  // the KV rows, with a JSON header naming the model type, a hash of its config.json, the precision
  // and the token ids. load_cache replaces the cache (not the history); a file made for another
  // model, config or precision, or a corrupt or truncated one, throws naming the file and the reason.
  void save_cache(const std::string& path) const;
  void load_cache(const std::string& path);

  struct Impl;
  std::shared_ptr<Impl> impl;
};

// Decode steps of the generations that ran concurrently on one PromptCache.
struct DecodeBatchStats {
  int64_t steps = 0;           // batched passes over the weights
  int64_t sequence_steps = 0;  // tokens they produced (sequence_steps / steps = mean batch size)
  int64_t largest = 0;         // the largest batch
};

// Prompt cache and continuous batching for concurrent requests (a server). Finished generations
// keep their KV cache here, and a request whose prompt shares a prefix with one of them (token ids
// and media content) takes it over and prefills only the rest. A cached sequence serves one request
// at a time, so requests never see each other's state. Bounded by `max_bytes` of KV cache, least
// recently used first out; 0 disables the cache (not the batching).
// generate() may be called from several threads at once: their decode steps run together, one pass
// over the weights for all (generations join and leave at any step), and a prompt yields the engine
// to the others' steps between its chunks (UserInput::Options::prefill_chunk). Each result is what
// the generation gives alone.
class PromptCache {
 public:
  PromptCache(const ModelContext& model, size_t max_bytes);
  GenerationResult generate(const PreparedInput& input, const GenerationParams& params,
                            const StreamCallback& on_text = nullptr) const;
  size_t bytes() const;    // KV cache memory held now (<= max_bytes)
  size_t entries() const;  // sequences held now
  DecodeBatchStats decode_stats() const;

  struct Impl;
  std::shared_ptr<Impl> impl;
};

// Peak resident memory of this process (VmHWM from /proc/self/status), 0 when unknown.
int64_t peak_memory_bytes();

}  // namespace vlm
