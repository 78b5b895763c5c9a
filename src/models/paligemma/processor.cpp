// PaliGemmaProcessor: "<image>" x image_seq_length + <bos> + prompt + "\n", one image per prompt,
// SigLIP preprocessing (PIL-exact bicubic resize, rescale, normalise).
#include <filesystem>

#include "media/preprocess.h"
#include "models/paligemma/paligemma.h"

namespace vlm {

namespace {

class PaliGemmaProcessor : public Processor {
 public:
  PaliGemmaProcessor(const std::string& model_dir, const Tokenizer& tokenizer, const json& config)
      : tokenizer_(tokenizer) {
    const std::string where = model_dir + "/config.json";
    PaliGemmaConfig cfg = PaliGemmaConfig::from_json(config, where);
    image_token_ = cfg.image_token_index;
    bos_ = tokenizer.bos_id().value_or(cfg.bos_token_id);
    const int64_t patches = cfg.vision.num_patches();
    auto pre = std::filesystem::path(model_dir) / "preprocessor_config.json";
    image_seq_length_ = patches;
    if (std::filesystem::exists(pre)) {
      json p = read_json_file(pre.string());
      image_seq_length_ = json_get<int64_t>(p, "image_seq_length", patches, pre.string());
      image_cfg_ = SiglipImageConfig::from_file(pre.string());
    } else {
      image_cfg_.height = image_cfg_.width = int(cfg.vision.image_size);
    }
    if (image_seq_length_ != patches)
      fail(pre.string(), ": image_seq_length ", image_seq_length_, " differs from the vision tower's ", patches,
           " patches ((image_size / patch_size)^2 in ", where, ")");
    if (image_cfg_.height != cfg.vision.image_size || image_cfg_.width != cfg.vision.image_size)
      fail(pre.string(), ": image size ", image_cfg_.width, "x", image_cfg_.height,
           " differs from vision_config.image_size ", cfg.vision.image_size);
  }

  ModelInput prepare(const std::vector<ChatMessage>& messages, const ProcessingOptions& options) const override {
    const Image* image = nullptr;
    int images = 0;
    for (auto& m : messages)
      for (auto& part : m.content) {
        if (part.kind == ContentPart::Kind::Video) fail("PaliGemmaProcessor: video input is not supported");
        if (part.kind == ContentPart::Kind::Image) {
          ++images;
          image = &part.image;
        }
      }
    if (images != 1) fail("PaliGemmaProcessor: PaliGemma takes exactly one image per prompt, got ", images);
    // The prompt is the text of the last user turn (PaliGemma has no chat template).
    const ChatMessage* user = nullptr;
    for (auto& m : messages)
      if (m.role == "user") user = &m;
    if (!user) fail("PaliGemmaProcessor: no user message");
    std::string prompt;
    for (auto& part : user->content)
      if (part.kind == ContentPart::Kind::Text) prompt += part.text;

    ModelInput in;
    in.ids.assign(size_t(image_seq_length_), image_token_);
    in.ids.push_back(bos_);
    // Encoded on its own, without special tokens, so no second <bos> can appear whatever the
    // tokenizer config says (transformers' processor string gives the same ids).
    std::vector<int32_t> text = tokenizer_.encode(prompt + "\n", false);
    in.ids.insert(in.ids.end(), text.begin(), text.end());
    in.images.push_back(siglip_preprocess(*image, image_cfg_, options.pool));
    in.prompt_text.reserve(size_t(image_seq_length_) * 7 + prompt.size() + 8);
    for (int64_t i = 0; i < image_seq_length_; ++i) in.prompt_text += "<image>";
    in.prompt_text += tokenizer_.bos_token().empty() ? "<bos>" : tokenizer_.bos_token();
    in.prompt_text += prompt + "\n";
    return in;
  }

 private:
  Tokenizer tokenizer_;  // shares the loaded vocabulary (cheap handle)
  SiglipImageConfig image_cfg_;
  int64_t image_seq_length_ = 0;
  int32_t image_token_ = 0, bos_ = 2;
};

}  // namespace

std::unique_ptr<Processor> make_paligemma_processor(const std::string& model_dir, const Tokenizer& tokenizer,
                                                    const json& config) {
  return std::make_unique<PaliGemmaProcessor>(model_dir, tokenizer, config);
}

}  // namespace vlm
