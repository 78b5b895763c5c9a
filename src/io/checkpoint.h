// A model directory's weights: one or many safetensors files (sharded through
// model.safetensors.index.json, or every *.safetensors present), plus the MLX quantization
// settings from config.json.
#pragma once
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "io/json_file.h"
#include "io/safetensors.h"

namespace vlm {

struct QuantSpec {
  int bits = 4;
  int group_size = 64;
};

// config.json "quantization" (or "quantization_config"): global bits/group_size plus per-module
// overrides keyed by module path, each a {bits, group_size} dict or `false` (not quantized).
class QuantConfig {
 public:
  static QuantConfig from_model_config(const json& config, const std::string& where);
  bool present() const { return global_.has_value() || !overrides_.empty(); }
  // Settings for module `path` (e.g. "language_model.model.layers.0.self_attn.q_proj");
  // nullopt when the module is declared unquantized or no quantization is configured.
  std::optional<QuantSpec> for_module(const std::string& path) const;

 private:
  std::optional<QuantSpec> global_;
  std::map<std::string, std::optional<QuantSpec>> overrides_;
};

class Checkpoint {
 public:
  // Opens `dir`: reads config.json (if present) and maps every weight file.
  static Checkpoint open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  const json& config() const { return config_; }
  const QuantConfig& quantization() const { return quant_; }

  bool has(const std::string& name) const { return where_.count(name) != 0; }
  // The tensor, or an error naming the directory and tensor.
  Tensor get(const std::string& name) const;
  // The tensor, checked against an expected dtype class and shape.
  Tensor get(const std::string& name, const Shape& expected_shape) const;
  std::string file_of(const std::string& name) const;
  std::vector<std::string> names() const;
  size_t total_bytes() const;

 private:
  std::string dir_;
  json config_;
  QuantConfig quant_;
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::string, size_t> where_;  // tensor name -> index into files_
};

}  // namespace vlm
