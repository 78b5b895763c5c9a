// Every image decoder (JPEG, PNG, WebP, GIF, BMP; chosen by content) on arbitrary bytes, with a pixel
// limit small enough that decompression bombs are refused quickly (and each run stays cheap).
#include <cstdint>
#include <cstdlib>

#include "core/error.h"
#include "media/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  vlm::ImageLimits limits;
  limits.max_pixels = 512 * 512;
  try {
    vlm::Image img = vlm::decode_image(data, size, "fuzz", limits);
    if (img.width <= 0 || img.height <= 0 || int64_t(img.width) * img.height > limits.max_pixels ||
        img.rgb.size() != size_t(img.width) * img.height * 3)
      std::abort();
  } catch (const vlm::Error&) {
  }
  return 0;
}
