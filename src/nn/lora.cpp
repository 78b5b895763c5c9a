#include "nn/lora.h"

#include "core/error.h"
#include "kernels/ops.h"
#include "nn/decoder.h"

namespace vlm::nn {

const char* lora_slot_path(int slot) {
  static const char* const kPaths[kLoraSlots] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                                 "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                                 "mlp.down_proj"};
  return kPaths[slot];
}

std::array<int64_t, 2> lora_slot_dims(const DecoderConfig& cfg, int slot) {
  switch (slot) {
    case kLoraQ: return {cfg.hidden, cfg.q_dim()};
    case kLoraK:
    case kLoraV: return {cfg.hidden, cfg.kv_dim()};
    case kLoraO: return {cfg.q_dim(), cfg.hidden};
    case kLoraGate:
    case kLoraUp: return {cfg.hidden, cfg.intermediate};
    default: return {cfg.intermediate, cfg.hidden};
  }
}

int LoraAdapter::num_modules() const {
  int n = 0;
  for (const auto& layer : layers)
    for (const auto& m : layer) n += m.has_value();
  return n;
}

std::vector<float> LoraAdapter::delta(int layer, int slot, float user_scale) const {
  const LoraModule& m = layers.at(size_t(layer))[size_t(slot)].value();
  const int64_t in = m.a.cols(), out = m.b.rows(), r = m.rank;
  std::vector<float> a(size_t(r * in)), b(size_t(out * r));
  for (int64_t i = 0; i < r; ++i) m.a.dequantize_row(i, a.data() + i * in);
  for (int64_t o = 0; o < out; ++o) m.b.dequantize_row(o, b.data() + o * r);
  const double s = double(m.scale) * double(user_scale);
  std::vector<float> d(size_t(out * in));
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i) {
      double sum = 0;
      for (int64_t k = 0; k < r; ++k) sum += double(b[size_t(o * r + k)]) * double(a[size_t(k * in + i)]);
      d[size_t(o * in + i)] = float(s * sum);
    }
  return d;
}

void lora_add(const Compute& env, const LoraSet& set, int layer, int slot, const float* x, int64_t rows, float* y,
              LoraWorkspace& ws) {
  for (const ActiveLora& active : set) {
    const auto& layers = active.adapter->layers;
    if (size_t(layer) >= layers.size() || !layers[size_t(layer)][size_t(slot)]) continue;
    const LoraModule& m = *layers[size_t(layer)][size_t(slot)];
    const int64_t out = m.b.rows();
    float* t = ws.t.get(rows * m.rank);
    float* u = ws.u.get(rows * out);
    m.a.forward(env, x, rows, t);
    scale_inplace(t, m.scale * active.scale, rows * m.rank);
    m.b.forward(env, t, rows, u);
    add_inplace(y, u, rows * out);
  }
}

}  // namespace vlm::nn
