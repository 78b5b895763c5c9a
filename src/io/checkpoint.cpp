#include "io/checkpoint.h"

#include <algorithm>
#include <filesystem>

namespace vlm {

namespace fs = std::filesystem;

namespace {
QuantSpec parse_spec(const json& j, const std::string& where) {
  QuantSpec s;
  s.bits = json_require<int>(j, "bits", where);
  s.group_size = json_require<int>(j, "group_size", where);
  static const std::set<int> kBits = {2, 3, 4, 5, 6, 8};
  if (!kBits.count(s.bits)) fail(where, ": unsupported quantization bits ", s.bits, " (2, 3, 4, 5, 6 or 8)");
  if (s.group_size != 32 && s.group_size != 64 && s.group_size != 128)
    fail(where, ": unsupported quantization group_size ", s.group_size, " (32, 64 or 128)");
  if (j.contains("mode") && j["mode"].is_string() && j["mode"] != "affine")
    fail(where, ": unsupported quantization mode '", j["mode"].get<std::string>(), "' (only affine)");
  return s;
}
}  // namespace

QuantConfig QuantConfig::from_model_config(const json& config, const std::string& where) {
  QuantConfig q;
  const json* section = nullptr;
  if (config.contains("quantization")) section = &config["quantization"];
  else if (config.contains("quantization_config")) section = &config["quantization_config"];
  if (!section || section->is_null()) return q;
  std::string w = where + ": quantization";
  if (!section->is_object()) fail(w, " is not an object");
  // Hugging Face quantizers (AWQ, GPTQ, bitsandbytes...) describe other tensor formats; they are
  // not MLX affine quantization, and their modules carry no ".scales" to dispatch on.
  if (section->contains("quant_method")) return q;
  if (section->contains("bits") || section->contains("group_size")) q.global_ = parse_spec(*section, w);
  for (auto& [key, value] : section->items()) {
    if (value.is_boolean()) {
      if (value.get<bool>()) q.overrides_[key] = q.global_;
      else q.overrides_[key] = std::nullopt;
    } else if (value.is_object()) {
      q.overrides_[key] = parse_spec(value, w + "[\"" + key + "\"]");
    }
  }
  return q;
}

std::optional<QuantSpec> QuantConfig::for_module(const std::string& path) const {
  auto it = overrides_.find(path);
  if (it != overrides_.end()) return it->second;
  return global_;
}

Checkpoint Checkpoint::open(const std::string& dir) {
  Checkpoint c;
  c.dir_ = dir;
  if (!fs::is_directory(dir)) fail(dir, ": model directory does not exist");
  fs::path config_path = fs::path(dir) / "config.json";
  if (fs::exists(config_path)) {
    c.config_ = read_json_file(config_path.string());
    c.quant_ = QuantConfig::from_model_config(c.config_, config_path.string());
  }

  std::vector<std::string> files;
  fs::path index = fs::path(dir) / "model.safetensors.index.json";
  if (fs::exists(index)) {
    json idx = read_json_file(index.string());
    if (!idx.contains("weight_map") || !idx["weight_map"].is_object())
      fail(index.string(), ": missing object 'weight_map'");
    std::set<std::string> unique;
    for (auto& [name, file] : idx["weight_map"].items()) {
      if (!file.is_string()) fail(index.string(), ": weight_map entry '", name, "' is not a file name");
      std::string f = file.get<std::string>();
      if (f.find("..") != std::string::npos || f.find('/') != std::string::npos)
        fail(index.string(), ": weight_map entry '", name, "' names a file outside the directory: ", f);
      unique.insert(f);
    }
    for (auto& f : unique) {
      fs::path p = fs::path(dir) / f;
      if (!fs::exists(p)) fail(index.string(), ": shard ", f, " is missing from ", dir);
      files.push_back(p.string());
    }
  } else {
    for (auto& e : fs::directory_iterator(dir))
      if (e.path().extension() == ".safetensors") files.push_back(e.path().string());
    std::sort(files.begin(), files.end());
  }
  if (files.empty()) fail(dir, ": no *.safetensors weight files found");

  for (auto& f : files) {
    c.files_.push_back(SafetensorsFile::open(f));
    for (auto& [name, entry] : c.files_.back()->entries()) {
      auto [it, inserted] = c.where_.emplace(name, c.files_.size() - 1);
      if (!inserted) fail(dir, ": tensor '", name, "' appears in both ", c.files_[it->second]->path(), " and ", f);
    }
  }
  return c;
}

Tensor Checkpoint::get(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) fail(dir_, ": missing tensor '", name, "'");
  return files_[it->second]->tensor(name);
}

Tensor Checkpoint::get(const std::string& name, const Shape& expected) const {
  Tensor t = get(name);
  if (t.shape() != expected)
    fail(file_of(name), ": tensor '", name, "' has shape ", shape_str(t.shape()), " but the config implies ",
         shape_str(expected));
  return t;
}

std::string Checkpoint::file_of(const std::string& name) const {
  auto it = where_.find(name);
  return it == where_.end() ? dir_ : files_[it->second]->path();
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> n;
  for (auto& [k, v] : where_) n.push_back(k);
  return n;
}

size_t Checkpoint::total_bytes() const {
  size_t total = 0;
  for (auto& f : files_)
    for (auto& [k, e] : f->entries()) total += e.end - e.begin;
  return total;
}

}  // namespace vlm
