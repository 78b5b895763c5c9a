// Decoding vs Pillow goldens (tests/media/decode_goldens.json, made by make_resize_goldens.py)
// and error handling on bad input.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/error.h"
#include "media/decoders.h"
#include "media/image.h"
#include "media_test_util.h"

namespace vlm {
namespace {

using test::media_test_dir;

std::string resolve(const std::string& key) {
  if (key.rfind("shared/", 0) == 0) return test::shared_dir() + "/images/" + key.substr(7);
  return media_test_dir() + "/" + key;
}

TEST(Decode, MatchesPillowGoldens) {
  json g = read_json_file(media_test_dir() + "/decode_goldens.json");
  int checked = 0;
  for (auto& [key, want] : g["images"].items()) {
    std::string path = resolve(key);
    if (key.rfind("shared/", 0) == 0 && !std::filesystem::exists(test::shared_dir())) continue;
    SCOPED_TRACE(key);
    Image img = load_image(path);
    EXPECT_EQ(img.width, want["size"][0].get<int>());
    EXPECT_EQ(img.height, want["size"][1].get<int>());
    EXPECT_EQ(test::sha256_hex(img), want["sha256"].get<std::string>());
    ++checked;
  }
  EXPECT_GE(checked, 30);
}

TEST(Decode, Sha256SelfCheck) {
  const uint8_t abc[] = {'a', 'b', 'c'};
  EXPECT_EQ(test::sha256_hex(abc, 3), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Decode, ExifOrientationDimensions) {
  for (int o = 1; o <= 8; ++o) {
    Image img = load_image(media_test_dir() + "/data/orient_" + std::to_string(o) + ".jpg");
    EXPECT_EQ(img.width, o >= 5 ? 16 : 24) << o;
    EXPECT_EQ(img.height, o >= 5 ? 24 : 16) << o;
  }
}

TEST(Decode, OrientationTransformsAreConsistent) {
  Image base;
  base.width = 3;
  base.height = 2;
  for (int i = 0; i < 18; ++i) base.rgb.push_back(uint8_t(i));
  // Orientation 6 (rotate 90 clockwise): the bottom-left pixel goes to the top-left.
  Image r = media_detail::apply_orientation(base, 6);
  EXPECT_EQ(r.width, 2);
  EXPECT_EQ(r.height, 3);
  EXPECT_EQ(r.pixel(0, 0)[0], base.pixel(0, 1)[0]);
  // 8 undoes 6.
  Image back = media_detail::apply_orientation(r, 8);
  EXPECT_EQ(back.rgb, base.rgb);
}

void expect_error_naming(const std::vector<uint8_t>& bytes, const std::string& name, const ImageLimits& lim = {}) {
  try {
    decode_image(bytes.data(), bytes.size(), name, lim);
    ADD_FAILURE() << name << ": no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
  }
}

TEST(Decode, TruncatedFilesThrow) {
  for (const char* f : {"data/rgb16.png", "data/palette.png", "data/orient_1.jpg", "data/progressive.jpg",
                        "data/lossy.webp", "data/palette.gif", "data/rgb.bmp", "data/lossless_alpha.webp"}) {
    std::vector<uint8_t> b = test::read_bytes(media_test_dir() + "/" + f);
    ASSERT_FALSE(b.empty()) << f;
    for (size_t keep : {b.size() / 2, b.size() * 9 / 10, size_t(20), size_t(4)}) {
      std::vector<uint8_t> t(b.begin(), b.begin() + std::min(keep, b.size()));
      expect_error_naming(t, std::string("trunc:") + f);
    }
  }
}

TEST(Decode, CorruptAndUnknownInputThrow) {
  expect_error_naming({}, "empty.bin");
  expect_error_naming({'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd'}, "text.txt");
  std::vector<uint8_t> b = test::read_bytes(media_test_dir() + "/data/palette.png");
  for (size_t i = 40; i < b.size() - 12; i += 7) b[i] ^= 0x5a;  // corrupts IDAT (CRC mismatch)
  expect_error_naming(b, "scrambled.png");
  std::vector<uint8_t> j = test::read_bytes(media_test_dir() + "/data/orient_1.jpg");
  j.resize(300);  // headers only
  expect_error_naming(j, "cut.jpg");
  EXPECT_THROW(load_image("/nonexistent/x.png"), Error);
}

TEST(Decode, PixelLimitCheckedBeforeDecoding) {
  ImageLimits lim;
  lim.max_pixels = 24 * 16 - 1;
  for (const char* f : {"data/rgb16.png", "data/orient_1.jpg", "data/lossy.webp", "data/palette.gif", "data/rgb.bmp"}) {
    std::vector<uint8_t> b = test::read_bytes(media_test_dir() + "/" + f);
    expect_error_naming(b, f, lim);
    lim.max_pixels = 24 * 16;
    EXPECT_NO_THROW(decode_image(b.data(), b.size(), f, lim));
    lim.max_pixels = 24 * 16 - 1;
  }
  // A PNG header claiming 100000 x 100000 pixels fails on the limit, not on allocation.
  std::vector<uint8_t> png = test::read_bytes(media_test_dir() + "/data/rgb16.png");
  png[16] = 0, png[17] = 1, png[18] = 0x86, png[19] = 0xa0;  // width 100000 (CRC now wrong too)
  expect_error_naming(png, "bomb.png");
}

TEST(Decode, RawArrays) {
  std::vector<uint8_t> hwc = {1, 2, 3, 255, 4, 5, 6, 0};  // 2x1 RGBA
  Image a = image_from_u8(hwc.data(), 2, 1, 4);
  EXPECT_EQ(a.rgb, (std::vector<uint8_t>{1, 2, 3, 4, 5, 6}));
  std::vector<uint8_t> chw = {1, 4, 2, 5, 3, 6};
  EXPECT_EQ(image_from_u8(chw.data(), 2, 1, 3, true).rgb, a.rgb);
  std::vector<float> f = {0.0f, 0.5f, 1.0f, 2.0f, -1.0f, 0.2f};
  EXPECT_EQ(image_from_float(f.data(), 2, 1, 3).rgb, (std::vector<uint8_t>{0, 128, 255, 255, 0, 51}));
  EXPECT_THROW(image_from_u8(hwc.data(), 0, 1, 3), Error);
  EXPECT_THROW(image_from_u8(hwc.data(), 1, 1, 2), Error);
}

}  // namespace
}  // namespace vlm
