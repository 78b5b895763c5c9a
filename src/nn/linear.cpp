#include "nn/linear.h"

namespace vlm::nn {

MatMulWeight load_matmul_weight(const Checkpoint& ckpt, const std::string& path, int64_t rows, int64_t cols,
                                const std::string& quant_path) {
  const std::string wname = path + ".weight";
  if (ckpt.has(path + ".scales")) {
    auto spec = ckpt.quantization().for_module(quant_path.empty() ? path : quant_path);
    if (!spec)
      fail(ckpt.file_of(wname), ": '", path, ".scales' exists but config.json declares no quantization for '", path,
           "'");
    Tensor packed = ckpt.get(wname);
    Tensor scales = ckpt.get(path + ".scales");
    if (!ckpt.has(path + ".biases")) fail(ckpt.file_of(wname), ": quantized module '", path, "' has no .biases");
    Tensor biases = ckpt.get(path + ".biases");
    Shape want_packed = {rows, cols * spec->bits / 32};
    if (packed.shape() != want_packed)
      fail(ckpt.file_of(wname), ": tensor '", wname, "' has shape ", shape_str(packed.shape()), " but a ", rows, "x",
           cols, " matrix at ", spec->bits, " bits packs to ", shape_str(want_packed));
    return MatMulWeight::quantized(packed, scales, biases, spec->bits, spec->group_size,
                                   ckpt.file_of(wname) + ": '" + path + "'");
  }
  Tensor w = ckpt.get(wname, {rows, cols});
  return MatMulWeight::dense(w, ckpt.file_of(wname) + ": '" + wname + "'");
}

std::vector<float> load_vector(const Checkpoint& ckpt, const std::string& name, int64_t n) {
  return ckpt.get(name, {n}).to_floats();
}

Linear Linear::load(const Checkpoint& ckpt, const std::string& path, int64_t in_features, int64_t out_features,
                    bool bias, const std::string& quant_path) {
  Linear l;
  l.w_ = load_matmul_weight(ckpt, path, out_features, in_features, quant_path);
  if (bias) l.bias_ = load_vector(ckpt, path + ".bias", out_features);
  return l;
}

Linear Linear::from_weight(MatMulWeight w, std::vector<float> bias) {
  Linear l;
  l.w_ = std::move(w);
  l.bias_ = std::move(bias);
  return l;
}

void Linear::forward(const Compute& env, const float* x, int64_t M, float* y) const {
  w_.forward(env, x, M, y, bias_.empty() ? nullptr : bias_.data());
}

std::vector<float> Linear::forward(const Compute& env, const std::vector<float>& x, int64_t M) const {
  std::vector<float> y(size_t(M * out_features()));
  forward(env, x.data(), M, y.data());
  return y;
}

Embedding Embedding::load(const Checkpoint& ckpt, const std::string& path, int64_t vocab, int64_t dim,
                          const std::string& quant_path) {
  Embedding e;
  e.table_ = load_matmul_weight(ckpt, path, vocab, dim, quant_path);
  return e;
}

void Embedding::lookup(const int64_t* ids, int64_t n, float* out) const {
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= vocab()) fail("embedding: token id ", ids[i], " out of range [0, ", vocab(), ")");
    table_.dequantize_row(ids[i], out + i * dim());
  }
}

}  // namespace vlm::nn
