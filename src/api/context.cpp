#include <chrono>
#include <cmath>
#include <filesystem>

#include "api/internal.h"
#include "core/error.h"
#include "generate/generator.h"
#include "io/json_file.h"
#include "models/registry.h"
#include "text/chat_template.h"

namespace vlm {

namespace {

namespace fs = std::filesystem;

void add_ids(std::vector<int32_t>& out, const json& v) {
  auto add = [&](const json& x) {
    if (!x.is_number_integer()) return;
    int32_t id = x.get<int32_t>();
    if (std::find(out.begin(), out.end(), id) == out.end()) out.push_back(id);
  };
  if (v.is_array())
    for (const auto& x : v) add(x);
  else
    add(v);
}

class DetokenizerStream : public TextStream {
 public:
  explicit DetokenizerStream(const Tokenizer& tok) : detok_(tok, true) {}
  std::string push(int32_t id) override { return detok_.push(id); }
  std::string flush() override { return detok_.flush(); }

 private:
  StreamingDetokenizer detok_;
};

const Tokenizer& tokenizer_of(const TextProcessor& t) {
  if (!t.impl) fail("TextProcessor used before load()");
  return t.impl->tokenizer;
}

}  // namespace

std::vector<int32_t> collect_eos_ids(const std::string& dir, const ModelInfo& info, const Tokenizer& tokenizer) {
  std::vector<int32_t> ids;
  for (int32_t id : info.eos_ids) add_ids(ids, id);
  for (const char* name : {"config.json", "generation_config.json"}) {
    fs::path p = fs::path(dir) / name;
    if (!fs::exists(p)) continue;
    json j = read_json_file(p.string());
    if (j.contains("eos_token_id")) add_ids(ids, j["eos_token_id"]);
    if (j.contains("text_config") && j["text_config"].is_object() && j["text_config"].contains("eos_token_id"))
      add_ids(ids, j["text_config"]["eos_token_id"]);
  }
  if (auto eos = tokenizer.eos_id()) add_ids(ids, *eos);
  for (const std::string& token : extra_eos_tokens(info.model_type))
    if (auto id = tokenizer.token_to_id(token)) add_ids(ids, *id);
  return ids;
}

int64_t peak_memory_bytes() {
  return read_peak_rss_bytes();
}

// ---------------------------------------------------------------------------------------------

TextProcessor TextProcessor::load(const std::string& id_or_dir, const LoadOptions& options) {
  TextProcessor t;
  t.impl = std::make_shared<Impl>(Impl{resolve_model_dir(id_or_dir, options), Tokenizer()});
  t.impl->tokenizer = Tokenizer::from_dir(t.impl->dir);
  return t;
}

std::vector<int32_t> TextProcessor::encode(const std::string& text, bool add_special_tokens) const {
  return tokenizer_of(*this).encode(text, add_special_tokens);
}

std::string TextProcessor::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  const Tokenizer& tok = tokenizer_of(*this);
  for (int32_t id : ids)
    if (id < 0 || id >= tok.vocab_size())
      fail("token id ", id, " is outside the vocabulary (0..", tok.vocab_size() - 1, ")");
  return tok.decode(ids, skip_special_tokens);
}

std::string TextProcessor::token_string(int32_t id) const {
  return tokenizer_of(*this).id_to_token(id);
}

std::string TextProcessor::apply_chat_template(const std::string& messages_json, bool add_generation_prompt,
                                               bool add_vision_id) const {
  const Tokenizer& tok = tokenizer_of(*this);
  std::string source = tok.chat_template();
  if (source.empty())
    fail(impl->dir,
         ": the model has no chat template (tokenizer_config.json, chat_template.json or "
         "chat_template.jinja)");
  json messages;
  try {
    messages = parse_json_limited(messages_json, "messages");
  } catch (const json::exception& e) {
    fail("messages: invalid JSON: ", e.what());
  }
  if (messages.is_object() && messages.contains("messages")) messages = messages["messages"];
  if (!messages.is_array()) fail("messages: expected a JSON list of {\"role\", \"content\"}");
  json ctx = {{"messages", messages},
              {"add_generation_prompt", add_generation_prompt},
              {"bos_token", tok.bos_token()},
              {"eos_token", tok.eos_token()}};
  if (add_vision_id) ctx["add_vision_id"] = true;
  return render_chat_template(source, ctx);
}

// ---------------------------------------------------------------------------------------------

const std::vector<int32_t>& PreparedInput::ids() const {
  return impl->input.ids;
}
const std::string& PreparedInput::prompt_text() const {
  return impl->input.prompt_text;
}
int64_t PreparedInput::num_images() const {
  return int64_t(impl->input.images.size());
}
int64_t PreparedInput::num_videos() const {
  return int64_t(impl->input.videos.size());
}

// ---------------------------------------------------------------------------------------------

ModelContext ModelContext::load(const std::string& id_or_dir, const LoadOptions& options) {
  auto t0 = std::chrono::steady_clock::now();
  if (options.threads < 0) fail("threads must be >= 0, got ", options.threads);
  auto impl = std::make_shared<Impl>();
  const Precision precision =
      options.precision.empty() ? precision_from_env(Precision::kFast) : parse_precision(options.precision);
  impl->env = Compute::make(options.threads, precision);
  impl->dir = resolve_model_dir(id_or_dir, options);
  if (!fs::exists(fs::path(impl->dir) / "config.json")) fail(impl->dir, ": not a model directory (no config.json)");
  impl->checkpoint = std::make_shared<Checkpoint>(Checkpoint::open(impl->dir));
  LoadOptions local = options;
  impl->text = TextProcessor::load(impl->dir, local);
  impl->model = create_model(*impl->checkpoint);
  impl->model->prepare(impl->env);  // repacks weights for the fast kernels; exact: nothing
  if (options.vision_cache_bytes > 0) impl->features = std::make_shared<FeatureCache>(options.vision_cache_bytes);
  impl->processor = create_processor(impl->dir, impl->text.impl->tokenizer, impl->checkpoint->config());
  const ModelInfo& mi = impl->model->info();
  ModelInfoSummary& s = impl->info;
  s.dir = impl->dir;
  s.model_type = mi.model_type;
  s.vocab_size = mi.vocab_size;
  s.context_length = mi.context_length;
  s.num_parameters = mi.num_parameters;
  s.eos_ids = collect_eos_ids(impl->dir, mi, impl->text.impl->tokenizer);
  s.threads = impl->env.num_threads();
  s.precision = precision_name(precision);
  s.load_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  ModelContext ctx;
  ctx.impl = std::move(impl);
  return ctx;
}

int ModelContext::load_adapter(const std::string& id_or_dir, const std::string& name, const LoadOptions& options) {
  if (!impl) fail("load_adapter: the model is not loaded");
  const std::string dir = resolve_adapter_dir(id_or_dir, options);
  auto adapter = impl->model->load_adapter(dir);
  AdapterSummary s;
  s.id = int(impl->adapters.size());
  s.name = name.empty() ? id_or_dir : name;
  s.dir = dir;
  s.format = adapter->format;
  for (size_t l = 0; l < adapter->layers.size(); ++l)
    for (int slot = 0; slot < nn::kLoraSlots; ++slot)
      if (const auto& m = adapter->layers[l][size_t(slot)])
        s.modules.push_back({int(l), nn::lora_slot_path(slot), m->in_features(), m->out_features(), m->rank, m->scale});
  impl->adapters.push_back(std::move(adapter));
  impl->adapter_info.push_back(std::move(s));
  return impl->adapter_info.back().id;
}

const std::vector<AdapterSummary>& ModelContext::adapters() const {
  return impl->adapter_info;
}

const ModelInfoSummary& ModelContext::info() const {
  return impl->info;
}
const TextProcessor& ModelContext::text() const {
  return impl->text;
}

PreparedInput ModelContext::prepare(const UserInput& input) const {
  if (input.messages.empty()) fail("prepare: the input has no messages");
  PreparedInput p;
  p.impl = std::make_shared<PreparedInput::Impl>();
  ProcessingOptions options = to_processing_options(input.options);
  options.pool = impl->env.pool.get();
  p.impl->input = impl->processor->prepare(to_chat_messages(input), options);
  p.impl->input.prefill_chunk = input.options.prefill_chunk;
  p.impl->input.feature_cache = impl->features;
  return p;
}

namespace {

// The model, its EOS ids and the adapters `params` selects (checked against those loaded).
GenerationSetup generation_setup(const ModelContext::Impl& impl, const GenerationParams& params) {
  GenerationSetup setup;
  setup.model = impl.model.get();
  setup.env = impl.env;
  setup.eos_ids = impl.info.eos_ids;
  const Tokenizer* tok = &impl.text.impl->tokenizer;
  setup.token_string = [tok](int32_t id) { return tok->id_to_token(id); };
  for (const AdapterRef& a : params.adapters) {
    if (a.id < 0 || size_t(a.id) >= impl.adapters.size())
      fail("generate: adapter id ", a.id, " is not loaded (this model has ", impl.adapters.size(), " adapters)");
    if (!std::isfinite(a.scale)) fail("generate: the scale of adapter ", a.id, " is not finite");
    setup.adapters.push_back({impl.adapters[size_t(a.id)], a.scale});
  }
  return setup;
}

}  // namespace

GenerationResult generate_on(const ModelContext::Impl& model, const ModelInput& input, const GenerationParams& params,
                             const StreamCallback& on_text, Sequence* sequence, StepBatcher* batcher) {
  DetokenizerStream text(model.text.impl->tokenizer);
  GenerationSetup setup = generation_setup(model, params);
  setup.text = &text;
  setup.sequence = sequence;
  setup.batcher = batcher;
  return generate_tokens(setup, input, params, on_text);
}

GenerationResult ModelContext::generate(const PreparedInput& input, const GenerationParams& params,
                                        const StreamCallback& on_text) const {
  if (!input.impl) fail("generate: the input was not prepared (use ModelContext::prepare)");
  return generate_on(*impl, input.impl->input, params, on_text, nullptr);
}

std::vector<GenerationResult> ModelContext::generate_batch(const std::vector<PreparedInput>& inputs,
                                                           const GenerationParams& params) const {
  std::vector<const ModelInput*> model_inputs;
  std::vector<std::unique_ptr<DetokenizerStream>> streams;
  std::vector<TextStream*> texts;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].impl) fail("generate_batch: input ", i, " was not prepared (use ModelContext::prepare)");
    model_inputs.push_back(&inputs[i].impl->input);
    streams.push_back(std::make_unique<DetokenizerStream>(impl->text.impl->tokenizer));
    texts.push_back(streams.back().get());
  }
  return generate_batch_tokens(generation_setup(*impl, params), model_inputs, texts, params);
}

GenerationResult ModelContext::generate(const UserInput& input, const GenerationParams& params,
                                        const StreamCallback& on_text) const {
  return generate(prepare(input), params, on_text);
}

}  // namespace vlm
