// Where a model lives (local directory or Hugging Face cache) and what it holds, without loading weights.
#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "core/error.h"
#include "core/thread_pool.h"
#include "io/checkpoint.h"
#include "io/hub.h"
#include "io/json_file.h"
#include "vlm/vlm.hpp"

namespace vlm {

namespace {

namespace fs = std::filesystem;

HubOptions hub_options(const LoadOptions& options) {
  HubOptions h = HubOptions::from_env();
  if (options.offline) h.offline = true;
  if (!options.revision.empty()) h.revision = options.revision;
  return h;
}

const json* find_quantization(const json& config) {
  for (const char* key : {"quantization", "quantization_config"}) {
    auto it = config.find(key);
    if (it != config.end() && it->is_object()) return &*it;
  }
  return nullptr;
}

int64_t context_length_of(const json& config) {
  for (const json* c : {&config, config.contains("text_config") ? &config["text_config"] : nullptr}) {
    if (!c || !c->is_object()) continue;
    auto it = c->find("max_position_embeddings");
    if (it != c->end() && it->is_number_integer()) return it->get<int64_t>();
  }
  return 0;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

std::string resolve_model_dir(const std::string& id_or_dir, const LoadOptions& options) {
  if (id_or_dir.empty()) fail("no model given (a model directory or a Hugging Face id such as org/name)");
  std::error_code ec;
  if (fs::is_directory(id_or_dir, ec)) return id_or_dir;
  if (fs::exists(id_or_dir, ec)) fail("model '", id_or_dir, "' is a file, not a model directory");
  if (!looks_like_repo_id(id_or_dir))
    fail("model not found: '", id_or_dir,
         "' is neither a model directory nor a Hugging Face model id (org/name); "
         "download one with `vlm download org/name`");
  HubOptions hub = hub_options(options);
  try {
    return resolve_model(id_or_dir, hub);
  } catch (const Error& e) {
    if (hub.offline)
      fail("model '", id_or_dir, "' is not available offline: ", e.what(), ". Download it first with `vlm download ",
           id_or_dir, "` while online");
    fail("cannot get model '", id_or_dir, "': ", e.what());
  }
}

std::string resolve_adapter_dir(const std::string& id_or_dir, const LoadOptions& options) {
  if (id_or_dir.empty()) fail("no adapter given (an adapter directory or a Hugging Face id such as org/name)");
  std::error_code ec;
  if (fs::is_directory(id_or_dir, ec)) return id_or_dir;
  if (!looks_like_repo_id(id_or_dir))
    fail("adapter not found: '", id_or_dir, "' is neither a directory nor a Hugging Face id (org/name)");
  try {
    return resolve_adapter(id_or_dir, hub_options(options));
  } catch (const Error& e) {
    fail("cannot get adapter '", id_or_dir, "': ", e.what());
  }
}

std::string download_model(const std::string& model_id, const LoadOptions& options) {
  if (!looks_like_repo_id(model_id)) fail("'", model_id, "' is not a Hugging Face model id (expected org/name)");
  return resolve_model_dir(model_id, options);
}

ModelSummary inspect_model(const std::string& id_or_dir, const LoadOptions& options) {
  ModelSummary s;
  s.dir = resolve_model_dir(id_or_dir, options);
  Checkpoint ckpt = Checkpoint::open(s.dir);
  const json& config = ckpt.config();
  std::string where = s.dir + "/config.json";
  s.model_type = json_get<std::string>(config, "model_type", "", where);
  s.architectures = json_get<std::vector<std::string>>(config, "architectures", {}, where);
  s.context_length = context_length_of(config);
  const QuantConfig& quant = ckpt.quantization();
  if (const json* q = find_quantization(config)) {
    s.quantized = true;
    s.quant_bits = json_get<int>(*q, "bits", 0, where);
    s.quant_group_size = json_get<int>(*q, "group_size", 0, where);
  }
  for (const auto& name : ckpt.names()) {
    if (ends_with(name, ".scales") || ends_with(name, ".biases")) {
      std::string module = name.substr(0, name.size() - 7);
      if (ckpt.has(module + ".weight") && ckpt.has(module + ".scales")) continue;  // quantization metadata
    }
    Tensor t = ckpt.get(name);
    int64_t n = t.numel();
    if (ends_with(name, ".weight") && t.dtype() == DType::U32) {
      std::string module = name.substr(0, name.size() - 7);
      if (ckpt.has(module + ".scales")) {
        auto spec = quant.for_module(module);
        int bits = spec ? spec->bits : (s.quant_bits > 0 ? s.quant_bits : 4);
        n = n * 32 / bits;  // packed words -> weights
      }
    }
    s.num_parameters += n;
  }
  std::vector<fs::directory_entry> entries;
  for (const auto& e : fs::directory_iterator(s.dir)) entries.push_back(e);
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.path() < b.path(); });
  for (const auto& e : entries) {
    std::error_code ec;
    if (!fs::is_regular_file(e.path(), ec)) continue;  // follows the hub cache's symlinks
    s.files.push_back({e.path().filename().string(), int64_t(fs::file_size(e.path(), ec))});
  }
  return s;
}

}  // namespace vlm
