#include "api/internal.h"
#include "core/error.h"
#include "media/video.h"

namespace vlm {

UserInput::Part UserInput::Part::text_part(std::string text) {
  Part p;
  p.type = Type::Text;
  p.text = std::move(text);
  return p;
}

UserInput::Part UserInput::Part::image_path(std::string path) {
  Part p;
  p.type = Type::Image;
  p.image.path = std::move(path);
  return p;
}

UserInput::Part UserInput::Part::image_bytes(std::vector<uint8_t> bytes) {
  Part p;
  p.type = Type::Image;
  p.image.bytes = std::move(bytes);
  return p;
}

UserInput::Part UserInput::Part::image_rgb(int width, int height, std::vector<uint8_t> rgb) {
  Part p;
  p.type = Type::Image;
  p.image.width = width;
  p.image.height = height;
  p.image.rgb = std::move(rgb);
  return p;
}

UserInput::Part UserInput::Part::video_path(std::string path) {
  Part p;
  p.type = Type::Video;
  p.video.path = std::move(path);
  return p;
}

UserInput::Part UserInput::Part::video_frames(std::vector<std::string> frame_paths) {
  Part p;
  p.type = Type::Video;
  p.video.frame_paths = std::move(frame_paths);
  return p;
}

UserInput UserInput::from_prompt(const std::string& prompt, const std::vector<std::string>& image_paths,
                                 const std::string& system) {
  UserInput in;
  if (!system.empty()) in.messages.push_back({"system", {Part::text_part(system)}});
  Message user{"user", {}};
  for (const auto& path : image_paths) user.content.push_back(Part::image_path(path));
  user.content.push_back(Part::text_part(prompt));
  in.messages.push_back(std::move(user));
  return in;
}

Image decode_image_source(const ImageSource& src) {
  if (!src.path.empty()) return load_image(src.path);
  if (!src.bytes.empty()) return decode_image(src.bytes.data(), src.bytes.size(), "image bytes");
  if (src.width > 0 && src.height > 0) {
    size_t need = size_t(src.width) * size_t(src.height) * 3;
    if (src.rgb.size() != need)
      fail("decoded image: ", src.width, "x", src.height, " RGB needs ", need, " bytes, got ", src.rgb.size());
    return image_from_u8(src.rgb.data(), src.width, src.height, 3);
  }
  fail("image part has no path, bytes or pixels");
}

namespace {

std::vector<Image> decode_video_source(const VideoSource& src, const UserInput::Options& options) {
  if (!src.frame_paths.empty()) return load_frames_from_images(src.frame_paths);
  if (src.path.empty()) fail("video part has neither a path nor frame paths");
  VideoSampling sampling;
  if (src.fps > 0) {
    sampling.fps = src.fps;
  } else if (options.fps > 0) {
    sampling.fps = options.fps;
  }
  if (options.max_frames > 0) {
    sampling.max_frames = options.max_frames;
    sampling.min_frames = std::min(sampling.min_frames, options.max_frames);
  }
  return load_video_frames(src.path, sampling);
}

}  // namespace

std::vector<ChatMessage> to_chat_messages(const UserInput& input) {
  std::vector<ChatMessage> out;
  for (const auto& m : input.messages) {
    if (m.role.empty()) fail("chat message ", out.size(), " has no role");
    ChatMessage cm;
    cm.role = m.role;
    for (const auto& part : m.content) {
      ContentPart cp;
      switch (part.type) {
        case UserInput::Part::Type::Text:
          cp.kind = ContentPart::Kind::Text;
          cp.text = part.text;
          break;
        case UserInput::Part::Type::Image:
          cp.kind = ContentPart::Kind::Image;
          cp.image = decode_image_source(part.image);
          break;
        case UserInput::Part::Type::Video:
          cp.kind = ContentPart::Kind::Video;
          cp.frames = decode_video_source(part.video, input.options);
          cp.fps = part.video.fps > 0 ? part.video.fps : input.options.fps;
          if (cp.frames.empty()) fail("video ", part.video.path, ": no frames decoded");
          break;
      }
      cm.content.push_back(std::move(cp));
    }
    out.push_back(std::move(cm));
  }
  return out;
}

ProcessingOptions to_processing_options(const UserInput::Options& options) {
  ProcessingOptions p;
  if ((options.resize_width > 0) != (options.resize_height > 0))
    fail("resize needs both a width and a height (got ", options.resize_width, "x", options.resize_height, ")");
  if (options.resize_width < 0 || options.resize_height < 0 || options.min_pixels < 0 || options.max_pixels < 0)
    fail("processing options must not be negative");
  p.resize_width = options.resize_width;
  p.resize_height = options.resize_height;
  p.min_pixels = options.min_pixels;
  p.max_pixels = options.max_pixels;
  p.add_generation_prompt = options.add_generation_prompt;
  return p;
}

}  // namespace vlm
