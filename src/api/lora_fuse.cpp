// ModelContext::fuse_adapters: a base checkpoint with LoRA deltas merged into its decoder Linears.
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "api/internal.h"
#include "core/error.h"
#include "io/json_file.h"
#include "nn/linear.h"
#include "nn/quantize.h"

namespace vlm {

namespace {

namespace fs = std::filesystem;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Where the checkpoint keeps decoder layers: the first known prefix with an embedding table.
std::string decoder_prefix(const Checkpoint& ckpt) {
  for (const char* p : {"model.language_model.", "language_model.model.", "model.", "language_model."})
    if (ckpt.has(std::string(p) + "embed_tokens.weight")) return p;
  fail(ckpt.dir(), ": cannot find the text decoder's embed_tokens.weight");
}

// The float32 matrix of a (dense or quantized) module, and its shape.
std::vector<float> module_floats(const Checkpoint& ckpt, const std::string& module, int64_t& rows, int64_t& cols) {
  const std::string wname = module + ".weight";
  Tensor w = ckpt.get(wname);
  if (ckpt.has(module + ".scales")) {
    auto spec = ckpt.quantization().for_module(module);
    if (!spec) fail(ckpt.file_of(wname), ": '", module, ".scales' exists but no quantization is declared for it");
    if (w.ndim() != 2) fail(ckpt.file_of(wname), ": '", wname, "' is not a matrix");
    rows = w.dim(0);
    cols = w.dim(1) * 32 / spec->bits;
  } else {
    if (w.ndim() != 2) fail(ckpt.file_of(wname), ": '", wname, "' is not a matrix");
    rows = w.dim(0);
    cols = w.dim(1);
  }
  MatMulWeight m = nn::load_matmul_weight(ckpt, module, rows, cols);
  std::vector<float> out(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r) m.dequantize_row(r, out.data() + r * cols);
  return out;
}

}  // namespace

void ModelContext::fuse_adapters(const std::vector<AdapterRef>& adapters, const std::string& out_dir,
                                 bool dequantize) const {
  const Checkpoint& ckpt = *impl->checkpoint;
  if (fs::exists(out_dir) && fs::equivalent(out_dir, impl->dir)) fail("fuse: the output is the model directory");
  if (fs::exists(out_dir) && !fs::is_empty(out_dir)) fail("fuse: output directory '", out_dir, "' is not empty");
  // Module path -> its summed delta.
  std::map<std::string, std::vector<float>> deltas;
  const std::string prefix = decoder_prefix(ckpt);
  for (const AdapterRef& ref : adapters) {
    if (ref.id < 0 || size_t(ref.id) >= impl->adapters.size()) fail("fuse: adapter id ", ref.id, " is not loaded");
    const nn::LoraAdapter& ad = *impl->adapters[size_t(ref.id)];
    for (size_t l = 0; l < ad.layers.size(); ++l)
      for (int slot = 0; slot < nn::kLoraSlots; ++slot) {
        if (!ad.layers[l][size_t(slot)]) continue;
        const std::string module = prefix + "layers." + std::to_string(l) + "." + nn::lora_slot_path(slot);
        std::vector<float> d = ad.delta(int(l), slot, ref.scale);
        auto [it, fresh] = deltas.try_emplace(module, std::move(d));
        if (!fresh)
          for (size_t i = 0; i < it->second.size(); ++i) it->second[i] += d[i];
      }
  }

  for (const auto& [module, d] : deltas)
    if (!ckpt.has(module + ".weight")) fail("fuse: the checkpoint has no '", module, ".weight'");
  // The quantization parameters of rewritten modules are written anew (or dropped).
  std::set<std::string> replaced;
  for (const std::string& name : ckpt.names())
    if (ends_with(name, ".scales")) {
      const std::string module = name.substr(0, name.size() - 7);
      if (ckpt.has(module + ".weight") && (dequantize || deltas.count(module))) {
        replaced.insert(module + ".scales");
        replaced.insert(module + ".biases");
      }
    }
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const std::string& name : ckpt.names()) {
    if (replaced.count(name)) continue;
    if (!ends_with(name, ".weight")) {
      tensors.emplace_back(name, ckpt.get(name));
      continue;
    }
    const std::string module = name.substr(0, name.size() - 7);
    const bool quantized = ckpt.has(module + ".scales");
    auto delta = deltas.find(module);
    if (delta == deltas.end() && !(quantized && dequantize)) {
      tensors.emplace_back(name, ckpt.get(name));
      continue;
    }
    int64_t rows = 0, cols = 0;
    std::vector<float> w = module_floats(ckpt, module, rows, cols);
    if (delta != deltas.end()) {
      if (delta->second.size() != w.size())
        fail("fuse: the adapter delta of '", module, "' does not match its weight [", rows, ", ", cols, "]");
      for (size_t i = 0; i < w.size(); ++i) w[i] += delta->second[i];
    }
    if (!quantized) {
      tensors.emplace_back(name, Tensor::from_floats(w, {rows, cols}).to(ckpt.get(name).dtype()));
      continue;
    }
    const DType param = ckpt.get(module + ".scales").dtype();
    if (dequantize) {
      tensors.emplace_back(name, Tensor::from_floats(w, {rows, cols}).to(param));
      continue;
    }
    const QuantSpec spec = *ckpt.quantization().for_module(module);
    nn::MlxQuantized q =
        nn::mlx_quantize(w.data(), rows, cols, spec.bits, spec.group_size, param, impl->env.pool.get());
    tensors.emplace_back(name, q.packed);
    tensors.emplace_back(module + ".scales", q.scales);
    tensors.emplace_back(module + ".biases", q.biases);
  }

  fs::create_directories(out_dir);
  for (const auto& e : fs::directory_iterator(impl->dir)) {
    const std::string f = e.path().filename().string();
    if (ends_with(f, ".safetensors") || f == "model.safetensors.index.json" || !e.is_regular_file()) continue;
    // read_model_file follows the link-target files of checkouts without symlinks.
    std::ofstream(fs::path(out_dir) / f, std::ios::binary) << read_model_file(e.path().string());
  }
  if (dequantize) {
    json config = ckpt.config();
    config.erase("quantization");
    config.erase("quantization_config");
    std::ofstream(fs::path(out_dir) / "config.json") << config.dump(2) << "\n";
  }
  save_safetensors((fs::path(out_dir) / "model.safetensors").string(), tensors, {{"format", "mlx"}});
}

}  // namespace vlm
