// Qwen2VLProcessor: chat template -> prompt text, images/videos -> patch rows and grids, each
// <|image_pad|> / <|video_pad|> expanded to the item's merged token count, then tokenized.
#include <filesystem>

#include "media/preprocess.h"
#include "models/qwen2_vl/qwen2_vl.h"
#include "text/chat_template.h"

namespace vlm {

namespace {

class Qwen2VLProcessor : public Processor {
 public:
  Qwen2VLProcessor(const std::string& model_dir, const Tokenizer& tokenizer, const json& config)
      : dir_(model_dir), tokenizer_(tokenizer) {
    namespace fs = std::filesystem;
    cfg_ = Qwen2VLConfig::from_json(config, model_dir + "/config.json");
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
      fail("qwen2_vl processor: min_pixels ", icfg.min_pixels, " exceeds max_pixels ", icfg.max_pixels);
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
            if (part.frames.empty()) fail("qwen2_vl processor: a video part has no frames");
            content.push_back({{"type", "video"}});
            std::vector<Image> frames;
            for (const Image& f : part.frames) frames.push_back(sized(f, options, icfg));
            Qwen2VLPatches p = qwen2vl_preprocess(frames, icfg, options.pool);
            in.videos.push_back(p.pixel_values);
            in.video_grids.push_back(p.grid_thw);
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
  static std::string expand(const std::string& text, const std::string& token, const std::vector<Grid>& grids,
                            int64_t unit, const char* kind) {
    std::string out;
    size_t pos = 0, k = 0;
    for (;;) {
      size_t at = text.find(token, pos);
      if (at == std::string::npos) break;
      if (k >= grids.size())
        fail("qwen2_vl processor: the rendered prompt has more ", token, " placeholders than ", kind, "s given (",
             grids.size(), ")");
      out.append(text, pos, at - pos);
      const Grid& g = grids[k++];
      for (int64_t i = 0; i < g[0] * g[1] * g[2] / unit; ++i) out += token;
      pos = at + token.size();
    }
    if (k != grids.size())
      fail("qwen2_vl processor: ", grids.size(), " ", kind, "s given but the chat template placed ", k, " ", token,
           " placeholders");
    out.append(text, pos, std::string::npos);
    return out;
  }

  std::string dir_;
  Tokenizer tokenizer_;
  Qwen2VLConfig cfg_;
  Qwen2VLImageConfig image_cfg_;
  std::string template_;
};

}  // namespace

std::unique_ptr<Processor> make_qwen2_vl_processor(const std::string& model_dir, const Tokenizer& tokenizer,
                                                   const json& config) {
  return std::make_unique<Qwen2VLProcessor>(model_dir, tokenizer, config);
}

}  // namespace vlm
