#include "server/media_source.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <sys/socket.h>

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
  bool allow_private_hosts = false;
};

// libcurl opens every connection of a transfer here (each address it tries, each redirect), so the
// check applies to the address actually connected to, whatever the URL spelled or DNS answered.
curl_socket_t open_public_socket(void* user, curlsocktype, curl_sockaddr* address) {
  const auto* st = static_cast<const FetchState*>(user);
  if (!st->allow_private_hosts && !is_public_address(&address->addr)) return CURL_SOCKET_BAD;
  return ::socket(address->family, address->socktype, address->protocol);
}

// Every fetch failure reads the same, so that answers cannot map which hosts and ports exist.
ApiError fetch_failed(const std::string& param) {
  return bad_request("could not fetch the image URL (only public http(s) hosts are allowed)", param,
                     "image_fetch_failed");
}

bool in_v4_range(uint32_t a, uint32_t net, int bits) {
  return bits == 0 || (a >> (32 - bits)) == (net >> (32 - bits));
}

bool is_public_v4(uint32_t a) {  // host byte order
  static const struct {
    uint32_t net;
    int bits;
  } kNonPublic[] = {
      {0x00000000, 8},   // "this network"
      {0x0A000000, 8},   // private
      {0x64400000, 10},  // shared address space (carrier NAT; Alibaba's metadata 100.100.100.200)
      {0x7F000000, 8},   // loopback
      {0xA9FE0000, 16},  // link-local (cloud metadata 169.254.169.254)
      {0xAC100000, 12},  // private
      {0xC0000000, 24},  // IETF protocol assignments
      {0xC0000200, 24},  // documentation
      {0xC0586300, 24},  // 6to4 relay anycast
      {0xC0A80000, 16},  // private
      {0xC6120000, 15},  // benchmarking
      {0xC6336400, 24},  // documentation
      {0xCB007100, 24},  // documentation
      {0xE0000000, 4},   // multicast
      {0xF0000000, 4},   // reserved, broadcast
  };
  for (const auto& r : kNonPublic)
    if (in_v4_range(a, r.net, r.bits)) return false;
  return true;
}

uint32_t v4_at(const uint8_t* b) {
  return uint32_t(b[0]) << 24 | uint32_t(b[1]) << 16 | uint32_t(b[2]) << 8 | b[3];
}

bool is_public_v6(const uint8_t* b) {
  static const uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  static const uint8_t kNat64Prefix[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
  // IPv4-mapped (::ffff:a.b.c.d) and NAT64 (64:ff9b::a.b.c.d) reach the embedded IPv4 address.
  if (std::equal(kMappedPrefix, kMappedPrefix + 12, b) || std::equal(kNat64Prefix, kNat64Prefix + 12, b))
    return is_public_v4(v4_at(b + 12));
  if ((b[0] & 0xE0) != 0x20)
    return false;  // global unicast is 2000::/3 (this excludes ::1, fc00::/7, fe80::/10, ff00::/8)
  if (b[0] == 0x20 && b[1] == 0x01 && b[2] < 0x02) return false;                   // 2001::/23 IETF (Teredo included)
  if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8) return false;  // 2001:db8::/32 documentation
  if (b[0] == 0x20 && b[1] == 0x02) return is_public_v4(v4_at(b + 2));             // 6to4 embeds an IPv4 address
  if (b[0] == 0x3f && (b[1] & 0xf0) == 0xf0) return false;                         // 3fff::/20 documentation
  return true;
}

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
  st.allow_private_hosts = limits.allow_private_hosts;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_OPENSOCKETFUNCTION, open_public_socket);
  curl_easy_setopt(curl, CURLOPT_OPENSOCKETDATA, &st);
  curl_easy_setopt(curl, CURLOPT_PROXY, "");  // a proxy would connect on our behalf, past the address check
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
    throw bad_request("the image is larger than the limit of " + std::to_string(limits.max_image_bytes) + " bytes",
                      param, "image_too_large");
  if (rc != CURLE_OK) throw fetch_failed(param);
  return std::move(st.data);
}

// Missing, unreadable and outside the directory all read the same, so that answers cannot map the file system.
ApiError path_not_allowed(const std::string& path, const std::string& param) {
  return ApiError(403, "image path '" + path + "' is not a readable file inside the allowed media directory", param,
                  "path_not_allowed");
}

std::vector<uint8_t> read_local(const std::string& path, const MediaLimits& limits, const std::string& param) {
  if (limits.local_media_dir.empty())
    throw bad_request("local image paths are not allowed on this server (start it with --allow-local-media DIR)",
                      param);
  std::string p = confine_path(path, limits.local_media_dir, param);
  std::error_code ec;
  auto size = fs::file_size(p, ec);
  if (ec || !fs::is_regular_file(p)) throw path_not_allowed(path, param);
  if (int64_t(size) > limits.max_image_bytes)
    throw bad_request(
        "image " + path + " is larger than the limit of " + std::to_string(limits.max_image_bytes) + " bytes", param,
        "image_too_large");
  std::ifstream f(p, std::ios::binary);
  std::vector<uint8_t> data(size);
  if (!f.read(reinterpret_cast<char*>(data.data()), std::streamsize(size))) throw path_not_allowed(path, param);
  return data;
}

}  // namespace

std::vector<uint8_t> decode_base64(std::string_view s, const std::string& param) {
  auto bytes = base64_decode(s);
  if (!bytes)
    throw bad_request("invalid base64 in image data URL (bad character, length or padding)", param, "invalid_base64");
  return std::move(*bytes);
}

std::string confine_path(const std::string& path, const std::string& dir, const std::string& param) {
  std::error_code ec;
  fs::path root = fs::canonical(dir, ec);
  if (ec) throw ApiError(500, "the local media directory " + dir + " is not accessible");
  fs::path p(path);
  if (p.is_relative()) p = root / p;
  fs::path real = fs::canonical(p, ec);  // resolves "..", symlinks included
  if (ec) throw path_not_allowed(path, param);
  auto rit = root.begin();
  auto pit = real.begin();
  for (; rit != root.end(); ++rit, ++pit)
    if (pit == real.end() || *pit != *rit) throw path_not_allowed(path, param);
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

UserInput::Part load_image_part(const std::string& url, const MediaLimits& limits, const std::string& param,
                                int64_t pixels_left) {
  const int64_t allowed = std::max<int64_t>(0, std::min(limits.max_image_pixels, pixels_left));
  const std::string limit_text = allowed < limits.max_image_pixels
                                     ? "what remains of the request's budget of " +
                                           std::to_string(limits.max_request_pixels) + " pixels (" +
                                           std::to_string(allowed) + ")"
                                     : "the limit of " + std::to_string(limits.max_image_pixels) + " pixels per image";
  if (allowed == 0)
    throw bad_request("image too large: the images of this request exceed " + limit_text, param, "image_too_large");
  Image img;
  {
    std::vector<uint8_t> bytes = fetch_image_bytes(url, limits, param);
    try {
      ImageLimits il;
      il.max_pixels = allowed;  // checked from the header, before the pixels are allocated
      img = decode_image(bytes.data(), bytes.size(), "image", il);
    } catch (const std::exception& e) {
      std::string msg = e.what();
      bool too_big = msg.find("pixels") != std::string::npos || msg.find("limit") != std::string::npos;
      throw bad_request(too_big ? "image too large: it exceeds " + limit_text : "could not decode image: " + msg, param,
                        too_big ? "image_too_large" : "invalid_image");
    }
  }
  if (int64_t(img.width) * img.height > allowed)
    throw bad_request(
        "image too large: " + std::to_string(img.width) + "x" + std::to_string(img.height) + " exceeds " + limit_text,
        param, "image_too_large");
  return UserInput::Part::image_rgb(img.width, img.height, std::move(img.rgb));
}

bool is_public_address(const sockaddr* addr) {
  if (addr->sa_family == AF_INET)
    return is_public_v4(ntohl(reinterpret_cast<const sockaddr_in*>(addr)->sin_addr.s_addr));
  if (addr->sa_family == AF_INET6) return is_public_v6(reinterpret_cast<const sockaddr_in6*>(addr)->sin6_addr.s6_addr);
  return false;
}

}  // namespace vlm::server
