#include "server/media_source.h"

#include <curl/curl.h>

#include <filesystem>
#include <fstream>
#include <mutex>

#include "io/encoding.h"
#include "media/image.h"
#include "server/api_error.h"

namespace vlm::server {

namespace {

namespace fs = std::filesystem;

struct FetchState {
  std::vector<uint8_t> data;
  int64_t max_bytes = 0;
  bool too_large = false;
};

size_t on_curl_data(char* ptr, size_t size, size_t nmemb, void* user) {
  auto* st = static_cast<FetchState*>(user);
  size_t n = size * nmemb;
  if (int64_t(st->data.size() + n) > st->max_bytes) {
    st->too_large = true;
    return 0;  // aborts the transfer
  }
  st->data.insert(st->data.end(), ptr, ptr + n);
  return n;
}

std::vector<uint8_t> fetch_http(const std::string& url, const MediaLimits& limits, const std::string& param) {
  if (!limits.allow_remote) throw bad_request("remote image URLs are disabled on this server", param);
  static std::once_flag init;
  std::call_once(init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  CURL* curl = curl_easy_init();
  if (!curl) throw ApiError(500, "could not initialise libcurl");
  FetchState st;
  st.max_bytes = limits.max_image_bytes;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 3L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);  // timeouts without SIGALRM: we are multi-threaded
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, long(limits.fetch_timeout_s * 1000));
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, long(std::min(limits.fetch_timeout_s, 5.0) * 1000));
  curl_easy_setopt(curl, CURLOPT_MAXFILESIZE_LARGE, curl_off_t(limits.max_image_bytes));
  curl_easy_setopt(curl, CURLOPT_FAILONERROR, 1L);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, "vlm.cpp-server");
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_curl_data);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &st);
  CURLcode rc = curl_easy_perform(curl);
  curl_easy_cleanup(curl);
  if (st.too_large || rc == CURLE_FILESIZE_EXCEEDED)
    throw bad_request(
        "image at " + url + " is larger than the limit of " + std::to_string(limits.max_image_bytes) + " bytes", param,
        "image_too_large");
  if (rc != CURLE_OK)
    throw bad_request("could not fetch image " + url + ": " + curl_easy_strerror(rc), param, "image_fetch_failed");
  return std::move(st.data);
}

std::vector<uint8_t> read_local(const std::string& path, const MediaLimits& limits, const std::string& param) {
  if (limits.local_media_dir.empty())
    throw bad_request("local image paths are not allowed on this server (start it with --allow-local-media DIR)",
                      param);
  std::string p = confine_path(path, limits.local_media_dir, param);
  std::error_code ec;
  auto size = fs::file_size(p, ec);
  if (ec || !fs::is_regular_file(p)) throw bad_request("image file not found: " + path, param);
  if (int64_t(size) > limits.max_image_bytes)
    throw bad_request(
        "image " + path + " is larger than the limit of " + std::to_string(limits.max_image_bytes) + " bytes", param,
        "image_too_large");
  std::ifstream f(p, std::ios::binary);
  std::vector<uint8_t> data(size);
  if (!f.read(reinterpret_cast<char*>(data.data()), std::streamsize(size)))
    throw bad_request("could not read image " + path, param);
  return data;
}

}  // namespace

std::vector<uint8_t> decode_base64(std::string_view s, const std::string& param) {
  auto bytes = base64_decode(s);
  if (!bytes) throw bad_request("invalid base64 in image data URL (bad character, length or padding)", param,
                                "invalid_base64");
  return std::move(*bytes);
}

std::string confine_path(const std::string& path, const std::string& dir, const std::string& param) {
  std::error_code ec;
  fs::path root = fs::canonical(dir, ec);
  if (ec) throw ApiError(500, "the local media directory " + dir + " is not accessible");
  fs::path p(path);
  if (p.is_relative()) p = root / p;
  fs::path real = fs::canonical(p, ec);  // resolves "..", symlinks included
  if (ec) throw bad_request("image file not found: " + path, param);
  auto rit = root.begin();
  auto pit = real.begin();
  for (; rit != root.end(); ++rit, ++pit)
    if (pit == real.end() || *pit != *rit)
      throw ApiError(403, "image path " + path + " is outside the allowed media directory", param, "path_not_allowed");
  return real.string();
}

std::vector<uint8_t> fetch_image_bytes(const std::string& url, const MediaLimits& limits, const std::string& param) {
  if (url.rfind("data:", 0) == 0) {
    size_t comma = url.find(',');
    if (comma == std::string::npos) throw bad_request("malformed data URL (no ',')", param, "invalid_image_url");
    std::string_view meta(url.data() + 5, comma - 5);
    if (meta.size() < 7 || meta.substr(meta.size() - 7) != ";base64")
      throw bad_request("only base64 data URLs are supported (data:image/...;base64,...)", param, "invalid_image_url");
    std::string_view payload = std::string_view(url).substr(comma + 1);
    if (int64_t(payload.size()) / 4 * 3 > limits.max_image_bytes + 3)
      throw bad_request("image is larger than the limit of " + std::to_string(limits.max_image_bytes) + " bytes", param,
                        "image_too_large");
    std::vector<uint8_t> bytes = decode_base64(payload, param);
    if (bytes.empty()) throw bad_request("empty image data URL", param, "invalid_image_url");
    return bytes;
  }
  if (url.rfind("http://", 0) == 0 || url.rfind("https://", 0) == 0) return fetch_http(url, limits, param);
  if (url.rfind("file://", 0) == 0) {
    std::string rest = url.substr(7);
    if (rest.rfind("localhost/", 0) == 0) rest = rest.substr(9);
    return read_local(percent_decode(rest), limits, param);
  }
  if (url.find("://") != std::string::npos)
    throw bad_request("unsupported image URL scheme (use data:, http(s):// or a local path)", param,
                      "invalid_image_url");
  if (url.empty()) throw bad_request("empty image URL", param, "invalid_image_url");
  return read_local(url, limits, param);
}

UserInput::Part load_image_part(const std::string& url, const MediaLimits& limits, const std::string& param) {
  std::vector<uint8_t> bytes = fetch_image_bytes(url, limits, param);
  Image img;
  try {
    ImageLimits il;
    il.max_pixels = limits.max_image_pixels;
    img = decode_image(bytes.data(), bytes.size(), "image", il);
  } catch (const std::exception& e) {
    std::string msg = e.what();
    bool too_big = msg.find("pixels") != std::string::npos || msg.find("limit") != std::string::npos;
    throw bad_request((too_big ? "image too large: " : "could not decode image: ") + msg, param,
                      too_big ? "image_too_large" : "invalid_image");
  }
  if (int64_t(img.width) * img.height > limits.max_image_pixels)
    throw bad_request("image too large: " + std::to_string(img.width) + "x" + std::to_string(img.height) + " exceeds " +
                          std::to_string(limits.max_image_pixels) + " pixels",
                      param, "image_too_large");
  return UserInput::Part::image_rgb(img.width, img.height, std::move(img.rgb));
}

}  // namespace vlm::server
