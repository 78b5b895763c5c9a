// JSON nesting limit for user-supplied documents (parse_json_limited) and the safetensors header.
#include <gtest/gtest.h>

#include <string>

#include "io/json_file.h"
#include "io/safetensors.h"

namespace vlm {
namespace {

std::string nested(int depth, const std::string& inner = "1") {
  std::string s;
  for (int i = 0; i < depth; ++i) s += (i % 2 ? "{\"k\":" : "[");
  s += inner;
  for (int i = depth - 1; i >= 0; --i) s += (i % 2 ? "}" : "]");
  return s;
}

TEST(JsonLimits, NestingUpToTheLimitParses) {
  json j = parse_json_limited(nested(kMaxJsonDepth), "doc");
  EXPECT_EQ(j.dump(), json::parse(nested(kMaxJsonDepth)).dump());
  EXPECT_EQ(parse_json_limited("1", "doc"), json(1));
  EXPECT_EQ(parse_json_limited(nested(3), "doc", 3).dump(), "[{\"k\":[1]}]");
}

TEST(JsonLimits, DeeperNestingIsRefusedNamingTheSource) {
  for (int depth : {kMaxJsonDepth + 1, 100000}) {
    try {
      parse_json_limited(nested(depth), "body.json");
      FAIL() << "depth " << depth << " accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("body.json: JSON nested deeper than 128 levels"), std::string::npos)
          << e.what();
    }
  }
  EXPECT_THROW(parse_json_limited(nested(4), "doc", 3), Error);
}

TEST(JsonLimits, SyntaxErrorsStillThrowJsonExceptions) {
  EXPECT_THROW(parse_json_limited("[1, 2", "doc"), json::exception);
  EXPECT_THROW(parse_json_limited("", "doc"), json::exception);
}

TEST(JsonLimits, SafetensorsHeaderDepthIsLimited) {
  std::string header = "{\"__metadata__\":" + nested(100000, "{}") + "}";
  std::string file(8, '\0');
  for (int i = 0; i < 8; ++i) file[i] = char((header.size() >> (8 * i)) & 0xff);
  file += header;
  try {
    SafetensorsFile::from_buffer(file.data(), file.size(), "deep.safetensors");
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("deep.safetensors: JSON nested deeper"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace vlm
