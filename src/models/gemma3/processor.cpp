// Gemma3Processor: chat template -> prompt text; each <start_of_image> becomes
// "\n\n<start_of_image>" + <image_soft_token> x image_seq_length + "<end_of_image>\n\n" (as
// transformers' processing_gemma3); images resized to the configured size (PIL-exact, bilinear by
// default), rescaled and normalised; tokenized without special tokens (the template adds <bos>).
#include <filesystem>

#include "media/preprocess.h"
#include "models/gemma3/gemma3.h"
#include "text/chat_template.h"

namespace vlm {

namespace {

class Gemma3Processor : public Processor {
 public:
  Gemma3Processor(const std::string& model_dir, const Tokenizer& tokenizer, const json& config)
      : tokenizer_(tokenizer) {
    namespace fs = std::filesystem;
    const std::string where = model_dir + "/config.json";
    const Gemma3Config cfg = Gemma3Config::from_json(config, where);
    image_seq_length_ = cfg.mm_tokens_per_image;
    image_cfg_.height = image_cfg_.width = int(cfg.vision.image_size);
    image_cfg_.resample = Resample::Bilinear;  // Gemma3ImageProcessor's default (PIL code 2)
    const fs::path pre = fs::path(model_dir) / "preprocessor_config.json";
    if (fs::exists(pre)) {
      const std::string p = pre.string();
      image_cfg_ = SiglipImageConfig::from_file(p, /*default_resample=*/2);
      const json j = read_json_file(p);
      if (json_get<bool>(j, "do_pan_and_scan", false, p))
        fail(p, ": do_pan_and_scan is true, but pan-and-scan crops are not supported (set it to false or null)");
      if (!json_get<bool>(j, "do_resize", true, p) || !json_get<bool>(j, "do_rescale", true, p) ||
          !json_get<bool>(j, "do_normalize", true, p))
        fail(p, ": do_resize, do_rescale and do_normalize must be true (or absent)");
      const double rescale = json_get<double>(j, "rescale_factor", 1.0 / 255.0, p);
      if (std::abs(rescale - 1.0 / 255.0) > 1e-12) fail(p, ": rescale_factor ", rescale, " is not 1/255");
    }
    // transformers' Gemma3Processor takes the soft-token count from processor_config.json.
    for (const char* name : {"processor_config.json", "preprocessor_config.json"}) {
      const fs::path p = fs::path(model_dir) / name;
      if (!fs::exists(p)) continue;
      const int64_t n =
          json_get<int64_t>(read_json_file(p.string()), "image_seq_length", image_seq_length_, p.string());
      if (n != cfg.mm_tokens_per_image)
        fail(p.string(), ": image_seq_length ", n, " differs from mm_tokens_per_image ", cfg.mm_tokens_per_image,
             " in ", where);
    }
    if (image_cfg_.height != cfg.vision.image_size || image_cfg_.width != cfg.vision.image_size)
      fail(pre.string(), ": image size ", image_cfg_.width, "x", image_cfg_.height,
           " differs from vision_config.image_size ", cfg.vision.image_size);
    boi_ = tokenizer_.id_to_token(cfg.boi_token_index);
    eoi_ = tokenizer_.id_to_token(cfg.eoi_token_index);
    soft_ = tokenizer_.id_to_token(cfg.image_token_index);
    if (boi_.empty() || eoi_.empty() || soft_.empty())
      fail(model_dir, ": the tokenizer has no token for boi/eoi/image_token_index (", cfg.boi_token_index, ", ",
           cfg.eoi_token_index, ", ", cfg.image_token_index, ")");
    template_ = tokenizer_.chat_template();
    if (template_.empty()) fail(model_dir, ": no chat template (tokenizer_config.json, chat_template.json or .jinja)");
  }

  ModelInput prepare(const std::vector<ChatMessage>& messages, const ProcessingOptions& options) const override {
    if (options.resize_width > 0 || options.resize_height > 0)
      fail("Gemma3Processor: images are always resized to ", image_cfg_.width, "x", image_cfg_.height,
           " (--resize does not apply)");
    ModelInput in;
    json msgs = json::array();
    for (const ChatMessage& m : messages) {
      json content = json::array();
      for (const ContentPart& part : m.content) {
        switch (part.kind) {
          case ContentPart::Kind::Text: content.push_back({{"type", "text"}, {"text", part.text}}); break;
          case ContentPart::Kind::Image:
            content.push_back({{"type", "image"}});
            in.images.push_back(siglip_preprocess(part.image, image_cfg_, options.pool));
            break;
          case ContentPart::Kind::Video: fail("Gemma3Processor: video input is not supported");
        }
      }
      msgs.push_back({{"role", m.role}, {"content", content}});
    }
    const json ctx = {{"messages", msgs},
                      {"add_generation_prompt", options.add_generation_prompt},
                      {"bos_token", tokenizer_.bos_token()},
                      {"eos_token", tokenizer_.eos_token()}};
    in.prompt_text = render_chat_template(template_, ctx);
    std::string image_seq = "\n\n" + boi_;
    for (int64_t i = 0; i < image_seq_length_; ++i) image_seq += soft_;
    image_seq += eoi_ + "\n\n";
    std::string expanded;
    size_t pos = 0, count = 0;
    for (size_t at; (at = in.prompt_text.find(boi_, pos)) != std::string::npos; pos = at + boi_.size(), ++count)
      expanded.append(in.prompt_text, pos, at - pos).append(image_seq);
    expanded.append(in.prompt_text, pos, std::string::npos);
    if (count != in.images.size())
      fail("Gemma3Processor: ", in.images.size(), " image(s) given but the chat template placed ", count, " ", boi_);
    in.ids = tokenizer_.encode(expanded, /*add_special_tokens=*/false);
    return in;
  }

 private:
  Tokenizer tokenizer_;  // shares the loaded vocabulary (cheap handle)
  SiglipImageConfig image_cfg_;
  int64_t image_seq_length_ = 256;
  std::string boi_, eoi_, soft_, template_;
};

}  // namespace

std::unique_ptr<Processor> make_gemma3_processor(const std::string& model_dir, const Tokenizer& tokenizer,
                                                 const json& config) {
  return std::make_unique<Gemma3Processor>(model_dir, tokenizer, config);
}

}  // namespace vlm
