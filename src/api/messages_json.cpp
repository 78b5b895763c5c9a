// Chat messages from JSON: a list of {role, content}; content a string or a list of parts in OpenAI
// style ({"type":"text"}, {"type":"image_url","image_url":{"url":...}}) or Hugging Face style
// ({"type":"image","image":PATH}, {"type":"video","video":PATH or [frame paths]}).
#include <cctype>
#include <filesystem>

#include "api/internal.h"
#include "core/error.h"
#include "io/encoding.h"
#include "io/json_file.h"

namespace vlm {

namespace {

namespace fs = std::filesystem;

struct Resolver {
  std::string base_dir;
  std::string where;

  std::string path(const std::string& p) const {
    if (p.empty()) fail(where, ": empty path");
    fs::path fp(p);
    if (fp.is_relative() && !base_dir.empty()) fp = fs::path(base_dir) / fp;
    return fp.lexically_normal().string();
  }

  // A path, file:// URL or data: URL (base64) -> image source.
  ImageSource image(const std::string& url) const {
    ImageSource src;
    if (url.rfind("data:", 0) == 0) {
      size_t comma = url.find(',');
      if (comma == std::string::npos) fail(where, ": malformed data URL (no ',')");
      std::string_view meta(url.data() + 5, comma - 5);
      if (meta.find(";base64") == std::string_view::npos) fail(where, ": only base64 data URLs are supported");
      auto bytes = base64_decode(std::string_view(url).substr(comma + 1));
      if (!bytes) fail(where, ": invalid base64 in data URL (bad character, length or padding)");
      src.bytes = std::move(*bytes);
      if (src.bytes.empty()) fail(where, ": empty data URL");
    } else if (url.rfind("http://", 0) == 0 || url.rfind("https://", 0) == 0) {
      fail(where, ": remote URLs are not fetched (", url, "); download the file and give its path");
    } else {
      src.path = file_path(url);
    }
    return src;
  }

  std::string file_path(const std::string& url) const {
    if (url.rfind("file://", 0) == 0) {
      std::string rest = url.substr(7);
      if (rest.rfind("localhost/", 0) == 0) rest = rest.substr(9);
      if (rest.empty() || rest[0] != '/') fail(where, ": file URL must be absolute (", url, ")");
      return percent_decode(rest);
    }
    return path(url);
  }
};

std::string url_of(const json& v, const std::string& where) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("url") && v["url"].is_string()) return v["url"].get<std::string>();
  fail(where, ": expected a string or {\"url\": ...}");
}

UserInput::Part parse_part(const json& part, const Resolver& r) {
  if (part.is_string()) return UserInput::Part::text_part(part.get<std::string>());
  if (!part.is_object()) fail(r.where, ": a content part must be an object or a string");
  std::string type = json_get<std::string>(part, "type", "", r.where);
  if (type.empty()) {  // tolerate {"image": ...} / {"text": ...} without a type
    for (const char* k : {"text", "image", "image_url", "video"})
      if (part.contains(k)) type = k;
  }
  if (type == "text" || type == "input_text")
    return UserInput::Part::text_part(json_require<std::string>(part, "text", r.where));
  if (type == "image_url" || type == "input_image") {
    const char* key = part.contains("image_url") ? "image_url" : "image";
    if (!part.contains(key)) fail(r.where, ": image_url part without 'image_url'");
    UserInput::Part p;
    p.type = UserInput::Part::Type::Image;
    p.image = r.image(url_of(part[key], r.where));
    return p;
  }
  if (type == "image") {
    for (const char* key : {"image", "url", "path"}) {
      if (!part.contains(key) || part[key].is_null()) continue;
      UserInput::Part p;
      p.type = UserInput::Part::Type::Image;
      p.image = r.image(url_of(part[key], r.where));
      return p;
    }
    fail(r.where, ": image part without a source (give \"image\": PATH)");
  }
  if (type == "video" || type == "video_url") {
    const char* key = part.contains("video") ? "video" : (part.contains("video_url") ? "video_url" : "url");
    if (!part.contains(key)) fail(r.where, ": video part without a source (give \"video\": PATH or [frames])");
    const json& v = part[key];
    // qwen-vl-utils: "fps" next to the source is the sampling rate (of a file) or the rate the
    // listed frames were taken at; absent: the --fps / Options::fps default.
    const double fps = json_get<double>(part, "fps", 0.0, r.where);
    if (part.contains("fps") && !(fps > 0 && fps <= 1000))
      fail(r.where, ": video \"fps\" must be in (0, 1000] (got ", part["fps"].dump(), ")");
    UserInput::Part out;
    if (v.is_array()) {
      std::vector<std::string> frames;
      for (const auto& f : v) {
        if (!f.is_string()) fail(r.where, ": video frame list entries must be paths");
        frames.push_back(r.file_path(f.get<std::string>()));
      }
      if (frames.empty()) fail(r.where, ": empty video frame list");
      out = UserInput::Part::video_frames(std::move(frames));
    } else {
      out = UserInput::Part::video_path(r.file_path(url_of(v, r.where)));
    }
    out.video.fps = fps;
    return out;
  }
  fail(r.where, ": unknown content part type '", type, "' (expected text, image, image_url or video)");
}

}  // namespace

UserInput UserInput::from_messages_json(const std::string& json_text, const std::string& base_dir,
                                        const std::string& source_name) {
  json doc;
  try {
    doc = parse_json_limited(json_text, source_name);
  } catch (const json::exception& e) {
    fail(source_name, ": invalid JSON: ", e.what());
  }
  if (doc.is_object() && doc.contains("messages")) doc = doc["messages"];
  if (!doc.is_array()) fail(source_name, ": expected a JSON list of {\"role\", \"content\"} messages");
  UserInput in;
  for (size_t i = 0; i < doc.size(); ++i) {
    const json& m = doc[i];
    std::string where = source_name + ": message " + std::to_string(i);
    if (!m.is_object()) fail(where, ": expected an object with 'role' and 'content'");
    Message msg;
    msg.role = json_require<std::string>(m, "role", where);
    Resolver r{base_dir, where};
    auto it = m.find("content");
    if (it == m.end() || it->is_null()) {
      // a message without content (e.g. an assistant turn with tool calls) contributes no parts
    } else if (it->is_string()) {
      msg.content.push_back(Part::text_part(it->get<std::string>()));
    } else if (it->is_array()) {
      for (size_t k = 0; k < it->size(); ++k) {
        r.where = where + ", part " + std::to_string(k);
        msg.content.push_back(parse_part((*it)[k], r));
      }
    } else {
      fail(where, ": 'content' must be a string or a list of parts");
    }
    in.messages.push_back(std::move(msg));
  }
  return in;
}

}  // namespace vlm
