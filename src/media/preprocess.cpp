// Model-agnostic pieces of Hugging Face's PIL-based image processors.
#include "media/preprocess.h"

#include <cmath>

#include "core/error.h"
#include "io/json_file.h"

namespace vlm {

std::vector<float> rescale_normalize_chw(const Image& img, const std::array<float, 3>& mean,
                                         const std::array<float, 3>& std) {
  const size_t n = size_t(img.width) * img.height;
  // The 256 possible values per channel, computed once with transformers' exact float steps.
  float lut[3][256];
  for (int c = 0; c < 3; ++c)
    for (int v = 0; v < 256; ++v) lut[c][v] = (float(double(v) * (1.0 / 255.0)) - mean[c]) / std[c];
  std::vector<float> out(3 * n);
  for (size_t i = 0; i < n; ++i)
    for (int c = 0; c < 3; ++c) out[c * n + i] = lut[c][img.rgb[3 * i + c]];
  return out;
}

std::array<float, 3> read_image_triple(const json& j, const char* key, std::array<float, 3> fallback,
                                       const std::string& where) {
  auto v = json_get<std::vector<float>>(j, key, {fallback.begin(), fallback.end()}, where);
  if (v.size() == 1) return {v[0], v[0], v[0]};
  if (v.size() != 3) fail(where, ": field '", key, "' must have 3 values");
  return {v[0], v[1], v[2]};
}

Resample pil_resample(int code, const std::string& where) {
  switch (code) {
    case 0: return Resample::Nearest;
    case 1: return Resample::Lanczos;
    case 2: return Resample::Bilinear;
    case 3: return Resample::Bicubic;
    case 4: return Resample::Box;
    case 5: return Resample::Hamming;
    default: fail(where, ": unknown PIL resample code ", code);
  }
}

}  // namespace vlm
