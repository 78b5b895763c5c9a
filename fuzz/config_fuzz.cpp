// config.json parsing for every model family and for the quantization settings.
#include <cstdint>
#include <string>

#include "core/error.h"
#include "io/checkpoint.h"
#include "models/paligemma/paligemma.h"
#include "models/qwen2_vl/qwen2_vl.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nlohmann::json config;
  try {
    config = nlohmann::json::parse(data, data + size);
  } catch (const nlohmann::json::exception&) {
    return 0;
  }
  try {
    vlm::Qwen2VLConfig::from_json(config, "config.json");
  } catch (const vlm::Error&) {
  }
  try {
    vlm::PaliGemmaConfig::from_json(config, "config.json");
  } catch (const vlm::Error&) {
  }
  try {
    auto q = vlm::QuantConfig::from_model_config(config, "config.json");
    q.for_module("language_model.model.layers.0.self_attn.q_proj");
    q.for_module("vision_tower.blocks.0.mlp.fc1");
  } catch (const vlm::Error&) {
  }
  return 0;
}
