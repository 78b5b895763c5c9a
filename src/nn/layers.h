// Small building blocks shared by every transformer: normalisation layers, activations parsed once
// from config strings, and the observer through which models report intermediate tensors.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/compute.h"
#include "io/checkpoint.h"

namespace vlm::nn {

enum class NormKind { kRms, kLayer };

// RMSNorm (weight only) or LayerNorm (weight + bias), float32 parameters.
struct Norm {
  NormKind kind = NormKind::kRms;
  float eps = 1e-6f;
  std::vector<float> weight, bias;

  // Loads "<path>.weight" (and "<path>.bias" for LayerNorm). `one_plus_weight`: the checkpoint
  // stores w for a layer that scales by 1 + w (Gemma); the 1 is folded in here, once.
  static Norm load(const Checkpoint& ckpt, const std::string& path, int64_t dim, NormKind kind, float eps,
                   bool one_plus_weight = false);
  bool defined() const { return !weight.empty(); }
  int64_t dim() const { return int64_t(weight.size()); }
  // out[rows, dim] = norm(x[rows, dim]); out may alias x.
  void apply(const Compute& env, const float* x, int64_t rows, float* out) const;
};

enum class Activation { kSilu, kGeluErf, kGeluTanh, kQuickGelu };
// Hugging Face ACT2FN names: silu/swish, gelu, gelu_pytorch_tanh/gelu_new/gelu_fast, quick_gelu.
Activation parse_activation(const std::string& name, const std::string& where);
void activate(const Compute& env, Activation act, float* x, int64_t n);
// gate[i] = act(gate[i]) * up[i] (gated MLPs).
void activate_mul(const Compute& env, Activation act, float* gate, const float* up, int64_t n);

// An intermediate tensor a model reports while it runs (rows x cols floats, row-major), for
// oracle tests and debugging. `layer` is -1 for tensors outside a layer stack. Names used:
//   vision.patch_embed, vision.layer (after each block), vision.out (before the projector),
//   image_features / video_features (what replaces the placeholder tokens),
//   decoder.input (merged embeddings, before any embedding scale), decoder.embeddings (the rows
//   the first layer receives), decoder.layer (residual stream after each layer), decoder.norm
//   (after the final norm).
struct Observation {
  std::string_view name;
  int layer = -1;
  const float* data = nullptr;
  int64_t rows = 0, cols = 0;
  std::vector<float> copy() const { return std::vector<float>(data, data + rows * cols); }
};
using Observer = std::function<void(const Observation&)>;

inline void observe(const Observer* obs, std::string_view name, int layer, const float* data, int64_t rows,
                    int64_t cols) {
  if (obs && *obs) (*obs)(Observation{name, layer, data, rows, cols});
}

// A grow-only float buffer: workspaces reuse these across steps so decoding allocates nothing.
class Buffer {
 public:
  float* get(int64_t n) {
    if (int64_t(data_.size()) < n) data_.resize(size_t(n));
    return data_.data();
  }

 private:
  std::vector<float> data_;
};

}  // namespace vlm::nn
