// The two adapter file formats (MLX and Hugging Face PEFT) resolved into per-layer LoRA modules
// of the text decoder. Rules follow mlx-lm / mlx-vlm / MLXLMCommon and PEFT (see docs/lora.md).
#include <cmath>
#include <filesystem>
#include <map>
#include <regex>
#include <set>

#include "core/error.h"
#include "io/json_file.h"
#include "io/safetensors.h"
#include "nn/decoder.h"
#include "nn/lora.h"

namespace vlm::nn {

namespace {

namespace fs = std::filesystem;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
bool starts_with(const std::string& s, const std::string& prefix) {
  return s.rfind(prefix, 0) == 0;
}

// A module path in any known naming, resolved to (layer, slot) of the text decoder.
struct Target {
  int layer = -1, slot = -1;
};

// Decoder prefixes of the namings in use: mlx-vlm and HF <= 4.51 PaliGemma/Gemma 3
// ("language_model.model."), HF >= 4.52 ("model.language_model."), HF <= 4.51 Qwen2-VL and text-only
// models ("model."), a bare language model ("language_model.").
Target resolve_module(const std::string& module, const std::string& file, const std::string& tensor) {
  static const char* const kPrefixes[] = {"language_model.model.", "model.language_model.", "language_model.", "model.",
                                          ""};
  for (const char* prefix : kPrefixes) {
    if (!starts_with(module, prefix)) continue;
    const std::string rest = module.substr(std::char_traits<char>::length(prefix));
    if (!starts_with(rest, "layers.")) continue;
    size_t dot = rest.find('.', 7);
    const std::string index = rest.substr(7, dot == std::string::npos ? std::string::npos : dot - 7);
    if (index.empty() || index.size() > 6 || index.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string inner = dot == std::string::npos ? "" : rest.substr(dot + 1);
    for (int s = 0; s < kLoraSlots; ++s)
      if (inner == lora_slot_path(s)) return {std::stoi(index), s};
    fail(file, ": tensor '", tensor, "' adapts '", module, "', which is not a Linear of a decoder layer (",
         "supported: self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj)");
  }
  for (const char* vision : {"visual", "vision_tower", "vision_model", "multi_modal_projector", "merger"})
    if (module.find(vision) != std::string::npos)
      fail(file, ": tensor '", tensor, "' adapts the vision module '", module,
           "'; adapters on the vision tower or projector are not supported (only the text decoder)");
  fail(file, ": tensor '", tensor, "' adapts '", module, "', which is not a module of the text decoder");
}

// A loaded matrix as float32 values in `want` layout, checked against its expected shape.
std::vector<float> matrix(const SafetensorsFile& st, const std::string& name, const Shape& want, bool transpose,
                          const std::string& what) {
  Tensor t = st.tensor(name);
  if (t.dtype() != DType::F32 && t.dtype() != DType::BF16 && t.dtype() != DType::F16)
    fail(st.path(), ": tensor '", name, "' has dtype ", dtype_name(t.dtype()), "; expected F32, BF16 or F16");
  Shape got = t.shape();
  if (transpose && got.size() == 2) std::swap(got[0], got[1]);
  if (got != want) {
    Shape stored = want;
    if (transpose) std::swap(stored[0], stored[1]);
    fail(st.path(), ": tensor '", name, "' has shape ", shape_str(t.shape()), " but ", what, " needs ",
         shape_str(stored));
  }
  if (transpose) t = t.transpose(0, 1);
  return t.contiguous().to_floats();
}

struct Pending {
  std::string module;
  std::string a, b;  // tensor names
};

// Groups "<module><a_suffix>" / "<module><b_suffix>" tensors by module; anything else is an error
// (`dora_hint` names the tensor DoRA adds).
std::map<std::string, Pending> group_tensors(const SafetensorsFile& st, const std::string& a_suffix,
                                             const std::string& b_suffix, const std::string& dora_hint,
                                             const std::string& strip_prefix) {
  std::map<std::string, Pending> out;
  for (const auto& [name, entry] : st.entries()) {
    (void)entry;
    bool is_a = ends_with(name, a_suffix), is_b = ends_with(name, b_suffix);
    if (!is_a && !is_b) {
      if (name.find(dora_hint) != std::string::npos)
        fail(st.path(), ": tensor '", name, "' is a DoRA magnitude; DoRA adapters are not supported");
      fail(st.path(), ": tensor '", name, "' is not a LoRA parameter (expected '*", a_suffix, "' or '*", b_suffix,
           "')");
    }
    std::string module = name.substr(0, name.size() - (is_a ? a_suffix : b_suffix).size());
    if (!strip_prefix.empty()) {
      if (!starts_with(module, strip_prefix))
        fail(st.path(), ": tensor '", name, "' does not start with '", strip_prefix, "'");
      module = module.substr(strip_prefix.size());
    }
    Pending& p = out[module];
    p.module = module;
    (is_a ? p.a : p.b) = name;
  }
  for (const auto& [module, p] : out) {
    if (p.a.empty()) fail(st.path(), ": tensor '", p.b, "' has no matching '", module, a_suffix, "'");
    if (p.b.empty()) fail(st.path(), ": tensor '", p.a, "' has no matching '", module, b_suffix, "'");
  }
  if (out.empty()) fail(st.path(), ": the adapter file holds no LoRA tensors");
  return out;
}

void place(LoraAdapter& ad, const Target& t, LoraModule m, const std::string& module) {
  if (size_t(t.layer) >= ad.layers.size())
    fail(ad.file, ": tensor '", m.a_tensor, "' adapts layer ", t.layer, " but the model has ", ad.layers.size(),
         " decoder layers (an adapter for another model?)");
  auto& slot = ad.layers[size_t(t.layer)][size_t(t.slot)];
  if (slot)
    fail(ad.file, ": module '", module, "' is adapted twice (tensors '", slot->a_tensor, "' and '", m.a_tensor, "')");
  slot = std::move(m);
}

// ------------------------------------------------------------------------------------------------
// MLX

LoraAdapter load_mlx(const std::string& dir, const json& config, const DecoderConfig& cfg) {
  const std::string cpath = dir + "/adapter_config.json";
  LoraAdapter ad;
  ad.dir = dir;
  ad.format = "mlx";
  ad.file = dir + "/adapters.safetensors";
  ad.layers.resize(size_t(cfg.num_layers));
  const std::string type = json_get<std::string>(config, "fine_tune_type", "lora", cpath);
  if (type == "dora") fail(cpath, ": fine_tune_type 'dora': DoRA adapters are not supported");
  if (type != "lora") fail(cpath, ": fine_tune_type '", type, "' is not a LoRA adapter (expected \"lora\")");
  if (!config.contains("lora_parameters") || !config["lora_parameters"].is_object())
    fail(cpath, ": no 'lora_parameters' object (rank, scale, keys)");
  const json& lp = config["lora_parameters"];
  const std::string lwhere = cpath + " lora_parameters";
  const int64_t rank = json_get<int64_t>(lp, "rank", 0, lwhere);
  const double scale = json_get<double>(lp, "scale", 20.0, lwhere);  // mlx-lm's default
  if (!std::isfinite(scale)) fail(cpath, ": lora_parameters.scale is not finite");
  const int num_layers = json_get<int>(config, "num_layers", 16, cpath);  // mlx-lm's default
  std::optional<std::set<std::string>> keys;
  if (lp.contains("keys") && !lp["keys"].is_null()) keys = json_get<std::set<std::string>>(lp, "keys", {}, lwhere);
  // mlx-vlm writes keys as full module paths and ignores num_layers; mlx-lm keys are layer-relative.
  bool full_paths = false;
  if (keys)
    for (const std::string& k : *keys) full_paths |= starts_with(k, "language_model.");
  const int first_layer = num_layers <= 0 || num_layers >= cfg.num_layers ? 0 : cfg.num_layers - num_layers;

  auto st = SafetensorsFile::open(ad.file);
  for (const auto& [module, p] : group_tensors(*st, ".lora_a", ".lora_b", ".m", "")) {
    Target t = resolve_module(module, ad.file, p.a);
    if (full_paths) {
      if (!keys->count(module))
        fail(ad.file, ": tensor '", p.a, "' adapts '", module,
             "', which adapter_config.json lora_parameters.keys does not list");
    } else {
      if (keys && !keys->count(lora_slot_path(t.slot)))
        fail(ad.file, ": tensor '", p.a, "' adapts '", lora_slot_path(t.slot),
             "', which adapter_config.json lora_parameters.keys does not list");
      if (t.layer < first_layer)
        fail(ad.file, ": tensor '", p.a, "' adapts layer ", t.layer,
             " but adapter_config.json num_layers = ", num_layers, " selects only the last ", num_layers, " of ",
             cfg.num_layers, " layers");
    }
    const auto [in, out] = lora_slot_dims(cfg, t.slot);
    Tensor a0 = st->tensor(p.a);
    const int64_t r = rank > 0 ? rank : (a0.ndim() == 2 ? a0.dim(1) : 0);
    if (r <= 0) fail(ad.file, ": tensor '", p.a, "' has shape ", shape_str(a0.shape()), "; expected [in, rank]");
    const std::string what = "module '" + module + "' (in " + std::to_string(in) + ", out " + std::to_string(out) +
                             ", rank " + std::to_string(r) + ")";
    const std::vector<float> a = matrix(*st, p.a, {r, in}, true, what);  // A first: a rank error names A
    LoraModule m = LoraModule::make(r, float(scale), a, matrix(*st, p.b, {out, r}, true, what), in, out,
                                    ad.file + ": '" + module + "'");
    m.a_tensor = p.a;
    m.b_tensor = p.b;
    place(ad, t, std::move(m), module);
  }
  return ad;
}

// ------------------------------------------------------------------------------------------------
// PEFT

bool regex_full(const std::string& pattern, const std::string& text, const std::string& where) {
  try {
    return std::regex_match(text, std::regex(pattern, std::regex::ECMAScript));
  } catch (const std::regex_error& e) {
    fail(where, ": invalid regular expression '", pattern, "': ", e.what());
  }
}

// PEFT's check_target_module_exists for one of target_modules / exclude_modules.
bool peft_selects(const json& targets, const std::string& module, const std::string& where) {
  if (targets.is_string()) {
    const std::string s = targets.get<std::string>();
    if (s == "all-linear") return true;
    return regex_full(s, module, where);
  }
  if (targets.is_array()) {
    for (const json& t : targets) {
      if (!t.is_string()) fail(where, ": entries must be strings");
      const std::string s = t.get<std::string>();
      if (module == s || ends_with(module, "." + s)) return true;
    }
    return false;
  }
  fail(where, ": expected a list of module names or a regular expression");
}

// PEFT >= 0.15 get_pattern_key: the first key with re.match(rf"(.*\.)?({key})$", module).
template <typename T>
std::optional<T> peft_pattern(const json& patterns, const std::string& module, const std::string& where) {
  if (!patterns.is_object()) return std::nullopt;
  for (auto it = patterns.begin(); it != patterns.end(); ++it)
    if (regex_full("(.*\\.)?(" + it.key() + ")", module, where))
      return json_detail::get_checked<T>(it.value(), it.key(), where);
  return std::nullopt;
}

LoraAdapter load_peft(const std::string& dir, const json& config, const DecoderConfig& cfg) {
  const std::string cpath = dir + "/adapter_config.json";
  LoraAdapter ad;
  ad.dir = dir;
  ad.format = "peft";
  ad.file = dir + "/adapter_model.safetensors";
  ad.layers.resize(size_t(cfg.num_layers));
  const std::string type = json_get<std::string>(config, "peft_type", "LORA", cpath);
  if (type != "LORA") fail(cpath, ": peft_type '", type, "' is not supported (only \"LORA\")");
  if (json_get<bool>(config, "use_dora", false, cpath))
    fail(cpath, ": use_dora is true: DoRA adapters are not supported");
  if (config.contains("modules_to_save") && !config["modules_to_save"].is_null() &&
      !(config["modules_to_save"].is_array() && config["modules_to_save"].empty()))
    fail(cpath, ": modules_to_save is set (full copies of ", config["modules_to_save"].dump(),
         "); such adapters are not supported");
  if (json_get<std::string>(config, "bias", "none", cpath) != "none")
    fail(cpath, ": bias '", config["bias"].get<std::string>(), "' is not supported (only \"none\")");
  if (json_get<bool>(config, "lora_bias", false, cpath)) fail(cpath, ": lora_bias is true; not supported");
  if (json_get<bool>(config, "fan_in_fan_out", false, cpath)) fail(cpath, ": fan_in_fan_out is true; not supported");
  if (config.contains("layer_replication") && !config["layer_replication"].is_null())
    fail(cpath, ": layer_replication is set; not supported");
  const int64_t r_default = json_get<int64_t>(config, "r", 8, cpath);
  const double alpha_default = json_get<double>(config, "lora_alpha", 8.0, cpath);
  const bool rslora = json_get<bool>(config, "use_rslora", false, cpath);
  const json targets = config.value("target_modules", json());
  const json excluded = config.value("exclude_modules", json());
  std::optional<std::set<int>> layers_to_transform;
  if (config.contains("layers_to_transform") && !config["layers_to_transform"].is_null()) {
    const json& l = config["layers_to_transform"];
    layers_to_transform = l.is_array() ? json_get<std::set<int>>(config, "layers_to_transform", {}, cpath)
                                       : std::set<int>{json_get<int>(config, "layers_to_transform", 0, cpath)};
  }

  auto st = SafetensorsFile::open(ad.file);
  for (const auto& [module, p] :
       group_tensors(*st, ".lora_A.weight", ".lora_B.weight", "lora_magnitude_vector", "base_model.model.")) {
    Target t = resolve_module(module, ad.file, p.a);
    // target_modules and the patterns are matched against the adapter's own module naming.
    if (!targets.is_null() && !peft_selects(targets, module, cpath + " target_modules"))
      fail(ad.file, ": tensor '", p.a, "' adapts '", module, "', which adapter_config.json target_modules (",
           targets.dump(), ") does not select");
    if (!excluded.is_null() && peft_selects(excluded, module, cpath + " exclude_modules"))
      fail(ad.file, ": tensor '", p.a, "' adapts '", module, "', which adapter_config.json exclude_modules excludes");
    if (layers_to_transform && !layers_to_transform->count(t.layer))
      fail(ad.file, ": tensor '", p.a, "' adapts layer ", t.layer, ", which layers_to_transform does not list");
    const int64_t r = peft_pattern<int64_t>(config.value("rank_pattern", json()), module, cpath + " rank_pattern")
                          .value_or(r_default);
    const double alpha = peft_pattern<double>(config.value("alpha_pattern", json()), module, cpath + " alpha_pattern")
                             .value_or(alpha_default);
    if (r <= 0) fail(cpath, ": rank ", r, " for module '", module, "' must be positive");
    const auto [in, out] = lora_slot_dims(cfg, t.slot);
    const std::string what = "module '" + module + "' (in " + std::to_string(in) + ", out " + std::to_string(out) +
                             ", rank " + std::to_string(r) + ")";
    const float scale = float(rslora ? alpha / std::sqrt(double(r)) : alpha / double(r));
    const std::vector<float> a = matrix(*st, p.a, {r, in}, false, what);  // A first: a rank error names A
    LoraModule m =
        LoraModule::make(r, scale, a, matrix(*st, p.b, {out, r}, false, what), in, out, ad.file + ": '" + module + "'");
    m.a_tensor = p.a;
    m.b_tensor = p.b;
    place(ad, t, std::move(m), module);
  }
  return ad;
}

}  // namespace

LoraAdapter load_lora_adapter(const std::string& dir, const DecoderConfig& cfg) {
  const fs::path d(dir);
  if (!fs::is_directory(d)) fail("adapter '", dir, "' is not a directory");
  const std::string cpath = (d / "adapter_config.json").string();
  if (!fs::exists(cpath)) fail(dir, ": not an adapter directory (no adapter_config.json)");
  json config = read_json_file(cpath);
  if (!config.is_object()) fail(cpath, ": expected a JSON object");
  const bool mlx = fs::exists(d / "adapters.safetensors"), peft = fs::exists(d / "adapter_model.safetensors");
  if (mlx && peft) fail(dir, ": holds both adapters.safetensors (MLX) and adapter_model.safetensors (PEFT)");
  if (mlx) return load_mlx(dir, config, cfg);
  if (peft) return load_peft(dir, config, cfg);
  if (config.contains("peft_type") || fs::exists(d / "adapter_model.bin"))
    fail(dir, ": no adapter_model.safetensors (PEFT .bin adapters are not supported; convert to safetensors)");
  fail(dir, ": no adapters.safetensors (MLX) or adapter_model.safetensors (PEFT)");
}

}  // namespace vlm::nn
