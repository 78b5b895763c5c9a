#include "models/registry.h"

#include <filesystem>
#include <map>
#include <mutex>

#include "models/gemma3/gemma3.h"
#include "models/paligemma/paligemma.h"
#include "models/qwen2_5_vl/qwen2_5_vl.h"
#include "models/qwen2_vl/qwen2_vl.h"

namespace vlm {

namespace {

struct BuiltinFamily {
  const char* model_type;
  const char* processor_class;  // the processor a checkpoint of this type uses by default
  ModelFactory model;
  ProcessorFactory processor;
  std::vector<std::string> extra_eos_tokens;
};

// One line per model family.
std::vector<BuiltinFamily> builtin_families() {
  return {
      // Qwen2-VL's upstream generation_config.json also stops on <|endoftext|>; the mlx-community
      // conversions dropped that file.
      {"qwen2_vl", "Qwen2VLProcessor", make_qwen2_vl_model, make_qwen2_vl_processor, {"<|endoftext|>"}},
      {"qwen2_5_vl", "Qwen2_5_VLProcessor", make_qwen2_5_vl_model, make_qwen2_5_vl_processor, {"<|endoftext|>"}},
      {"paligemma", "PaliGemmaProcessor", make_paligemma_model, make_paligemma_processor, {}},
      // Gemma 3 ends a turn with <end_of_turn>; older conversions list only <eos> as EOS.
      {"gemma3", "Gemma3Processor", make_gemma3_model, make_gemma3_processor, {"<end_of_turn>"}},
  };
}

struct Registry {
  std::mutex mutex;
  std::map<std::string, ModelFactory> models;
  std::map<std::string, ProcessorFactory> processors;
  std::map<std::string, std::string> default_processor;  // model_type -> processor class
  std::map<std::string, std::vector<std::string>> extra_eos;
  Registry() {
    for (auto& f : builtin_families()) {
      models[f.model_type] = f.model;
      processors[f.processor_class] = f.processor;
      default_processor[f.model_type] = f.processor_class;
      extra_eos[f.model_type] = f.extra_eos_tokens;
    }
  }
};

Registry& registry() {
  static Registry r;
  return r;
}

std::string model_type_of(const json& config, const std::string& where) {
  return json_require<std::string>(config, "model_type", where);
}

}  // namespace

void register_model_type(const std::string& model_type, ModelFactory factory,
                         std::vector<std::string> extra_eos_tokens) {
  std::lock_guard<std::mutex> lock(registry().mutex);
  registry().models[model_type] = std::move(factory);
  registry().extra_eos[model_type] = std::move(extra_eos_tokens);
}

std::vector<std::string> extra_eos_tokens(const std::string& model_type) {
  std::lock_guard<std::mutex> lock(registry().mutex);
  auto it = registry().extra_eos.find(model_type);
  return it == registry().extra_eos.end() ? std::vector<std::string>{} : it->second;
}

void register_processor_class(const std::string& processor_class, ProcessorFactory factory) {
  std::lock_guard<std::mutex> lock(registry().mutex);
  registry().processors[processor_class] = std::move(factory);
}

std::vector<std::string> registered_model_types() {
  std::lock_guard<std::mutex> lock(registry().mutex);
  std::vector<std::string> out;
  for (auto& [k, v] : registry().models) out.push_back(k);
  return out;
}

std::unique_ptr<Model> create_model(const Checkpoint& checkpoint) {
  std::string where = checkpoint.dir() + "/config.json";
  std::string type = model_type_of(checkpoint.config(), where);
  ModelFactory factory;
  {
    std::lock_guard<std::mutex> lock(registry().mutex);
    auto it = registry().models.find(type);
    if (it == registry().models.end()) {
      std::string known;
      for (auto& [k, v] : registry().models) known += (known.empty() ? "" : ", ") + k;
      fail(where, ": unsupported model_type '", type, "' (supported: ", known, ")");
    }
    factory = it->second;
  }
  return factory(checkpoint);
}

std::unique_ptr<Processor> create_processor(const std::string& model_dir, const Tokenizer& tokenizer,
                                            const json& config) {
  namespace fs = std::filesystem;
  std::string cls;
  for (const char* name : {"processor_config.json", "preprocessor_config.json"}) {
    fs::path p = fs::path(model_dir) / name;
    if (!fs::exists(p)) continue;
    json j = read_json_file(p.string());
    if (j.contains("processor_class") && j["processor_class"].is_string()) {
      cls = j["processor_class"].get<std::string>();
      break;
    }
  }
  std::string type = model_type_of(config, model_dir + "/config.json");
  ProcessorFactory factory;
  {
    std::lock_guard<std::mutex> lock(registry().mutex);
    auto& r = registry();
    if (cls.empty() || !r.processors.count(cls)) {
      auto it = r.default_processor.find(type);
      if (it == r.default_processor.end()) {
        if (!cls.empty()) fail(model_dir, ": unsupported processor_class '", cls, "'");
        fail(model_dir, ": no processor known for model_type '", type, "'");
      }
      cls = it->second;
    }
    factory = r.processors.at(cls);
  }
  return factory(model_dir, tokenizer, config);
}

}  // namespace vlm
