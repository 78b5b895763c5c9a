// The server's POST /v1/chat/completions body -> generation request, on arbitrary bodies. Remote and
// local image sources are refused (the fuzzer must not touch the network or the file system); data: URLs
// are decoded within the limits.
#include <cstdint>
#include <string>

#include "server/api_error.h"
#include "server/chat_request.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string body(reinterpret_cast<const char*>(data), size);
  vlm::server::MediaLimits limits;
  limits.allow_remote = false;
  limits.local_media_dir = "";
  limits.max_image_bytes = 1 << 20;
  limits.max_image_pixels = 1024 * 1024;
  vlm::server::RequestDefaults defaults;
  try {
    vlm::server::ChatRequest request =
        vlm::server::parse_chat_request(std::move(body), limits, defaults, [](const std::string&) {});
    vlm::server::load_request_images(request, limits);
  } catch (const vlm::server::ApiError&) {
  } catch (const vlm::Error&) {
  }
  return 0;
}
