#include "models/paligemma/detection.h"

#include <png.h>

#include <algorithm>
#include <cctype>
#include <csetjmp>
#include <cstdio>
#include <memory>

#include "core/error.h"

namespace vlm {

namespace {

// Reads "<{name}{digits}>" at `pos`; returns the value and advances, or -1 leaving pos.
int read_token(const std::string& s, size_t& pos, const char* name, int digits) {
  const size_t len = std::char_traits<char>::length(name);
  if (s.compare(pos, 1, "<") != 0 || s.compare(pos + 1, len, name) != 0) return -1;
  size_t p = pos + 1 + len;
  int v = 0;
  for (int i = 0; i < digits; ++i, ++p) {
    if (p >= s.size() || !std::isdigit(static_cast<unsigned char>(s[p]))) return -1;
    v = v * 10 + (s[p] - '0');
  }
  if (p >= s.size() || s[p] != '>') return -1;
  pos = p + 1;
  return v;
}

bool is_space(char c) {
  return std::isspace(static_cast<unsigned char>(c)) != 0;
}

// 5x7 glyphs, one byte per row (bit 4 = leftmost column), for digits, capitals and a little
// punctuation; lower case is drawn in capitals and anything else as '?'.
struct Glyph {
  char ch;
  uint8_t rows[7];
};
constexpr Glyph kFont[] = {
    {' ', {0, 0, 0, 0, 0, 0, 0}},
    {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}},
    {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}},
    {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
    {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}},
    {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
    {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}},
    {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
    {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}},
    {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
    {'A', {0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
    {'B', {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E}},
    {'C', {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E}},
    {'D', {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C}},
    {'E', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F}},
    {'F', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10}},
    {'G', {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F}},
    {'H', {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
    {'I', {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'J', {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C}},
    {'K', {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}},
    {'L', {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F}},
    {'M', {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11}},
    {'N', {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11}},
    {'O', {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}},
    {'P', {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10}},
    {'Q', {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D}},
    {'R', {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11}},
    {'S', {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E}},
    {'T', {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
    {'U', {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}},
    {'V', {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04}},
    {'W', {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A}},
    {'X', {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11}},
    {'Y', {0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04}},
    {'Z', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F}},
    {'-', {0, 0, 0, 0x1F, 0, 0, 0}},
    {'.', {0, 0, 0, 0, 0, 0x0C, 0x0C}},
    {',', {0, 0, 0, 0, 0x0C, 0x04, 0x08}},
    {':', {0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0}},
    {'_', {0, 0, 0, 0, 0, 0, 0x1F}},
    {'/', {0, 0x01, 0x02, 0x04, 0x08, 0x10, 0}},
    {'(', {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}},
    {')', {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}},
    {'!', {0x04, 0x04, 0x04, 0x04, 0x04, 0, 0x04}},
    {'\'', {0x0C, 0x04, 0x08, 0, 0, 0, 0}},
    {'?', {0x0E, 0x11, 0x01, 0x02, 0x04, 0, 0x04}},
};

const Glyph& glyph_for(char c) {
  char u = char(std::toupper(static_cast<unsigned char>(c)));
  for (const Glyph& g : kFont)
    if (g.ch == u) return g;
  return kFont[sizeof(kFont) / sizeof(kFont[0]) - 1];  // '?'
}

struct Rgb {
  uint8_t r, g, b;
};
constexpr Rgb kPalette[] = {{255, 56, 56},  {56, 200, 56}, {56, 120, 255}, {255, 200, 0},
                            {255, 56, 255}, {0, 210, 210}, {255, 140, 0},  {150, 80, 255}};

void fill(Image& img, int x0, int y0, int x1, int y1, Rgb c) {  // [x0, x1) x [y0, y1), clipped
  x0 = std::max(x0, 0), y0 = std::max(y0, 0);
  x1 = std::min(x1, img.width), y1 = std::min(y1, img.height);
  for (int y = y0; y < y1; ++y)
    for (int x = x0; x < x1; ++x) {
      uint8_t* p = img.rgb.data() + (size_t(y) * img.width + x) * 3;
      p[0] = c.r, p[1] = c.g, p[2] = c.b;
    }
}

}  // namespace

std::vector<Detection> parse_detections(const std::string& text, int image_width, int image_height) {
  std::vector<Detection> out;
  size_t pos = 0;
  while ((pos = text.find("<loc", pos)) != std::string::npos) {
    size_t p = pos;
    Detection d;
    bool ok = true;
    for (int i = 0; i < 4 && ok; ++i) {
      d.bins[size_t(i)] = read_token(text, p, "loc", 4);
      ok = d.bins[size_t(i)] >= 0;
    }
    if (!ok) {  // a stray or incomplete box: skip past it
      pos += 4;
      continue;
    }
    for (int code; (code = read_token(text, p, "seg", 3)) >= 0;) d.seg.push_back(code);
    while (p < text.size() && is_space(text[p])) ++p;
    size_t end = p;
    while (end < text.size() && text[end] != ';' && text[end] != '<') ++end;
    size_t stop = end;
    while (stop > p && is_space(text[stop - 1])) --stop;
    d.label = text.substr(p, stop - p);
    d.y_min = float(d.bins[0]) / 1024.f * float(image_height);
    d.x_min = float(d.bins[1]) / 1024.f * float(image_width);
    d.y_max = float(d.bins[2]) / 1024.f * float(image_height);
    d.x_max = float(d.bins[3]) / 1024.f * float(image_width);
    out.push_back(std::move(d));
    pos = end;
  }
  return out;
}

std::vector<int> parse_seg_codes(const std::string& text) {
  std::vector<int> out;
  size_t pos = 0;
  while ((pos = text.find("<seg", pos)) != std::string::npos) {
    size_t p = pos;
    int code = read_token(text, p, "seg", 3);
    if (code >= 0) out.push_back(code);
    pos = code >= 0 ? p : pos + 4;
  }
  return out;
}

Image draw_detections(const Image& image, const std::vector<Detection>& detections) {
  Image img = image;
  if (img.width <= 0 || img.height <= 0) return img;
  if (img.rgb.size() != size_t(img.width) * size_t(img.height) * 3)
    fail("draw_detections: image buffer holds ", img.rgb.size(), " bytes, not ", img.width, "x", img.height, "x3");
  const int small = std::min(img.width, img.height);
  const int t = std::max(1, small / 200);      // line thickness
  const int scale = std::max(1, small / 300);  // font pixel size
  for (size_t i = 0; i < detections.size(); ++i) {
    const Detection& d = detections[i];
    Rgb c = kPalette[i % (sizeof(kPalette) / sizeof(kPalette[0]))];
    int x0 = int(std::min(d.x_min, d.x_max)), x1 = int(std::max(d.x_min, d.x_max));
    int y0 = int(std::min(d.y_min, d.y_max)), y1 = int(std::max(d.y_min, d.y_max));
    x0 = std::clamp(x0, 0, img.width - 1), x1 = std::clamp(x1, 0, img.width - 1);
    y0 = std::clamp(y0, 0, img.height - 1), y1 = std::clamp(y1, 0, img.height - 1);
    fill(img, x0, y0, x1 + 1, y0 + t, c);
    fill(img, x0, y1 + 1 - t, x1 + 1, y1 + 1, c);
    fill(img, x0, y0, x0 + t, y1 + 1, c);
    fill(img, x1 + 1 - t, y0, x1 + 1, y1 + 1, c);
    if (d.label.empty()) continue;
    // Label on a filled band above the box (inside it when the box touches the top edge).
    const int gw = 6 * scale, gh = 9 * scale;
    const int tw = int(d.label.size()) * gw + scale;
    int ty = y0 - gh >= 0 ? y0 - gh : y0;
    fill(img, x0, ty, x0 + tw, ty + gh, c);
    for (size_t k = 0; k < d.label.size(); ++k) {
      const Glyph& g = glyph_for(d.label[k]);
      int gx = x0 + scale + int(k) * gw, gy = ty + scale;
      for (int r = 0; r < 7; ++r)
        for (int col = 0; col < 5; ++col)
          if (g.rows[r] & (0x10 >> col))
            fill(img, gx + col * scale, gy + r * scale, gx + (col + 1) * scale, gy + (r + 1) * scale, {255, 255, 255});
    }
  }
  return img;
}

void write_png(const std::string& path, const Image& image) {
  if (image.width <= 0 || image.height <= 0) fail(path, ": cannot write an empty image");
  if (image.rgb.size() != size_t(image.width) * size_t(image.height) * 3)
    fail(path, ": image buffer holds ", image.rgb.size(), " bytes, not ", image.width, "x", image.height, "x3");
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "wb"), &std::fclose);
  if (!f) fail(path, ": cannot open for writing");
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  if (!png) fail(path, ": libpng initialisation failed");
  png_infop info = png_create_info_struct(png);
  if (!info || setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    fail(path, ": writing PNG failed");
  }
  png_init_io(png, f.get());
  png_set_IHDR(png, info, png_uint_32(image.width), png_uint_32(image.height), 8, PNG_COLOR_TYPE_RGB,
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int y = 0; y < image.height; ++y)
    png_write_row(png, const_cast<png_bytep>(image.rgb.data() + size_t(y) * image.width * 3));
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  if (std::fflush(f.get()) != 0) fail(path, ": write error");
}

}  // namespace vlm
