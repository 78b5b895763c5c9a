#include "nn/layers.h"

#include "kernels/ops.h"
#include "nn/linear.h"

namespace vlm::nn {

Norm Norm::load(const Checkpoint& ckpt, const std::string& path, int64_t dim, NormKind kind, float eps,
                bool one_plus_weight) {
  Norm n;
  n.kind = kind;
  n.eps = eps;
  n.weight = load_vector(ckpt, path + ".weight", dim);
  if (one_plus_weight)
    for (float& w : n.weight) w += 1.0f;  // what the kernel's (1 + w) computes, rounded the same way
  if (kind == NormKind::kLayer) n.bias = load_vector(ckpt, path + ".bias", dim);
  return n;
}

void Norm::apply(const Compute& env, const float* x, int64_t rows, float* out) const {
  if (kind == NormKind::kRms)
    rms_norm(env, x, weight.data(), rows, dim(), eps, out);
  else
    layer_norm(env, x, weight.data(), bias.empty() ? nullptr : bias.data(), rows, dim(), eps, out);
}

Activation parse_activation(const std::string& name, const std::string& where) {
  if (name == "silu" || name == "swish") return Activation::kSilu;
  if (name == "gelu") return Activation::kGeluErf;
  if (name == "gelu_pytorch_tanh" || name == "gelu_new" || name == "gelu_fast") return Activation::kGeluTanh;
  if (name == "quick_gelu") return Activation::kQuickGelu;
  fail(where, ": activation '", name, "' is not supported (silu, gelu, gelu_pytorch_tanh, quick_gelu)");
}

void activate(const Compute& env, Activation act, float* x, int64_t n) {
  switch (act) {
    case Activation::kSilu: return silu(env, x, n);
    case Activation::kGeluErf: return gelu_erf(env, x, n);
    case Activation::kGeluTanh: return gelu_tanh(env, x, n);
    case Activation::kQuickGelu: return quick_gelu(env, x, n);
  }
}

void activate_mul(const Compute& env, Activation act, float* gate, const float* up, int64_t n) {
  switch (act) {
    case Activation::kSilu: return silu_mul(env, gate, up, n);
    case Activation::kGeluTanh: return gelu_tanh_mul(env, gate, up, n);
    default:
      activate(env, act, gate, n);
      for (int64_t i = 0; i < n; ++i) gate[i] *= up[i];
  }
}

}  // namespace vlm::nn
