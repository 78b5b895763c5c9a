// Format dispatch by magic bytes, EXIF orientation, and images from raw arrays.
#include "media/image.h"

#include <cmath>
#include <cstring>
#include <fstream>

#include "core/error.h"
#include "media/decoders.h"

namespace vlm {
namespace media_detail {

void check_dimensions(int64_t width, int64_t height, const std::string& src, const ImageLimits& limits) {
  if (width <= 0 || height <= 0) fail(src, ": image has zero size (", width, "x", height, ")");
  if (width > (1 << 30) || height > (1 << 30) || width * height > limits.max_pixels)
    fail(src, ": image of ", width, "x", height, " pixels exceeds the limit of ", limits.max_pixels,
         " pixels (decompression bomb protection)");
}

uint8_t* PixelBuffer::allocate(int w, int h, size_t bytes_per_pixel) noexcept {
  try {
    check_dimensions(w, h, *src, *limits);
    bytes.resize(size_t(w) * size_t(h) * bytes_per_pixel);
    width = w;
    height = h;
    return bytes.data();
  } catch (const std::exception& e) {
    error = e.what();
    return nullptr;
  }
}

namespace {
uint32_t rd32(const uint8_t* p, bool le) {
  return le ? p[0] | (p[1] << 8) | (p[2] << 16) | (uint32_t(p[3]) << 24)
            : (uint32_t(p[0]) << 24) | (p[1] << 16) | (p[2] << 8) | p[3];
}
uint16_t rd16(const uint8_t* p, bool le) {
  return le ? uint16_t(p[0] | (p[1] << 8)) : uint16_t((p[0] << 8) | p[1]);
}
uint32_t be32(const uint8_t* p) {
  return rd32(p, false);
}
}  // namespace

int exif_orientation(const uint8_t* d, size_t n) {
  if (n >= 6 && std::memcmp(d, "Exif\0\0", 6) == 0) d += 6, n -= 6;
  if (n < 8) return 1;
  bool le;
  if (d[0] == 'I' && d[1] == 'I')
    le = true;
  else if (d[0] == 'M' && d[1] == 'M')
    le = false;
  else
    return 1;
  uint32_t ifd = rd32(d + 4, le);
  if (ifd > n || n - ifd < 2) return 1;
  int count = rd16(d + ifd, le);
  for (int i = 0; i < count; ++i) {
    size_t at = ifd + 2 + size_t(i) * 12;
    if (at + 12 > n) return 1;
    if (rd16(d + at, le) != 0x0112) continue;
    int type = rd16(d + at + 2, le);
    int v = type == 3 ? rd16(d + at + 8, le) : type == 4 ? int(rd32(d + at + 8, le)) : 1;
    return v >= 1 && v <= 8 ? v : 1;
  }
  return 1;
}

ByteSpan find_exif_jpeg(const uint8_t* d, size_t n) {
  size_t i = 2;
  while (i + 4 <= n && d[i] == 0xFF) {
    int marker = d[i + 1];
    if (marker == 0xFF) {
      ++i;
      continue;
    }
    if (marker == 0xDA || marker == 0xD9) break;  // start of scan: no more headers
    size_t len = (size_t(d[i + 2]) << 8) | d[i + 3];
    if (len < 2 || i + 2 + len > n) break;
    if (marker == 0xE1 && len >= 8 && std::memcmp(d + i + 4, "Exif\0\0", 6) == 0) return {d + i + 4, len - 2};
    i += 2 + len;
  }
  return {};
}

ByteSpan find_exif_png(const uint8_t* d, size_t n) {
  size_t i = 8;
  while (i + 12 <= n) {
    size_t len = be32(d + i);
    if (len > n - i - 12) break;
    if (std::memcmp(d + i + 4, "eXIf", 4) == 0) return {d + i + 8, len};
    if (std::memcmp(d + i + 4, "IEND", 4) == 0) break;
    i += 12 + len;
  }
  return {};
}

ByteSpan find_exif_webp(const uint8_t* d, size_t n) {
  size_t i = 12;
  while (i + 8 <= n) {
    size_t len = rd32(d + i + 4, true);
    if (len > n - i - 8) break;
    if (std::memcmp(d + i, "EXIF", 4) == 0) return {d + i + 8, len};
    i += 8 + len + (len & 1);
  }
  return {};
}

Image apply_orientation(const Image& img, int orientation) {
  if (orientation < 2 || orientation > 8) return img;
  const int W = img.width, H = img.height;
  bool swap = orientation >= 5;
  Image out;
  out.width = swap ? H : W;
  out.height = swap ? W : H;
  out.rgb.resize(img.rgb.size());
  for (int oy = 0; oy < out.height; ++oy) {
    for (int ox = 0; ox < out.width; ++ox) {
      int ix, iy;
      switch (orientation) {
        case 2: ix = W - 1 - ox, iy = oy; break;          // FLIP_LEFT_RIGHT
        case 3: ix = W - 1 - ox, iy = H - 1 - oy; break;  // ROTATE_180
        case 4: ix = ox, iy = H - 1 - oy; break;          // FLIP_TOP_BOTTOM
        case 5: ix = oy, iy = ox; break;                  // TRANSPOSE
        case 6: ix = oy, iy = H - 1 - ox; break;          // ROTATE_270
        case 7: ix = W - 1 - oy, iy = H - 1 - ox; break;  // TRANSVERSE
        default: ix = W - 1 - oy, iy = ox; break;         // 8: ROTATE_90
      }
      std::memcpy(&out.rgb[(size_t(oy) * out.width + ox) * 3], img.pixel(ix, iy), 3);
    }
  }
  return out;
}

}  // namespace media_detail

using namespace media_detail;

Image decode_image(const uint8_t* data, size_t size, const std::string& src, const ImageLimits& limits) {
  if (!data || size == 0) fail(src, ": empty image data");
  auto starts = [&](const char* magic, size_t len, size_t at = 0) {
    return size >= at + len && std::memcmp(data + at, magic, len) == 0;
  };
  Image img;
  ByteSpan exif;
  if (starts("\xFF\xD8\xFF", 3)) {
    img = decode_jpeg(data, size, src, limits);
    exif = find_exif_jpeg(data, size);
  } else if (starts("\x89PNG\r\n\x1a\n", 8)) {
    img = decode_png(data, size, src, limits);
    exif = find_exif_png(data, size);
  } else if (starts("RIFF", 4) && starts("WEBP", 4, 8)) {
    img = decode_webp(data, size, src, limits);
    exif = find_exif_webp(data, size);
  } else if (starts("GIF87a", 6) || starts("GIF89a", 6)) {
    img = decode_gif(data, size, src, limits);
  } else if (starts("BM", 2)) {
    img = decode_bmp(data, size, src, limits);
  } else {
    fail(src, ": unsupported or unrecognised image format (expected JPEG, PNG, WebP, GIF or BMP)");
  }
  int orientation = exif.data ? exif_orientation(exif.data, exif.size) : 1;
  return orientation == 1 ? img : apply_orientation(img, orientation);
}

Image load_image(const std::string& path, const ImageLimits& limits) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(path, ": cannot open image file");
  f.seekg(0, std::ios::end);
  std::streamoff n = f.tellg();
  if (n < 0) fail(path, ": cannot read image file");
  f.seekg(0);
  std::vector<uint8_t> bytes(static_cast<size_t>(n));
  if (n > 0 && !f.read(reinterpret_cast<char*>(bytes.data()), n)) fail(path, ": cannot read image file");
  return decode_image(bytes.data(), bytes.size(), path, limits);
}

namespace {
template <typename T, typename Convert>
Image from_array(const T* data, int width, int height, int channels, bool chw, const char* what, Convert conv) {
  if (!data) fail(what, ": null pixel data");
  if (width <= 0 || height <= 0) fail(what, ": image has zero size (", width, "x", height, ")");
  if (channels != 3 && channels != 4) fail(what, ": expected 3 or 4 channels, got ", channels);
  Image img;
  img.width = width;
  img.height = height;
  size_t n = size_t(width) * height;
  img.rgb.resize(n * 3);
  for (size_t i = 0; i < n; ++i)
    for (int c = 0; c < 3; ++c) img.rgb[3 * i + c] = conv(chw ? data[c * n + i] : data[i * channels + c]);
  return img;
}
}  // namespace

Image image_from_u8(const uint8_t* data, int width, int height, int channels, bool chw) {
  return from_array(data, width, height, channels, chw, "u8 image array", [](uint8_t v) { return v; });
}

// Float pixels in [0, 1] become round(v * 255) clamped, like numpy's (x * 255).round().astype(uint8)
// on in-range data (ties to even); NaN maps to 0.
Image image_from_float(const float* data, int width, int height, int channels, bool chw) {
  return from_array(data, width, height, channels, chw, "float image array", [](float v) {
    float s = v * 255.0f;
    if (!(s > 0.0f)) return uint8_t(0);
    if (s >= 255.0f) return uint8_t(255);
    return uint8_t(std::nearbyint(s));
  });
}

}  // namespace vlm
