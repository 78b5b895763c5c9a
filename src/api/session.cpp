// Prompt caches of the public API: ChatSession (a conversation whose sequence lives from turn to
// turn) and PromptCache (a pool of finished sequences shared by concurrent requests).
#include <filesystem>
#include <fstream>

#include "api/internal.h"
#include "core/error.h"
#include "core/sha256.h"
#include "generate/prompt_cache.h"
#include "io/safetensors.h"

namespace vlm {

namespace {

constexpr const char* kCacheFormat = "vlm.cpp prompt cache";

// What a prompt-cache file must agree on with the model that loads it, in the order it is checked.
std::vector<std::pair<std::string, std::string>> cache_identity(const ModelContext::Impl& m) {
  const std::string config = m.dir + "/config.json";
  std::ifstream f(config, std::ios::binary);
  if (!f) fail(config, ": cannot read");
  const std::string bytes((std::istreambuf_iterator<char>(f)), {});
  return {{"format", kCacheFormat},
          {"version", "1"},
          {"model_type", m.info.model_type},
          {"config_sha256", sha256_hex(bytes.data(), bytes.size())},
          {"precision", m.info.precision}};
}

}  // namespace

struct ChatSession::Impl {
  std::shared_ptr<ModelContext::Impl> model;
  UserInput::Options options;
  std::string system;
  std::vector<UserInput::Message> history;
  std::unique_ptr<Sequence> sequence;

  Sequence& seq() {
    if (!sequence) sequence = model->model->start(model->env);
    return *sequence;
  }
};

ChatSession::ChatSession(const ModelContext& model, const UserInput::Options& options) {
  if (!model.impl) fail("ChatSession: the model is not loaded");
  impl = std::make_shared<Impl>();
  impl->model = model.impl;
  impl->options = options;
}

GenerationResult ChatSession::generate(const PreparedInput& input, const GenerationParams& params,
                                       const StreamCallback& on_text) {
  if (!input.impl) fail("ChatSession::generate: the input was not prepared (use ModelContext::prepare)");
  try {
    return generate_on(*impl->model, input.impl->input, params, on_text, &impl->seq());
  } catch (...) {
    impl->sequence.reset();  // a failed prefill may leave the cache half written
    throw;
  }
}

GenerationResult ChatSession::send(UserInput::Message turn, const GenerationParams& params,
                                   const StreamCallback& on_text) {
  UserInput in;
  if (!impl->system.empty()) in.messages.push_back({"system", {UserInput::Part::text_part(impl->system)}});
  in.messages.insert(in.messages.end(), impl->history.begin(), impl->history.end());
  in.messages.push_back(turn);
  in.options = impl->options;
  ModelContext ctx;
  ctx.impl = impl->model;
  GenerationResult r = generate(ctx.prepare(in), params, on_text);
  if (r.finish_reason != "cancelled") {
    impl->history.push_back(std::move(turn));
    impl->history.push_back({"assistant", {UserInput::Part::text_part(r.text)}});
  }
  return r;
}

void ChatSession::reset() {
  impl->history.clear();
  impl->sequence.reset();
}

void ChatSession::save_cache(const std::string& path) const {
  if (!impl->sequence || impl->sequence->length() == 0) fail(path, ": nothing to save: the session has no cache yet");
  const std::string tmp = path + ".tmp";
  const auto identity = cache_identity(*impl->model);
  impl->sequence->save_cache(tmp, {identity.begin(), identity.end()});
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) fail(path, ": cannot write the prompt cache: ", ec.message());
}

void ChatSession::load_cache(const std::string& path) {
  std::shared_ptr<SafetensorsFile> file = SafetensorsFile::open(path);
  const auto& meta = file->metadata();
  auto get = [&](const std::string& key) {
    auto it = meta.find(key);
    return it == meta.end() ? std::string() : it->second;
  };
  if (get("format") != kCacheFormat) fail(path, ": not a vlm.cpp prompt cache (no format \"", kCacheFormat, "\")");
  if (get("version") != "1") fail(path, ": prompt cache version '", get("version"), "' is not supported (1)");
  for (const auto& [key, want] : cache_identity(*impl->model))
    if (get(key) != want)
      fail(path, ": the prompt cache was made for another model: its ", key, " is '", get(key), "', this model's is '",
           want, "'; delete the file or use another path");
  std::unique_ptr<Sequence> seq = impl->model->model->start(impl->model->env);
  seq->load_cache(*file);
  impl->sequence = std::move(seq);
}

void ChatSession::set_system(const std::string& system) {
  impl->system = system;
}

void ChatSession::set_options(const UserInput::Options& options) {
  impl->options = options;
}

const std::vector<UserInput::Message>& ChatSession::history() const {
  return impl->history;
}

int64_t ChatSession::cached_tokens() const {
  return impl->sequence ? impl->sequence->length() : 0;
}

size_t ChatSession::cache_bytes() const {
  return impl->sequence ? impl->sequence->cache_bytes() : 0;
}

struct PromptCache::Impl {
  Impl(std::shared_ptr<ModelContext::Impl> m, size_t max_bytes)
      : model(std::move(m)), pool(max_bytes), batcher(*model->model) {}
  std::shared_ptr<ModelContext::Impl> model;
  SequencePool pool;
  StepBatcher batcher;  // concurrent generations decode together
};

PromptCache::PromptCache(const ModelContext& model, size_t max_bytes) {
  if (!model.impl) fail("PromptCache: the model is not loaded");
  impl = std::make_shared<Impl>(model.impl, max_bytes);
}

GenerationResult PromptCache::generate(const PreparedInput& input, const GenerationParams& params,
                                       const StreamCallback& on_text) const {
  if (!input.impl) fail("PromptCache::generate: the input was not prepared (use ModelContext::prepare)");
  const Model& model = *impl->model->model;
  std::unique_ptr<Sequence> seq;
  if (impl->pool.max_bytes() > 0) seq = impl->pool.take(model.prompt_keys(input.impl->input), nullptr);
  if (!seq) seq = model.start(impl->model->env);
  GenerationResult r = generate_on(*impl->model, input.impl->input, params, on_text, seq.get(), &impl->batcher);
  if (impl->pool.max_bytes() > 0) impl->pool.put(std::move(seq));  // not after an error: it may be half written
  return r;
}

size_t PromptCache::bytes() const {
  return impl->pool.bytes();
}

size_t PromptCache::entries() const {
  return impl->pool.size();
}

DecodeBatchStats PromptCache::decode_stats() const {
  return impl->batcher.stats();
}

}  // namespace vlm
