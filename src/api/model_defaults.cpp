#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "models/registry.h"
#include "vlm/vlm.hpp"

namespace vlm {

namespace {

struct DefaultsRegistry {
  std::mutex mutex;
  std::map<std::string, ModelDefaults> by_id;
  DefaultsRegistry() {
    ModelDefaults paligemma;
    paligemma.max_tokens = 100;
    paligemma.description = "PaliGemma 3B mix, 448 px, MLX 8-bit (prompts such as \"caption en\", \"detect cat\")";
    by_id["mlx-community/paligemma-3b-mix-448-8bit"] = paligemma;
    ModelDefaults qwen;
    qwen.max_tokens = 256;
    qwen.description = "Qwen2-VL 2B Instruct, MLX 4-bit (chat; images and videos)";
    by_id["mlx-community/Qwen2-VL-2B-Instruct-4bit"] = qwen;
    // Qwen2.5-VL: chat with images and videos; greedy by default as everywhere here.
    for (auto [id, what] : {std::pair{"mlx-community/Qwen2.5-VL-3B-Instruct-4bit", "3B Instruct, MLX 4-bit"},
                            std::pair{"mlx-community/Qwen2.5-VL-3B-Instruct-8bit", "3B Instruct, MLX 8-bit"},
                            std::pair{"Qwen/Qwen2.5-VL-3B-Instruct", "3B Instruct, bf16"},
                            std::pair{"Qwen/Qwen2.5-VL-7B-Instruct", "7B Instruct, bf16"}}) {
      ModelDefaults d;
      d.max_tokens = 256;
      d.description = std::string("Qwen2.5-VL ") + what + " (chat; images and videos, window attention)";
      by_id[id] = d;
    }
    // Gemma 3: the QAT 4-bit entries of Apple's MLX Swift VLM registry and the original checkpoints.
    for (const char* size : {"4b", "12b", "27b"}) {
      ModelDefaults gemma;
      gemma.max_tokens = 256;
      gemma.description = std::string("Gemma 3 ") + size + " it, QAT MLX 4-bit (chat; several images, 896 px)";
      by_id[std::string("mlx-community/gemma-3-") + size + "-it-qat-4bit"] = gemma;
      gemma.description = std::string("Gemma 3 ") + size + " it, bf16 (chat; several images, 896 px)";
      by_id[std::string("google/gemma-3-") + size + "-it"] = gemma;
    }
  }
};

DefaultsRegistry& defaults_registry() {
  static DefaultsRegistry r;
  return r;
}

}  // namespace

void register_model_defaults(const std::string& model_id, const ModelDefaults& defaults) {
  auto& r = defaults_registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  r.by_id[model_id] = defaults;
}

std::optional<ModelDefaults> find_model_defaults(const std::string& model_id) {
  auto& r = defaults_registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  auto it = r.by_id.find(model_id);
  if (it == r.by_id.end()) return std::nullopt;
  return it->second;
}

std::vector<std::pair<std::string, ModelDefaults>> known_models() {
  auto& r = defaults_registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  return {r.by_id.begin(), r.by_id.end()};
}

std::vector<std::string> supported_model_types() {
  return registered_model_types();
}

}  // namespace vlm
