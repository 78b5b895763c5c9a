// Linear and Embedding layers loaded from a checkpoint, dense or MLX-quantized: a module is
// quantized iff "<path>.scales" exists; bits/group size come from config.json.
#pragma once
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "kernels/matmul.h"

namespace vlm::nn {

class Linear {
 public:
  Linear() = default;
  // Loads "<path>.weight" (+ ".scales"/".biases" when quantized, + ".bias" if present or
  // required). `quant_path` is the module path used to look up per-module quantization
  // overrides (defaults to `path`). Checks the shape against [out_features, in_features].
  static Linear load(const Checkpoint& ckpt, const std::string& path, int64_t in_features, int64_t out_features,
                     bool bias, const std::string& quant_path = "");
  static Linear from_weight(MatMulWeight w, std::vector<float> bias = {});

  int64_t in_features() const { return w_.cols(); }
  int64_t out_features() const { return w_.rows(); }
  const MatMulWeight& weight() const { return w_; }
  const std::vector<float>& bias() const { return bias_; }
  // Load-time repacking for the precision the model runs at (MatMulWeight::prepare).
  void prepare(const Compute& env) { w_.prepare(env); }

  // y[M, out] = x[M, in] · Wᵀ + b
  void forward(const Compute& env, const float* x, int64_t M, float* y) const;
  std::vector<float> forward(const Compute& env, const std::vector<float>& x, int64_t M) const;

 private:
  MatMulWeight w_;
  std::vector<float> bias_;
};

// Loads the weight matrix of module `path` (dense or quantized), checking [rows, cols].
MatMulWeight load_matmul_weight(const Checkpoint& ckpt, const std::string& path, int64_t rows, int64_t cols,
                                const std::string& quant_path = "");
// Loads a 1-D float parameter as float32, checking its length.
std::vector<float> load_vector(const Checkpoint& ckpt, const std::string& name, int64_t n);

class Embedding {
 public:
  Embedding() = default;
  static Embedding load(const Checkpoint& ckpt, const std::string& path, int64_t vocab, int64_t dim,
                        const std::string& quant_path = "");
  int64_t vocab() const { return table_.rows(); }
  int64_t dim() const { return table_.cols(); }
  // out[n, dim] = rows of the table for `ids` (dequantized); throws on an id out of range.
  void lookup(const int64_t* ids, int64_t n, float* out) const;
  // The same table used as an output projection (tied LM head): logits = x · tableᵀ.
  const MatMulWeight& as_matmul() const { return table_; }
  void prepare(const Compute& env) { table_.prepare(env); }

 private:
  MatMulWeight table_;
};

}  // namespace vlm::nn
