// Decoded images and Pillow-exact operations on them.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/thread_pool.h"

namespace vlm {

// 8-bit RGB, row-major HWC (always 3 channels after load: converted like Pillow's convert("RGB")).
struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;  // height * width * 3
  const uint8_t* pixel(int x, int y) const { return rgb.data() + (size_t(y) * width + x) * 3; }
};

struct ImageLimits {
  int64_t max_pixels = 89478485;  // Pillow's MAX_IMAGE_PIXELS (decompression-bomb limit)
};

// Decodes JPEG, PNG, WebP, GIF (first frame) or BMP, chosen by content; applies EXIF orientation;
// converts to RGB like Pillow. Errors name the source ("<path>: truncated PNG", ...).
Image load_image(const std::string& path, const ImageLimits& limits = {});
Image decode_image(const uint8_t* data, size_t size, const std::string& source_name, const ImageLimits& limits = {});
// Raw arrays: u8 or float in [0,1]; 3 or 4 channels (alpha dropped); HWC or CHW.
Image image_from_u8(const uint8_t* data, int width, int height, int channels, bool chw = false);
Image image_from_float(const float* data, int width, int height, int channels, bool chw = false);

enum class Resample { Nearest, Box, Bilinear, Hamming, Bicubic, Lanczos };
// Pillow's Image.resize(size, resample) for RGB uint8 images, bit-exact.
// Rows are split over `pool` when one is given.
Image resize(const Image& img, int width, int height, Resample filter, ThreadPool* pool = nullptr);

}  // namespace vlm
