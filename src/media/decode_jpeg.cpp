// JPEG via libjpeg-turbo with Pillow's settings (default islow IDCT, fancy upsampling, JCS_RGB
// output). libjpeg reports errors through a callback that must not return; we longjmp out of it,
// and the setjmp lives in run_decoder(), a C-style function that holds no object with a destructor.
#include <csetjmp>
#include <cstddef>
#include <cstdio>
#include <cstring>

// jpeglib.h needs size_t and FILE declared first.
#include <jerror.h>
#include <jpeglib.h>

#include "core/error.h"
#include "media/decoders.h"

namespace vlm::media_detail {
namespace {

struct ErrorManager {
  jpeg_error_mgr pub;
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void on_error(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<ErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  longjmp(err->jump, 1);
}

// Warnings are ignored like Pillow does, except running out of data: Pillow refuses truncated
// files ("image file is truncated") where libjpeg would pad with grey.
void on_message(j_common_ptr cinfo, int level) {
  if (level == -1 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
    auto* err = reinterpret_cast<ErrorManager*>(cinfo->err);
    std::snprintf(err->message, sizeof(err->message), "truncated JPEG data");
    longjmp(err->jump, 1);
  }
}

// Called once the header is known; returns the destination (height rows of width*components
// bytes) or nullptr to abort (the reason is kept by the callee).
using AllocFn = uint8_t* (*)(void* ctx, int width, int height, int components) noexcept;

struct Job {
  const uint8_t* data;
  size_t size;
  AllocFn alloc;
  void* ctx;
  int components;  // output: 1 (gray), 3 (RGB), 4 (inverted CMYK as Pillow reads it)
  char message[JMSG_LENGTH_MAX];
};

bool run_decoder(Job* job) {
  jpeg_decompress_struct cinfo;
  ErrorManager err;
  cinfo.err = jpeg_std_error(&err.pub);
  err.pub.error_exit = on_error;
  err.pub.emit_message = on_message;
  err.message[0] = '\0';
  job->message[0] = '\0';
  if (setjmp(err.jump)) {
    std::memcpy(job->message, err.message, sizeof(job->message));
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, job->data, static_cast<unsigned long>(job->size));
  jpeg_read_header(&cinfo, TRUE);
  switch (cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE: cinfo.out_color_space = JCS_GRAYSCALE; break;
    case JCS_CMYK:
    case JCS_YCCK: cinfo.out_color_space = JCS_CMYK; break;
    default: cinfo.out_color_space = JCS_RGB; break;
  }
  jpeg_calc_output_dimensions(&cinfo);
  int comps = cinfo.out_color_components;
  uint8_t* out = job->alloc(job->ctx, int(cinfo.output_width), int(cinfo.output_height), comps);
  if (!out) {
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  job->components = comps;
  jpeg_start_decompress(&cinfo);
  size_t stride = size_t(cinfo.output_width) * comps;
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW rows[4];
    int n = 0;
    for (; n < 4 && cinfo.output_scanline + n < cinfo.output_height; ++n)
      rows[n] = out + (cinfo.output_scanline + n) * stride;
    jpeg_read_scanlines(&cinfo, rows, n);
  }
  // Pillow stops after the last scanline; trailing garbage is not an error.
  jpeg_abort_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return true;
}

uint8_t* allocate(void* p, int width, int height, int components) noexcept {
  return static_cast<PixelBuffer*>(p)->allocate(width, height, size_t(components));
}

// Pillow's cmyk2rgb on "CMYK;I" data (libjpeg returns Adobe-inverted values, Pillow re-inverts).
inline uint8_t muldiv255(int a, int b) {
  int t = a * b + 128;
  return uint8_t(((t >> 8) + t) >> 8);
}

}  // namespace

Image decode_jpeg(const uint8_t* data, size_t size, const std::string& src, const ImageLimits& limits) {
  PixelBuffer ctx;
  ctx.src = &src;
  ctx.limits = &limits;
  Job job{data, size, &allocate, &ctx, 0, {}};
  if (!run_decoder(&job)) {
    if (!ctx.error.empty()) throw Error(ctx.error);
    fail(src, ": corrupt JPEG: ", job.message);
  }
  Image img;
  img.width = ctx.width;
  img.height = ctx.height;
  size_t n = size_t(img.width) * img.height;
  if (job.components == 3) {
    img.rgb = std::move(ctx.bytes);
  } else if (job.components == 1) {
    img.rgb.resize(n * 3);
    for (size_t i = 0; i < n; ++i) img.rgb[3 * i] = img.rgb[3 * i + 1] = img.rgb[3 * i + 2] = ctx.bytes[i];
  } else if (job.components == 4) {
    img.rgb.resize(n * 3);
    for (size_t i = 0; i < n; ++i) {
      const uint8_t* p = &ctx.bytes[4 * i];
      int nk = p[3];  // 255 - (255 - k) after Pillow's inversion
      for (int c = 0; c < 3; ++c) {
        int v = nk - muldiv255(255 - p[c], nk);
        img.rgb[3 * i + c] = uint8_t(v < 0 ? 0 : v);
      }
    }
  } else {
    fail(src, ": unsupported JPEG with ", job.components, " components");
  }
  return img;
}

}  // namespace vlm::media_detail
