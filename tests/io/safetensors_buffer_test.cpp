// SafetensorsFile::from_buffer: the in-memory parse behind open() (used by the fuzzer).
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>

#include "io/safetensors.h"

namespace vlm {
namespace {

std::string file_image(const std::string& header, const std::string& data) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = char((uint64_t(header.size()) >> (8 * i)) & 0xff);
  return s + header + data;
}

TEST(SafetensorsBuffer, ParsesAndBorrowsTheBuffer) {
  float values[3] = {1.5f, -2.0f, 0.25f};
  auto buf = std::make_shared<std::string>(file_image(
      R"({"__metadata__":{"format":"pt"},"x":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}})",
      std::string(reinterpret_cast<const char*>(values), sizeof(values))));
  auto f = SafetensorsFile::from_buffer(buf->data(), buf->size(), "mem", buf);
  EXPECT_EQ(f->path(), "mem");
  EXPECT_EQ(f->metadata().at("format"), "pt");
  Tensor t = f->tensor("x");
  ASSERT_EQ(t.shape(), Shape({3}));
  EXPECT_EQ(std::memcmp(t.raw(), values, sizeof(values)), 0);
  EXPECT_EQ(static_cast<const char*>(t.raw()), buf->data() + buf->size() - sizeof(values));  // zero-copy
}

TEST(SafetensorsBuffer, ErrorsNameTheSource) {
  auto error = [](const std::string& bytes) -> std::string {
    try {
      SafetensorsFile::from_buffer(bytes.data(), bytes.size(), "mem.safetensors");
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(error("abc").find("mem.safetensors: not a safetensors file (3 bytes"), std::string::npos);
  EXPECT_NE(error(file_image("[]", "")).find("mem.safetensors: header is not a JSON object"), std::string::npos);
  EXPECT_NE(error(file_image(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", "1234"))
                .find("runs past the end"),
            std::string::npos);
}

}  // namespace
}  // namespace vlm
