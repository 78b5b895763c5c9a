#include "models/paligemma/detection.h"

#include <gtest/gtest.h>
#include <png.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "core/error.h"

namespace vlm {
namespace {

namespace fs = std::filesystem;

TEST(Detection, ParsesBoxesAndLabels) {
  auto d = parse_detections("<loc0123><loc0456><loc0789><loc1000> cat ; <loc0000><loc0000><loc0512><loc0512> big dog",
                            640, 480);
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(d[0].label, "cat");
  EXPECT_EQ(d[0].bins, (std::array<int, 4>{123, 456, 789, 1000}));
  EXPECT_FLOAT_EQ(d[0].y_min, 123.f / 1024.f * 480.f);
  EXPECT_FLOAT_EQ(d[0].x_min, 456.f / 1024.f * 640.f);
  EXPECT_FLOAT_EQ(d[0].y_max, 789.f / 1024.f * 480.f);
  EXPECT_FLOAT_EQ(d[0].x_max, 1000.f / 1024.f * 640.f);
  EXPECT_TRUE(d[0].seg.empty());
  EXPECT_EQ(d[1].label, "big dog");
  EXPECT_FLOAT_EQ(d[1].x_max, 320.f);
  EXPECT_FLOAT_EQ(d[1].y_max, 240.f);
}

TEST(Detection, ParsesSegmentationCodes) {
  std::string segs;
  for (int i = 0; i < 16; ++i) {
    char buf[16];
    std::snprintf(buf, sizeof(buf), "<seg%03d>", i * 3);
    segs += buf;
  }
  std::string text = "<loc0100><loc0200><loc0300><loc0400>" + segs + " cat<eos>";
  auto d = parse_detections(text, 1024, 1024);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].label, "cat");  // stops at the next token
  ASSERT_EQ(d[0].seg.size(), 16u);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(d[0].seg[size_t(i)], i * 3);
  EXPECT_FLOAT_EQ(d[0].x_min, 200.f);
  auto codes = parse_seg_codes(text + " <seg127><seg12>");
  ASSERT_EQ(codes.size(), 17u);  // the malformed <seg12> is ignored
  EXPECT_EQ(codes.back(), 127);
}

TEST(Detection, IgnoresMalformedBoxes) {
  EXPECT_TRUE(parse_detections("no boxes here", 10, 10).empty());
  EXPECT_TRUE(parse_detections("<loc0001><loc0002><loc0003> three only", 10, 10).empty());
  EXPECT_TRUE(parse_detections("<loc12><loc0001><loc0002><loc0003>", 10, 10).empty());
  auto d = parse_detections("<loc01x0> junk ; <loc0000><loc0000><loc1023><loc1023>", 10, 10);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].label, "");
}

Image gray(int w, int h, uint8_t v) {
  Image img;
  img.width = w, img.height = h;
  img.rgb.assign(size_t(w) * h * 3, v);
  return img;
}

TEST(Detection, DrawsBoxOutlineAndLabelOnACopy) {
  Image img = gray(100, 80, 128);
  Detection d;
  d.label = "cat";
  d.x_min = 10, d.y_min = 30, d.x_max = 50, d.y_max = 70;
  Image out = draw_detections(img, {d});
  EXPECT_EQ(img.pixel(10, 30)[0], 128);  // input untouched
  auto is = [&](int x, int y, int r, int g, int b) {
    const uint8_t* p = out.pixel(x, y);
    return p[0] == r && p[1] == g && p[2] == b;
  };
  EXPECT_TRUE(is(10, 50, 255, 56, 56));    // left edge
  EXPECT_TRUE(is(50, 50, 255, 56, 56));    // right edge
  EXPECT_TRUE(is(30, 70, 255, 56, 56));    // bottom edge
  EXPECT_TRUE(is(30, 50, 128, 128, 128));  // interior
  EXPECT_TRUE(is(80, 10, 128, 128, 128));  // outside
  // The label band sits above the box and holds white glyph pixels.
  int white = 0, band = 0;
  for (int y = 21; y < 30; ++y)
    for (int x = 10; x < 29; ++x) {
      white += is(x, y, 255, 255, 255);
      band += is(x, y, 255, 56, 56);
    }
  EXPECT_GT(white, 10);
  EXPECT_GT(band, 10);
  // A second box gets the next colour; boxes past the border are clipped, not a crash.
  Detection e = d;
  e.x_min = -50, e.x_max = 500, e.y_min = 1, e.y_max = 2000;
  Image out2 = draw_detections(img, {d, e});
  EXPECT_TRUE(out2.pixel(99, 40)[1] == 200);
}

Image read_png(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return {};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  Image img;
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    std::fclose(f);
    return {};
  }
  png_init_io(png, f);
  png_read_info(png, info);
  img.width = int(png_get_image_width(png, info));
  img.height = int(png_get_image_height(png, info));
  EXPECT_EQ(png_get_color_type(png, info), PNG_COLOR_TYPE_RGB);
  EXPECT_EQ(png_get_bit_depth(png, info), 8);
  img.rgb.resize(size_t(img.width) * img.height * 3);
  for (int y = 0; y < img.height; ++y) png_read_row(png, img.rgb.data() + size_t(y) * img.width * 3, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  std::fclose(f);
  return img;
}

TEST(Detection, WritesPngThatReadsBackExactly) {
  Image img = gray(37, 23, 0);
  for (size_t i = 0; i < img.rgb.size(); ++i) img.rgb[i] = uint8_t(i * 7 + 3);
  std::string path = (fs::temp_directory_path() / ("vlm_detection_" + std::to_string(::getpid()) + ".png")).string();
  write_png(path, img);
  Image back = read_png(path);
  fs::remove(path);
  EXPECT_EQ(back.width, 37);
  EXPECT_EQ(back.height, 23);
  EXPECT_EQ(back.rgb, img.rgb);
  EXPECT_THROW(write_png("/nonexistent-dir/x.png", img), Error);
  EXPECT_THROW(write_png(path, Image{}), Error);
}

}  // namespace
}  // namespace vlm
