// Turns the image URLs of a chat request into decoded images, within the server's limits: base64 data:
// URLs, http(s) URLs fetched with libcurl (size and time bounded), and local files only inside the one
// directory the operator allowed.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "vlm/vlm.hpp"

namespace vlm::server {

struct MediaLimits {
  int64_t max_image_bytes = 20 << 20;      // encoded size of one image
  int64_t max_image_pixels = 4096 * 4096;  // decoded width * height
  int max_images = 8;                      // per request
  bool allow_remote = true;                // http(s) URLs
  double fetch_timeout_s = 10;
  std::string local_media_dir;  // "": local paths refused
};

// Decodes base64 (standard or URL-safe alphabet, padding optional); throws ApiError 400 naming `param`.
std::vector<uint8_t> decode_base64(std::string_view text, const std::string& param);

// Encoded image bytes behind `url`; throws ApiError (400) naming `param` on anything refused or unreadable.
std::vector<uint8_t> fetch_image_bytes(const std::string& url, const MediaLimits& limits, const std::string& param);

// The image behind `url`, decoded and checked against the limits, as a UserInput part.
UserInput::Part load_image_part(const std::string& url, const MediaLimits& limits, const std::string& param);

// Canonical path of `path` (absolute, or relative to `dir`) if it lies inside `dir`; throws ApiError otherwise.
std::string confine_path(const std::string& path, const std::string& dir, const std::string& param);

}  // namespace vlm::server
