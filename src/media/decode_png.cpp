// PNG via libpng, converted like Pillow: 16-bit colour/alpha samples keep their high byte
// ("RGB;16B"), 16-bit grey becomes mode "I" and is clipped to 0..255 by convert("RGB"), low-depth
// grey is scaled, palettes are expanded, alpha and tRNS are dropped. The setjmp lives in
// run_decoder(), which holds no object with a destructor.
#include <png.h>

#include <csetjmp>
#include <cstdio>
#include <cstring>

#include "core/error.h"
#include "media/decoders.h"

namespace vlm::media_detail {
namespace {

using AllocFn = uint8_t* (*)(void* ctx, int width, int height, int channels, int bytes_per_sample) noexcept;

struct Job {
  const uint8_t* data;
  size_t size;
  size_t pos;
  AllocFn alloc;
  void* ctx;
  int channels;
  int bit_depth;
  char message[256];
};

void on_error(png_structp png, png_const_charp msg) {
  auto* job = static_cast<Job*>(png_get_error_ptr(png));
  std::snprintf(job->message, sizeof(job->message), "%s", msg);
  png_longjmp(png, 1);
}
void on_warning(png_structp, png_const_charp) {}

void read_bytes(png_structp png, png_bytep out, png_size_t n) {
  auto* job = static_cast<Job*>(png_get_io_ptr(png));
  if (job->size - job->pos < n) png_error(png, "truncated PNG data");
  std::memcpy(out, job->data + job->pos, n);
  job->pos += n;
}

bool run_decoder(Job* job) {
  job->message[0] = '\0';
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, job, on_error, on_warning);
  if (!png) return false;
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    return false;
  }
  png_bytep* volatile rows = nullptr;  // read after longjmp
  if (setjmp(png_jmpbuf(png))) {
    std::free(rows);
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  png_set_read_fn(png, job, read_bytes);
  // Pillow does not verify ancillary chunk CRCs strictly either; keep critical ones strict.
  png_set_crc_action(png, PNG_CRC_DEFAULT, PNG_CRC_WARN_USE);
  png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
  png_read_info(png, info);
  int color = png_get_color_type(png, info);
  int depth = png_get_bit_depth(png, info);
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (depth == 16 && color != PNG_COLOR_TYPE_GRAY) png_set_strip_16(png);
  if (depth == 16 && color == PNG_COLOR_TYPE_GRAY) png_set_swap(png);  // native little-endian uint16
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  int width = int(png_get_image_width(png, info));
  int height = int(png_get_image_height(png, info));
  job->channels = png_get_channels(png, info);
  job->bit_depth = png_get_bit_depth(png, info);
  int bytes = job->bit_depth == 16 ? 2 : 1;
  uint8_t* out = job->alloc(job->ctx, width, height, job->channels, bytes);
  if (!out) {
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  rows = static_cast<png_bytep*>(std::malloc(sizeof(png_bytep) * size_t(height)));
  if (!rows) png_error(png, "out of memory");
  size_t stride = size_t(width) * job->channels * bytes;
  for (int y = 0; y < height; ++y) rows[y] = out + y * stride;
  png_read_image(png, rows);
  png_read_end(png, nullptr);
  std::free(rows);
  png_destroy_read_struct(&png, &info, nullptr);
  return true;
}

uint8_t* allocate(void* p, int width, int height, int channels, int bytes) noexcept {
  return static_cast<PixelBuffer*>(p)->allocate(width, height, size_t(channels) * size_t(bytes));
}

}  // namespace

Image decode_png(const uint8_t* data, size_t size, const std::string& src, const ImageLimits& limits) {
  PixelBuffer ctx;
  ctx.src = &src;
  ctx.limits = &limits;
  Job job{data, size, 0, &allocate, &ctx, 0, 0, {}};
  if (!run_decoder(&job)) {
    if (!ctx.error.empty()) throw Error(ctx.error);
    fail(src, ": corrupt PNG: ", job.message[0] ? job.message : "libpng failure");
  }
  Image img;
  img.width = ctx.width;
  img.height = ctx.height;
  size_t n = size_t(img.width) * img.height;
  const uint8_t* in = ctx.bytes.data();
  if (job.channels == 3 && job.bit_depth == 8) {
    img.rgb = std::move(ctx.bytes);
    return img;
  }
  img.rgb.resize(n * 3);
  uint8_t* out = img.rgb.data();
  if (job.bit_depth == 16) {  // grey, mode "I": convert("RGB") clips to 0..255
    const auto* v = reinterpret_cast<const uint16_t*>(in);
    for (size_t i = 0; i < n; ++i) out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = uint8_t(v[i] > 255 ? 255 : v[i]);
    return img;
  }
  int ch = job.channels;
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* p = in + i * ch;
    if (ch <= 2) {
      out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = p[0];
    } else {
      out[3 * i] = p[0];
      out[3 * i + 1] = p[1];
      out[3 * i + 2] = p[2];
    }
  }
  return img;
}

}  // namespace vlm::media_detail
