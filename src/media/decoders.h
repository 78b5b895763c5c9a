// Internal: per-format decoders used by image.cpp's content-based dispatch. Each returns an RGB
// image converted like Pillow's convert("RGB") and checks the pixel limit from the header before
// allocating pixel memory.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "media/image.h"

namespace vlm::media_detail {

Image decode_jpeg(const uint8_t* data, size_t size, const std::string& src, const ImageLimits& limits);
Image decode_png(const uint8_t* data, size_t size, const std::string& src, const ImageLimits& limits);
Image decode_webp(const uint8_t* data, size_t size, const std::string& src, const ImageLimits& limits);
Image decode_gif(const uint8_t* data, size_t size, const std::string& src, const ImageLimits& limits);
Image decode_bmp(const uint8_t* data, size_t size, const std::string& src, const ImageLimits& limits);

// Throws unless 0 < width, 0 < height and width * height <= limits.max_pixels.
void check_dimensions(int64_t width, int64_t height, const std::string& src, const ImageLimits& limits);

// Pixel memory handed to a C decoder (libjpeg, libpng) from inside its setjmp-guarded code: the
// dimension check runs when the header is known, and nothing may throw across the C frames, so a
// failure is recorded in `error` and signalled by nullptr.
struct PixelBuffer {
  const std::string* src = nullptr;
  const ImageLimits* limits = nullptr;
  std::vector<uint8_t> bytes;
  int width = 0, height = 0;
  std::string error;
  uint8_t* allocate(int w, int h, size_t bytes_per_pixel) noexcept;
};

// EXIF orientation (1..8) from a TIFF-structured EXIF block (starting at "II*\0" / "MM\0*",
// optionally preceded by "Exif\0\0"); 1 when absent or malformed.
int exif_orientation(const uint8_t* data, size_t size);
// Finds the EXIF block of a JPEG (APP1), PNG (eXIf) or WebP (EXIF chunk) file; {nullptr, 0} if none.
struct ByteSpan {
  const uint8_t* data = nullptr;
  size_t size = 0;
};
ByteSpan find_exif_jpeg(const uint8_t* data, size_t size);
ByteSpan find_exif_png(const uint8_t* data, size_t size);
ByteSpan find_exif_webp(const uint8_t* data, size_t size);
// PIL.ImageOps.exif_transpose for orientations 2..8.
Image apply_orientation(const Image& img, int orientation);

}  // namespace vlm::media_detail
