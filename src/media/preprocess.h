// Model-agnostic image preprocessing, as Hugging Face's PIL-based image processors do it; the
// model-specific processors live with their families in src/models/.
#pragma once
#include <array>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/json_file.h"
#include "media/image.h"

namespace vlm {

// Rescale by 1/255 and normalise per channel in float32, exactly as transformers does:
// v = float32(double(u8) * (1/255)); (v - mean_c) / std_c (divide, not multiply).
// Returns CHW float32 [3, H, W].
std::vector<float> rescale_normalize_chw(const Image& img, const std::array<float, 3>& mean,
                                         const std::array<float, 3>& std);

// An image_mean / image_std style field: 3 values (or 1, repeated); `fallback` when absent.
std::array<float, 3> read_image_triple(const json& j, const char* key, std::array<float, 3> fallback,
                                       const std::string& where);
// PIL's resample codes as preprocessor_config.json stores them (0 nearest ... 5 hamming).
Resample pil_resample(int code, const std::string& where);

}  // namespace vlm
