#include "nn/lora.h"

#include <algorithm>

#include "core/error.h"
#include "kernels/ops.h"
#include "nn/decoder.h"

namespace vlm::nn {

namespace {
// Multiply-adds below which a LoRA update runs in-line on the calling thread.
constexpr int64_t kLoraInlineWork = int64_t(1) << 20;
}  // namespace

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

LoraModule LoraModule::make(int64_t rank, float scale, const std::vector<float>& a, const std::vector<float>& b,
                            int64_t in, int64_t out, const std::string& where) {
  if (int64_t(a.size()) != rank * in || int64_t(b.size()) != out * rank)
    fail(where, ": LoRA matrices of ", a.size(), " and ", b.size(), " values for rank ", rank, ", in ", in, ", out ",
         out);
  LoraModule m;
  m.rank = rank;
  m.scale = scale;
  m.a = MatMulWeight::dense(Tensor::from_floats(a, {rank, in}), where + " (A)");
  m.b = MatMulWeight::dense(Tensor::from_floats(b, {out, rank}), where + " (B)");
  m.a_t.resize(a.size());
  m.b_t.resize(b.size());
  for (int64_t k = 0; k < rank; ++k) {
    for (int64_t i = 0; i < in; ++i) m.a_t[size_t(i * rank + k)] = a[size_t(k * in + i)];
    for (int64_t o = 0; o < out; ++o) m.b_t[size_t(k * out + o)] = b[size_t(o * rank + k)];
  }
  return m;
}

int LoraAdapter::num_modules() const {
  int n = 0;
  for (const auto& layer : layers)
    for (const auto& m : layer) n += m.has_value();
  return n;
}

std::vector<float> LoraAdapter::delta(int layer, int slot, float user_scale) const {
  const LoraModule& m = layers.at(size_t(layer))[size_t(slot)].value();
  const int64_t in = m.in_features(), out = m.out_features(), r = m.rank;
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
    const int64_t in = m.in_features(), out = m.out_features(), r = m.rank;
    const float s = m.scale * active.scale;
    float* t = ws.t.get(rows * r);
    if (rows * r * (in + out) > kLoraInlineWork) {  // prefill: two thin matmuls on the pool
      float* u = ws.u.get(rows * out);
      m.a.forward(env, x, rows, t);
      scale_inplace(t, s, rows * r);
      m.b.forward(env, t, rows, u);
      add_inplace(y, u, rows * out);
      continue;
    }
    // Decode: too little work to hand to the pool (waking its threads costs more than the arithmetic).
    for (int64_t row = 0; row < rows; ++row) {
      const float* xr = x + row * in;
      float* tr = t + row * r;
      std::fill(tr, tr + r, 0.f);
      for (int64_t i = 0; i < in; ++i) {
        const float xi = xr[i];
        const float* ai = m.a_t.data() + i * r;
        for (int64_t k = 0; k < r; ++k) tr[k] += xi * ai[k];
      }
      float* yr = y + row * out;
      for (int64_t k = 0; k < r; ++k) {
        const float tk = s * tr[k];
        const float* bk = m.b_t.data() + k * out;
        for (int64_t o = 0; o < out; ++o) yr[o] += tk * bk[o];
      }
    }
  }
}

}  // namespace vlm::nn
