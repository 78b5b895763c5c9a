#include "io/encoding.h"

#include <gtest/gtest.h>

namespace vlm {
namespace {

std::string as_string(const std::optional<std::vector<uint8_t>>& v) { return std::string(v->begin(), v->end()); }

TEST(Base64, DecodesStandardUrlSafeAndWrapped) {
  EXPECT_EQ(as_string(base64_decode("aGVsbG8gd29ybGQ=")), "hello world");
  EXPECT_EQ(as_string(base64_decode("aGVs\nbG8=")), "hello");
  EXPECT_EQ(as_string(base64_decode("-_8=")), std::string("\xfb\xff", 2));
  EXPECT_EQ(as_string(base64_decode("+/8=")), std::string("\xfb\xff", 2));
  EXPECT_EQ(as_string(base64_decode("YQ")), "a");  // padding optional
  EXPECT_TRUE(base64_decode("")->empty());
}

TEST(Base64, RejectsBadCharactersLengthAndPadding) {
  EXPECT_FALSE(base64_decode("aGV*bG8="));
  EXPECT_FALSE(base64_decode("a"));        // one digit cannot encode a byte
  EXPECT_FALSE(base64_decode("YQ=A"));     // data after padding
  EXPECT_FALSE(base64_decode("YQ==="));    // too much padding
  EXPECT_FALSE(base64_decode("YWI=="));    // padding that does not complete a quantum
}

TEST(PercentDecode, DecodesEscapesAndKeepsMalformedOnes) {
  EXPECT_EQ(percent_decode("/tmp/a%20b%2Fc.png"), "/tmp/a b/c.png");
  EXPECT_EQ(percent_decode("100%"), "100%");
  EXPECT_EQ(percent_decode("%zz%4"), "%zz%4");
}

}  // namespace
}  // namespace vlm
