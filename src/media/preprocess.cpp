// Hugging Face's PIL-based Qwen2-VL and SigLIP image processors.
#include "media/preprocess.h"

#include <cmath>

#include "core/error.h"
#include "io/json_file.h"

namespace vlm {

std::vector<float> rescale_normalize_chw(const Image& img, const std::array<float, 3>& mean,
                                         const std::array<float, 3>& std) {
  const size_t n = size_t(img.width) * img.height;
  // The 256 possible values per channel, computed once with transformers' exact float steps.
  float lut[3][256];
  for (int c = 0; c < 3; ++c)
    for (int v = 0; v < 256; ++v) lut[c][v] = (float(double(v) * (1.0 / 255.0)) - mean[c]) / std[c];
  std::vector<float> out(3 * n);
  for (size_t i = 0; i < n; ++i)
    for (int c = 0; c < 3; ++c) out[c * n + i] = lut[c][img.rgb[3 * i + c]];
  return out;
}

namespace {
std::array<float, 3> read_triple(const json& j, const char* key, std::array<float, 3> fallback,
                                 const std::string& where) {
  auto v = json_get<std::vector<float>>(j, key, {fallback.begin(), fallback.end()}, where);
  if (v.size() == 1) return {v[0], v[0], v[0]};
  if (v.size() != 3) fail(where, ": field '", key, "' must have 3 values");
  return {v[0], v[1], v[2]};
}
}  // namespace

Qwen2VLImageConfig Qwen2VLImageConfig::from_file(const std::string& path) {
  json j = read_json_file(path);
  Qwen2VLImageConfig c;
  // Precedence as transformers applies it: size.{shortest,longest}_edge, then size.{min,max}_pixels
  // (the 4.45 re-serialisation), then top-level min_pixels / max_pixels.
  auto size = j.find("size");
  if (size != j.end() && size->is_object()) {
    c.min_pixels = json_get<int64_t>(*size, "shortest_edge", c.min_pixels, path + " size");
    c.max_pixels = json_get<int64_t>(*size, "longest_edge", c.max_pixels, path + " size");
    c.min_pixels = json_get<int64_t>(*size, "min_pixels", c.min_pixels, path + " size");
    c.max_pixels = json_get<int64_t>(*size, "max_pixels", c.max_pixels, path + " size");
  }
  c.min_pixels = json_get<int64_t>(j, "min_pixels", c.min_pixels, path);
  c.max_pixels = json_get<int64_t>(j, "max_pixels", c.max_pixels, path);
  c.patch_size = json_get<int>(j, "patch_size", c.patch_size, path);
  c.temporal_patch_size = json_get<int>(j, "temporal_patch_size", c.temporal_patch_size, path);
  c.merge_size = json_get<int>(j, "merge_size", c.merge_size, path);
  c.mean = read_triple(j, "image_mean", c.mean, path);
  c.std = read_triple(j, "image_std", c.std, path);
  if (c.min_pixels <= 0 || c.max_pixels < c.min_pixels) fail(path, ": invalid min_pixels/max_pixels");
  if (c.patch_size <= 0 || c.temporal_patch_size <= 0 || c.merge_size <= 0)
    fail(path, ": patch_size, temporal_patch_size and merge_size must be positive");
  return c;
}

std::array<int, 2> qwen2vl_smart_resize(int height, int width, int factor, int64_t min_pixels, int64_t max_pixels) {
  if (height < factor || width < factor)
    fail("smart_resize: image of ", width, "x", height, " is smaller than the factor ", factor);
  if (double(std::max(height, width)) / std::min(height, width) > 200)
    fail("smart_resize: aspect ratio of ", width, "x", height, " exceeds 200");
  // Python's round() rounds halves to even, as nearbyint does in the default rounding mode.
  int64_t hb = int64_t(std::nearbyint(double(height) / factor)) * factor;
  int64_t wb = int64_t(std::nearbyint(double(width) / factor)) * factor;
  if (hb * wb > max_pixels) {
    double beta = std::sqrt(double(int64_t(height) * width) / double(max_pixels));
    hb = std::max<int64_t>(factor, int64_t(std::floor(height / beta / factor)) * factor);
    wb = std::max<int64_t>(factor, int64_t(std::floor(width / beta / factor)) * factor);
  } else if (hb * wb < min_pixels) {
    double beta = std::sqrt(double(min_pixels) / double(int64_t(height) * width));
    hb = int64_t(std::ceil(height * beta / factor)) * factor;
    wb = int64_t(std::ceil(width * beta / factor)) * factor;
  }
  return {int(hb), int(wb)};
}

Qwen2VLPatches qwen2vl_preprocess(const std::vector<Image>& frames, const Qwen2VLImageConfig& cfg, ThreadPool* pool) {
  if (frames.empty()) fail("qwen2vl_preprocess: no image");
  const int P = cfg.patch_size, T = cfg.temporal_patch_size, M = cfg.merge_size;
  auto [H, W] = qwen2vl_smart_resize(frames[0].height, frames[0].width, P * M, cfg.min_pixels, cfg.max_pixels);
  std::vector<std::vector<float>> planes;  // CHW per frame
  for (const Image& f : frames)
    planes.push_back(rescale_normalize_chw(resize(f, W, H, Resample::Bicubic, pool), cfg.mean, cfg.std));
  while (planes.size() % T) planes.push_back(planes.back());  // a still image repeats to T frames
  const int64_t gt = int64_t(planes.size()) / T, gh = H / P, gw = W / P;
  const int64_t row_len = 3 * int64_t(T) * P * P;
  Qwen2VLPatches out;
  out.pixel_values = Tensor::empty(DType::F32, {gt * gh * gw, row_len});
  out.grid_thw = {gt, gh, gw};
  out.resized_height = H;
  out.resized_width = W;
  float* dst = out.pixel_values.data<float>();
  const size_t plane = size_t(H) * W;
  // Rows: frame group, merge-block row, merge-block column, row and column inside the block;
  // each row is C x T x P x P.
  for (int64_t t = 0; t < gt; ++t)
    for (int64_t bh = 0; bh < gh / M; ++bh)
      for (int64_t bw = 0; bw < gw / M; ++bw)
        for (int mh = 0; mh < M; ++mh)
          for (int mw = 0; mw < M; ++mw) {
            const int64_t y0 = (bh * M + mh) * P, x0 = (bw * M + mw) * P;
            for (int c = 0; c < 3; ++c)
              for (int tt = 0; tt < T; ++tt) {
                const float* src = planes[t * T + tt].data() + c * plane;
                for (int py = 0; py < P; ++py, dst += P) std::copy_n(src + (y0 + py) * W + x0, P, dst);
              }
          }
  return out;
}

namespace {
Resample pil_resample(int code, const std::string& where) {
  switch (code) {
    case 0: return Resample::Nearest;
    case 1: return Resample::Lanczos;
    case 2: return Resample::Bilinear;
    case 3: return Resample::Bicubic;
    case 4: return Resample::Box;
    case 5: return Resample::Hamming;
    default: fail(where, ": unknown PIL resample code ", code);
  }
}
}  // namespace

SiglipImageConfig SiglipImageConfig::from_file(const std::string& path) {
  json j = read_json_file(path);
  SiglipImageConfig c;
  auto size = j.find("size");
  if (size != j.end() && size->is_object()) {
    c.height = json_get<int>(*size, "height", c.height, path + " size");
    c.width = json_get<int>(*size, "width", c.width, path + " size");
  }
  if (c.height <= 0 || c.width <= 0) fail(path, ": size must be positive");
  c.mean = read_triple(j, "image_mean", c.mean, path);
  c.std = read_triple(j, "image_std", c.std, path);
  c.resample = pil_resample(json_get<int>(j, "resample", 3, path), path);
  return c;
}

Tensor siglip_preprocess(const Image& img, const SiglipImageConfig& cfg, ThreadPool* pool) {
  std::vector<float> v = rescale_normalize_chw(resize(img, cfg.width, cfg.height, cfg.resample, pool), cfg.mean, cfg.std);
  return Tensor::from_floats(v, {3, cfg.height, cfg.width});
}

}  // namespace vlm
