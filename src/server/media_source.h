// Turns the image URLs of a chat request into decoded images, within the server's limits: base64 data:
// URLs, http(s) URLs fetched with libcurl (size and time bounded), and local files only inside the one
// directory the operator allowed.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

struct sockaddr;

#include "vlm/vlm.hpp"

namespace vlm::server {

struct MediaLimits {
  int64_t max_image_bytes = 20 << 20;            // encoded size of one image
  int64_t max_image_pixels = 4096 * 4096;        // decoded width * height
  int64_t max_request_pixels = 2 * 4096 * 4096;  // all images of one request together
  int max_images = 8;                            // per request
  bool allow_remote = true;                      // http(s) URLs
  bool allow_private_hosts = false;              // http(s) URLs may reach loopback, private, link-local, ... addresses
  double fetch_timeout_s = 10;
  std::string local_media_dir;  // "": local paths refused
};

// Decodes base64 (standard or URL-safe alphabet, padding optional); throws ApiError 400 naming `param`.
std::vector<uint8_t> decode_base64(std::string_view text, const std::string& param);

// Encoded image bytes behind `url`; throws ApiError (400) naming `param` on anything refused or unreadable.
std::vector<uint8_t> fetch_image_bytes(const std::string& url, const MediaLimits& limits, const std::string& param);

// The image behind `url`, decoded and checked against the limits, as a UserInput part; `pixels_left` is what
// remains of the request's pixel budget (the decoder refuses larger images from their header).
UserInput::Part load_image_part(const std::string& url, const MediaLimits& limits, const std::string& param,
                                int64_t pixels_left);

// Whether a fetched URL may connect to `addr`: only globally routable unicast addresses qualify (not
// loopback, private, shared, link-local, multicast, reserved, documentation or cloud-metadata ranges,
// IPv4-mapped and other embeddings of them included).
bool is_public_address(const sockaddr* addr);

// Canonical path of `path` (absolute, or relative to `dir`) if it lies inside `dir`; throws ApiError otherwise.
std::string confine_path(const std::string& path, const std::string& dir, const std::string& param);

}  // namespace vlm::server
