// LoRA adapters on the Linear layers of the text decoder, applied unmerged: y = W·x + b + s·(x·Aᵀ)·Bᵀ
// after the base matmul, so every base weight kind (bf16, f16, f32, MLX 2-8 bit) and precision works
// without touching the base weights. Two file formats load (see docs/lora.md):
//  - MLX (mlx-lm, mlx-vlm, MLXLMCommon): adapters.safetensors with "<module>.lora_a" [in, r] and
//    "<module>.lora_b" [r, out]; adapter_config.json {fine_tune_type, num_layers, lora_parameters}.
//  - Hugging Face PEFT: adapter_model.safetensors with "base_model.model.<module>.lora_A.weight"
//    [r, in] and "...lora_B.weight" [out, r]; adapter_config.json {r, lora_alpha, target_modules, ...}.
// The adapter set of a generation travels with its DecoderSpan, never on the shared model.
#pragma once
#include <array>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kernels/matmul.h"
#include "nn/layers.h"

namespace vlm::nn {

struct DecoderConfig;

// The adaptable Linears of a decoder layer, in this order.
enum LoraSlot : int { kLoraQ, kLoraK, kLoraV, kLoraO, kLoraGate, kLoraUp, kLoraDown, kLoraSlots };
// "self_attn.q_proj", ... "mlp.down_proj": the module path inside a decoder layer.
const char* lora_slot_path(int slot);
// in/out features of a slot's Linear under `cfg`.
std::array<int64_t, 2> lora_slot_dims(const DecoderConfig& cfg, int slot);

struct LoraModule {
  int64_t rank = 0;
  float scale = 1.f;               // the adapter's own scaling (MLX scale, PEFT alpha/r or alpha/sqrt(r))
  MatMulWeight a;                  // [rank, in] float32 (PEFT lora_A orientation): many rows, on the thread pool
  MatMulWeight b;                  // [out, rank] float32
  std::vector<float> a_t, b_t;     // [in, rank] and [rank, out] (MLX orientation): few rows, in-line loops
  std::string a_tensor, b_tensor;  // names in the adapter file, for messages and `vlm info`

  // From float32 A [rank, in] and B [out, rank].
  static LoraModule make(int64_t rank, float scale, const std::vector<float>& a, const std::vector<float>& b,
                         int64_t in, int64_t out, const std::string& where);
  int64_t in_features() const { return a.cols(); }
  int64_t out_features() const { return b.rows(); }
};

struct LoraAdapter {
  std::string dir;                                                        // where it was loaded from
  std::string file;                                                       // the safetensors file
  std::string format;                                                     // "mlx" or "peft"
  std::vector<std::array<std::optional<LoraModule>, kLoraSlots>> layers;  // one entry per decoder layer

  int num_modules() const;
  // s·B·A as float32 [out, in] (summed in double, rounded once), scaled by `user_scale` too.
  std::vector<float> delta(int layer, int slot, float user_scale = 1.f) const;
};

// One adapter active in a generation, with the user's scale (multiplies the adapter's own).
struct ActiveLora {
  std::shared_ptr<const LoraAdapter> adapter;
  float scale = 1.f;
};
using LoraSet = std::vector<ActiveLora>;

// Loads an adapter directory (either format) for a decoder of config `cfg`; throws naming the file
// and tensor or config field on anything the loader cannot apply exactly.
LoraAdapter load_lora_adapter(const std::string& dir, const DecoderConfig& cfg);

// Reused buffers of the low-rank path.
struct LoraWorkspace {
  Buffer t, u;
};

// y[rows, out] += Σ scale·s·(x[rows, in]·Aᵀ)·Bᵀ over the adapters of `set` that adapt (layer, slot).
void lora_add(const Compute& env, const LoraSet& set, int layer, int slot, const float* x, int64_t rows, float* y,
              LoraWorkspace& ws);

}  // namespace vlm::nn
