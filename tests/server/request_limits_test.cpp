// Request-level resource limits enforced while parsing a chat request (no server needed).
#include <gtest/gtest.h>

#include "server/api_error.h"
#include "server/chat_request.h"

namespace vlm::server {
namespace {

std::string nested_array(int depth) {
  return std::string(depth, '[') + std::string(depth, ']');
}

std::string body_with_extra(const std::string& extra) {
  return R"({"model": "m", "messages": [{"role": "user", "content": "hi"}], "metadata": )" + extra + "}";
}

ApiError parse_error(const std::string& body, const MediaLimits& limits = {}) {
  try {
    ChatRequest r = parse_chat_request(body, limits, {});
    load_request_images(r, limits);
  } catch (const ApiError& e) {
    return e;
  }
  ADD_FAILURE() << "accepted: " << body.substr(0, 200);
  return ApiError(0, "");
}

// The server's --prefill-chunk reaches every request's prompt: a new prompt gives the engine to the
// others' decode steps that often.
TEST(RequestLimits, PromptChunkComesFromTheServerSetting) {
  RequestDefaults defaults;
  EXPECT_EQ(parse_chat_request(body_with_extra("0"), {}, defaults).input.options.prefill_chunk, 128);
  defaults.prefill_chunk = 7;
  EXPECT_EQ(parse_chat_request(body_with_extra("0"), {}, defaults).input.options.prefill_chunk, 7);
}

TEST(RequestLimits, JsonNestingDepthIsBounded) {
  // The body object is level 1, so an ignored field may nest kMaxJsonDepth - 1 more containers.
  ChatRequest ok = parse_chat_request(body_with_extra(nested_array(kMaxJsonDepth - 1)), {}, {});
  EXPECT_EQ(ok.model, "m");
  for (int depth : {kMaxJsonDepth, 1 << 20}) {
    ApiError e = parse_error(body_with_extra(nested_array(depth)));
    EXPECT_EQ(e.status(), 400);
    EXPECT_EQ(e.code(), "invalid_json");
    EXPECT_NE(std::string(e.what()).find("nested deeper than"), std::string::npos) << e.what();
  }
}

TEST(RequestLimits, ImageCountIsCheckedBeforeTheImageIsDecoded) {
  // "AAAA" is not an image: with room for one image it fails to decode, with none the count refuses it first.
  const std::string part = R"({"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}})";
  const std::string body = R"({"model": "m", "messages": [{"role": "user", "content": [)" + part + "]}]}";
  MediaLimits limits;
  limits.max_images = 1;
  EXPECT_EQ(parse_error(body, limits).code(), "invalid_image");
  limits.max_images = 0;
  ApiError e = parse_error(body, limits);
  EXPECT_EQ(e.code(), "too_many_images");
  EXPECT_EQ(e.param(), "messages[0].content[0]");
}

}  // namespace
}  // namespace vlm::server
