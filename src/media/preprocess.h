// Model image preprocessing, as Hugging Face's PIL-based image processors do it.
#pragma once
#include <array>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "media/image.h"

namespace vlm {

// Rescale by 1/255 and normalise per channel in float32, exactly as transformers does:
// v = float32(double(u8) * (1/255)); (v - mean_c) / std_c (divide, not multiply).
// Returns CHW float32 [3, H, W].
std::vector<float> rescale_normalize_chw(const Image& img, const std::array<float, 3>& mean,
                                         const std::array<float, 3>& std);

struct Qwen2VLImageConfig {
  int64_t min_pixels = 56 * 56;
  int64_t max_pixels = 28 * 28 * 1280;
  int patch_size = 14;
  int temporal_patch_size = 2;
  int merge_size = 2;
  std::array<float, 3> mean = {0.48145466f, 0.4578275f, 0.40821073f};
  std::array<float, 3> std = {0.26862954f, 0.26130258f, 0.27577711f};
  // Reads preprocessor_config.json (all three layouts: top-level min/max_pixels,
  // size.{min,max}_pixels, size.{shortest,longest}_edge).
  static Qwen2VLImageConfig from_file(const std::string& path);
};

// transformers' smart_resize: returns {height, width}, multiples of factor, within the pixel bounds.
std::array<int, 2> qwen2vl_smart_resize(int height, int width, int factor, int64_t min_pixels, int64_t max_pixels);

struct Qwen2VLPatches {
  Tensor pixel_values;              // F32 [t*h*w, C*temporal*patch*patch]
  std::array<int64_t, 3> grid_thw;  // {t, h, w} in patches
  int resized_height = 0, resized_width = 0;
};
// One image (repeated to temporal_patch_size frames), or video frames (all the same size;
// the last is repeated to a multiple of temporal_patch_size). Resizes with PIL bicubic.
Qwen2VLPatches qwen2vl_preprocess(const std::vector<Image>& frames, const Qwen2VLImageConfig& cfg,
                                  ThreadPool* pool = nullptr);

struct SiglipImageConfig {
  int height = 224, width = 224;
  std::array<float, 3> mean = {0.5f, 0.5f, 0.5f};
  std::array<float, 3> std = {0.5f, 0.5f, 0.5f};
  Resample resample = Resample::Bicubic;
  static SiglipImageConfig from_file(const std::string& path);
};
// Resize to height x width, rescale, normalise: F32 [3, H, W].
Tensor siglip_preprocess(const Image& img, const SiglipImageConfig& cfg, ThreadPool* pool = nullptr);

}  // namespace vlm
