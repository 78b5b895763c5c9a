#include "models/common.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "io/json_file.h"

namespace vlm {

namespace {
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

void add_ids(const json& value, std::vector<int32_t>& out, const std::string& where) {
  if (value.is_null()) return;
  for (const json& v : value.is_array() ? value : json::array({value})) {
    if (!v.is_number_integer()) fail(where, ": eos_token_id entries must be integers");
    const int32_t id = v.get<int32_t>();
    if (std::find(out.begin(), out.end(), id) == out.end()) out.push_back(id);
  }
}
}  // namespace

std::string find_prefix(const Checkpoint& ckpt, const std::vector<std::string>& prefixes, const std::string& probe) {
  for (const std::string& p : prefixes)
    if (ckpt.has(p + probe)) return p;
  return "";
}

std::string require_prefix(const Checkpoint& ckpt, const std::vector<std::string>& prefixes, const std::string& probe,
                           const std::string& what) {
  for (const std::string& p : prefixes)
    if (ckpt.has(p + probe)) return p;
  std::string tried;
  for (const std::string& p : prefixes) tried += (tried.empty() ? "'" : ", '") + p + probe + "'";
  fail(ckpt.dir(), ": no ", what, " found (looked for ", tried, ")");
}

int64_t count_parameters(const Checkpoint& ckpt) {
  int64_t total = 0;
  for (const std::string& name : ckpt.names()) {
    if (ends_with(name, "position_ids") || ends_with(name, "inv_freq")) continue;
    const std::string module = name.substr(0, name.rfind('.'));
    const bool quantized = ckpt.has(module + ".scales");
    if (quantized && (ends_with(name, ".scales") || ends_with(name, ".biases"))) continue;
    const Tensor t = ckpt.get(name);
    int64_t n = t.numel();
    if (quantized && t.dtype() == DType::U32)
      if (auto spec = ckpt.quantization().for_module(module)) n = n * 32 / spec->bits;
    total += n;
  }
  return total;
}

std::vector<int32_t> resolve_eos_ids(const Checkpoint& ckpt, const json& value) {
  std::vector<int32_t> ids;
  add_ids(value, ids, ckpt.dir() + "/config.json");
  const std::filesystem::path gen = std::filesystem::path(ckpt.dir()) / "generation_config.json";
  if (std::filesystem::exists(gen)) {
    const json g = read_json_file(gen.string());
    if (g.contains("eos_token_id")) add_ids(g["eos_token_id"], ids, gen.string());
  }
  return ids;
}

float gemma_embed_scale(const Checkpoint& ckpt, const std::string& module, int64_t hidden) {
  const DType dtype =
      ckpt.has(module + ".scales") ? ckpt.get(module + ".scales").dtype() : ckpt.get(module + ".weight").dtype();
  const float v = std::sqrt(float(hidden));
  if (dtype == DType::BF16) return bf16_to_f32(f32_to_bf16(v));
  if (dtype == DType::F16) return f16_to_f32(f32_to_f16(v));
  return v;
}

}  // namespace vlm
