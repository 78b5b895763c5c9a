// Qwen2VLProcessor: chat template -> prompt text, images/videos -> patch rows and grids, each
// <|image_pad|> / <|video_pad|> expanded to the item's merged token count, then tokenized.
#include <cmath>
#include <filesystem>

#include "media/preprocess.h"
#include "models/qwen2_vl/qwen2_vl.h"
#include "text/chat_template.h"

namespace vlm {

namespace {

class Qwen2VLProcessor : public Processor {
 public:
  Qwen2VLProcessor(const std::string& model_dir, const Tokenizer& tokenizer, const Qwen2VLConfig& config,
                   const std::string& family)
      : dir_(model_dir), family_(family), tokenizer_(tokenizer), cfg_(config) {
    namespace fs = std::filesystem;
    fs::path pre = fs::path(model_dir) / "preprocessor_config.json";
    if (fs::exists(pre)) image_cfg_ = Qwen2VLImageConfig::from_file(pre.string());
    image_cfg_.patch_size = int(cfg_.vision.patch_size);
    image_cfg_.temporal_patch_size = int(cfg_.vision.temporal_patch_size);
    image_cfg_.merge_size = int(cfg_.vision.spatial_merge_size);
    template_ = tokenizer_.chat_template();
    if (template_.empty()) fail(model_dir, ": no chat template (tokenizer_config.json, chat_template.json or .jinja)");
  }

  ModelInput prepare(const std::vector<ChatMessage>& messages, const ProcessingOptions& options) const override {
    Qwen2VLImageConfig icfg = image_cfg_;
    if (options.min_pixels > 0) icfg.min_pixels = options.min_pixels;
    if (options.max_pixels > 0) icfg.max_pixels = options.max_pixels;
    if (icfg.min_pixels > icfg.max_pixels)
      fail(family_, " processor: min_pixels ", icfg.min_pixels, " exceeds max_pixels ", icfg.max_pixels);
    ModelInput in;
    json msgs = json::array();
    for (const ChatMessage& m : messages) {
      json content = json::array();
      for (const ContentPart& part : m.content) {
        switch (part.kind) {
          case ContentPart::Kind::Text: content.push_back({{"type", "text"}, {"text", part.text}}); break;
          case ContentPart::Kind::Image: {
            content.push_back({{"type", "image"}});
            Qwen2VLPatches p = qwen2vl_preprocess({sized(part.image, options, icfg)}, icfg, options.pool);
            in.images.push_back(p.pixel_values);
            in.image_grids.push_back(p.grid_thw);
            break;
          }
          case ContentPart::Kind::Video: {
            if (part.frames.empty()) fail(family_, " processor: a video part has no frames");
            if (!(part.fps >= 0) || !std::isfinite(part.fps))
              fail(family_, " processor: a video's fps must be positive (got ", part.fps, ")");
            content.push_back({{"type", "video"}});
            std::vector<Image> frames;
            for (const Image& f : part.frames) frames.push_back(sized(f, options, icfg));
            Qwen2VLPatches p = qwen2vl_preprocess(frames, icfg, options.pool);
            in.videos.push_back(p.pixel_values);
            in.video_grids.push_back(p.grid_thw);
            // Qwen2_5_VLProcessor: second_per_grid_ts = temporal_patch_size / fps (fps 2.0 by default).
            in.video_second_per_grid.push_back(double(icfg.temporal_patch_size) / (part.fps > 0 ? part.fps : 2.0));
            break;
          }
        }
      }
      msgs.push_back({{"role", m.role}, {"content", content}});
    }
    json ctx = {{"messages", msgs},
                {"add_generation_prompt", options.add_generation_prompt},
                {"bos_token", tokenizer_.bos_token()},
                {"eos_token", tokenizer_.eos_token()}};
    std::string text = render_chat_template(template_, ctx);
    in.prompt_text = text;
    const int64_t unit = cfg_.vision.spatial_merge_size * cfg_.vision.spatial_merge_size;
    std::string expanded = expand(text, "<|image_pad|>", in.image_grids, unit, "image");
    expanded = expand(expanded, "<|video_pad|>", in.video_grids, unit, "video");
    in.ids = tokenizer_.encode(expanded, /*add_special_tokens=*/false);
    return in;
  }

 private:
  // An explicit resize target is rounded by smart_resize (as qwen-vl-utils' resized_height /
  // resized_width do) and applied before preprocessing, which then keeps the size.
  static Image sized(const Image& img, const ProcessingOptions& o, const Qwen2VLImageConfig& c) {
    if (o.resize_width <= 0 && o.resize_height <= 0) return img;
    int w = o.resize_width > 0 ? o.resize_width : img.width;
    int h = o.resize_height > 0 ? o.resize_height : img.height;
    auto hw = qwen2vl_smart_resize(h, w, c.patch_size * c.merge_size, c.min_pixels, c.max_pixels);
    if (hw[0] == img.height && hw[1] == img.width) return img;
    return resize(img, hw[1], hw[0], Resample::Bicubic, o.pool);
  }

  // Replaces the k-th `token` by grid_k.t·h·w/unit copies; the counts of items must agree.
  std::string expand(const std::string& text, const std::string& token, const std::vector<Grid>& grids, int64_t unit,
                     const char* kind) const {
    std::string out;
    size_t pos = 0, k = 0;
    for (;;) {
      size_t at = text.find(token, pos);
      if (at == std::string::npos) break;
      if (k >= grids.size())
        fail(family_, " processor: the rendered prompt has more ", token, " placeholders than ", kind, "s given (",
             grids.size(), ")");
      out.append(text, pos, at - pos);
      const Grid& g = grids[k++];
      for (int64_t i = 0; i < g[0] * g[1] * g[2] / unit; ++i) out += token;
      pos = at + token.size();
    }
    if (k != grids.size())
      fail(family_, " processor: ", grids.size(), " ", kind, "s given but the chat template placed ", k, " ", token,
           " placeholders");
    out.append(text, pos, std::string::npos);
    return out;
  }

  std::string dir_, family_;
  Tokenizer tokenizer_;
  Qwen2VLConfig cfg_;
  Qwen2VLImageConfig image_cfg_;
  std::string template_;
};

}  // namespace

std::unique_ptr<Processor> make_qwen2_vl_processor(const std::string& model_dir, const Tokenizer& tokenizer,
                                                   const json& config) {
  return make_qwen2_vl_style_processor(model_dir, tokenizer,
                                       Qwen2VLConfig::from_json(config, model_dir + "/config.json"), "qwen2_vl");
}

std::unique_ptr<Processor> make_qwen2_vl_style_processor(const std::string& model_dir, const Tokenizer& tokenizer,
                                                         const Qwen2VLConfig& config, const std::string& family) {
  return std::make_unique<Qwen2VLProcessor>(model_dir, tokenizer, config, family);
}

// ---- Qwen2VLImageProcessor: smart_resize and patchify ----

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
  c.mean = read_image_triple(j, "image_mean", c.mean, path);
  c.std = read_image_triple(j, "image_std", c.std, path);
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

}  // namespace vlm
