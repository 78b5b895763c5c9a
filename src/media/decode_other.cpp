// WebP (libwebp), GIF first frame (giflib) and uncompressed BMP, converted like Pillow's
// convert("RGB"): alpha dropped, palettes expanded (indices past the palette read Pillow's default
// grey ramp).
#include <gif_lib.h>
#include <webp/decode.h>

#include <array>
#include <cstring>

#include "core/error.h"
#include "media/decoders.h"

namespace vlm::media_detail {

Image decode_webp(const uint8_t* data, size_t size, const std::string& src, const ImageLimits& limits) {
  WebPBitstreamFeatures features;
  if (WebPGetFeatures(data, size, &features) != VP8_STATUS_OK) fail(src, ": corrupt or truncated WebP header");
  check_dimensions(features.width, features.height, src, limits);
  Image img;
  img.width = features.width;
  img.height = features.height;
  size_t n = size_t(img.width) * img.height;
  // Decoding to RGBA and dropping alpha keeps the un-premultiplied colour Pillow sees.
  std::vector<uint8_t> rgba(n * 4);
  if (!WebPDecodeRGBAInto(data, size, rgba.data(), rgba.size(), img.width * 4))
    fail(src, ": corrupt or truncated WebP data");
  img.rgb.resize(n * 3);
  for (size_t i = 0; i < n; ++i) std::memcpy(&img.rgb[3 * i], &rgba[4 * i], 3);
  return img;
}

namespace {

struct GifReader {
  const uint8_t* data;
  size_t size, pos;
};

int gif_read(GifFileType* gif, GifByteType* out, int n) {
  auto* r = static_cast<GifReader*>(gif->UserData);
  size_t take = std::min(size_t(n), r->size - r->pos);
  std::memcpy(out, r->data + r->pos, take);
  r->pos += take;
  return int(take);
}

struct GifCloser {
  GifFileType* gif;
  ~GifCloser() {
    int err = 0;
    if (gif) DGifCloseFile(gif, &err);
  }
};

std::array<uint8_t, 768> grey_ramp_palette() {
  std::array<uint8_t, 768> p{};
  for (int i = 0; i < 256; ++i) p[3 * i] = p[3 * i + 1] = p[3 * i + 2] = uint8_t(i);
  return p;
}

}  // namespace

Image decode_gif(const uint8_t* data, size_t size, const std::string& src, const ImageLimits& limits) {
  GifReader reader{data, size, 0};
  int err = 0;
  GifCloser closer{DGifOpen(&reader, gif_read, &err)};
  GifFileType* gif = closer.gif;
  if (!gif) fail(src, ": corrupt GIF: ", GifErrorString(err));
  check_dimensions(gif->SWidth, gif->SHeight, src, limits);
  int transparency = -1;
  for (;;) {
    GifRecordType type;
    if (DGifGetRecordType(gif, &type) == GIF_ERROR)
      fail(src, ": corrupt or truncated GIF: ", GifErrorString(gif->Error));
    if (type == TERMINATE_RECORD_TYPE) fail(src, ": GIF without any image");
    if (type == EXTENSION_RECORD_TYPE) {
      int code = 0;
      GifByteType* ext = nullptr;
      if (DGifGetExtension(gif, &code, &ext) == GIF_ERROR) fail(src, ": corrupt GIF extension");
      if (code == GRAPHICS_EXT_FUNC_CODE && ext && ext[0] >= 4 && (ext[1] & 1)) transparency = ext[4];
      while (ext) {
        if (DGifGetExtensionNext(gif, &ext) == GIF_ERROR) fail(src, ": corrupt GIF extension");
      }
      continue;
    }
    if (type != IMAGE_DESC_RECORD_TYPE) continue;
    if (DGifGetImageDesc(gif) == GIF_ERROR) fail(src, ": corrupt GIF image descriptor");
    const GifImageDesc& d = gif->Image;
    if (d.Width <= 0 || d.Height <= 0) fail(src, ": GIF frame of zero size");
    ColorMapObject* cmap = d.ColorMap ? d.ColorMap : gif->SColorMap;
    std::array<uint8_t, 768> pal = grey_ramp_palette();
    if (cmap) {
      for (int i = 0; i < std::min(cmap->ColorCount, 256); ++i) {
        pal[3 * i] = cmap->Colors[i].Red;
        pal[3 * i + 1] = cmap->Colors[i].Green;
        pal[3 * i + 2] = cmap->Colors[i].Blue;
      }
    }
    // Pillow's first frame starts as the transparency index (or 0) outside the frame rectangle.
    int W = gif->SWidth, H = gif->SHeight;
    std::vector<uint8_t> index(size_t(W) * H, uint8_t(transparency >= 0 ? transparency : 0));
    std::vector<GifPixelType> line(size_t(d.Width));
    auto put_row = [&](int row) {
      if (DGifGetLine(gif, line.data(), d.Width) == GIF_ERROR) fail(src, ": corrupt or truncated GIF data");
      int y = d.Top + row;
      if (y < 0 || y >= H) return;
      for (int x = 0; x < d.Width; ++x) {
        int xx = d.Left + x;
        if (xx >= 0 && xx < W) index[size_t(y) * W + xx] = line[x];
      }
    };
    if (d.Interlace) {
      const int start[4] = {0, 4, 2, 1}, step[4] = {8, 8, 4, 2};
      for (int pass = 0; pass < 4; ++pass)
        for (int r = start[pass]; r < d.Height; r += step[pass]) put_row(r);
    } else {
      for (int r = 0; r < d.Height; ++r) put_row(r);
    }
    Image img;
    img.width = W;
    img.height = H;
    img.rgb.resize(index.size() * 3);
    for (size_t i = 0; i < index.size(); ++i) std::memcpy(&img.rgb[3 * i], &pal[3 * index[i]], 3);
    return img;
  }
}

namespace {
uint32_t le32(const uint8_t* p) {
  return p[0] | (p[1] << 8) | (p[2] << 16) | (uint32_t(p[3]) << 24);
}
uint16_t le16(const uint8_t* p) {
  return uint16_t(p[0] | (p[1] << 8));
}
}  // namespace

Image decode_bmp(const uint8_t* data, size_t size, const std::string& src, const ImageLimits& limits) {
  if (size < 26) fail(src, ": truncated BMP header");
  uint32_t offset = le32(data + 10);
  uint32_t header = le32(data + 14);
  if (header != 12 && (header < 40 || header > 124)) fail(src, ": unsupported BMP header size ", header);
  if (size < 14 + size_t(header)) fail(src, ": truncated BMP header");
  const uint8_t* h = data + 14;
  int64_t width, height;
  int bpp;
  uint32_t compression = 0, colors = 0;
  size_t palette_entry = 4;
  if (header == 12) {
    width = le16(h + 4);
    height = int16_t(le16(h + 6));
    bpp = le16(h + 10);
    palette_entry = 3;
  } else {
    width = int32_t(le32(h + 4));
    height = int32_t(le32(h + 8));
    bpp = le16(h + 14);
    compression = le32(h + 16);
    colors = le32(h + 32);
  }
  bool top_down = height < 0;
  if (top_down) height = -height;
  check_dimensions(width, height, src, limits);
  uint32_t masks[3] = {0xff0000, 0xff00, 0xff};
  if (compression == 3 && (bpp == 32)) {
    size_t mask_at = 14 + 40;  // right after BITMAPINFOHEADER, or inside V4/V5 headers
    if (size < mask_at + 12) fail(src, ": truncated BMP bitfields");
    for (int i = 0; i < 3; ++i) masks[i] = le32(data + mask_at + 4 * i);
    for (uint32_t m : masks)
      if (m != 0xff && m != 0xff00 && m != 0xff0000 && m != 0xff000000)
        fail(src, ": unsupported BMP bitfield mask 0x", std::hex, m);
  } else if (compression != 0) {
    fail(src, ": unsupported BMP compression ", compression);
  }
  if (bpp != 1 && bpp != 4 && bpp != 8 && bpp != 24 && bpp != 32) fail(src, ": unsupported BMP bit depth ", bpp);
  std::array<uint8_t, 768> pal = grey_ramp_palette();
  if (bpp <= 8) {
    size_t count = colors ? colors : (1u << bpp);
    if (count > 256) fail(src, ": BMP palette too large");
    size_t at = 14 + size_t(header) + (compression == 3 && header == 40 ? 12 : 0);
    if (size < at + count * palette_entry) fail(src, ": truncated BMP palette");
    for (size_t i = 0; i < count; ++i) {
      const uint8_t* e = data + at + i * palette_entry;
      pal[3 * i] = e[2];
      pal[3 * i + 1] = e[1];
      pal[3 * i + 2] = e[0];
    }
  }
  size_t stride = ((size_t(width) * bpp + 31) / 32) * 4;
  if (offset > size || (size - offset) / stride < size_t(height)) fail(src, ": truncated BMP pixel data");
  Image img;
  img.width = int(width);
  img.height = int(height);
  img.rgb.resize(size_t(width) * height * 3);
  int shifts[3];
  for (int i = 0; i < 3; ++i) shifts[i] = __builtin_ctz(masks[i]);
  for (int64_t y = 0; y < height; ++y) {
    const uint8_t* row = data + offset + stride * size_t(top_down ? y : height - 1 - y);
    uint8_t* out = &img.rgb[size_t(y) * width * 3];
    for (int64_t x = 0; x < width; ++x, out += 3) {
      if (bpp == 24) {
        out[0] = row[3 * x + 2], out[1] = row[3 * x + 1], out[2] = row[3 * x];
      } else if (bpp == 32) {
        uint32_t v = le32(row + 4 * x);
        for (int c = 0; c < 3; ++c) out[c] = uint8_t(v >> shifts[c]);
      } else {
        int per_byte = 8 / bpp;
        int byte = row[x / per_byte];
        int idx = (byte >> (8 - bpp * (x % per_byte + 1))) & ((1 << bpp) - 1);
        std::memcpy(out, &pal[3 * idx], 3);
      }
    }
  }
  return img;
}

}  // namespace vlm::media_detail
