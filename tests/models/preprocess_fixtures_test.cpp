// Preprocessing vs the Qwen2-VL and PaliGemma oracle fixtures (shared/fixtures/*/cases): resized
// uint8 images, pixel values and grids, all exact (the decoders reproduce Pillow + libjpeg-turbo).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "../media/media_test_util.h"
#include "io/safetensors.h"
#include "media/video.h"
#include "models/qwen2_vl/qwen2_vl.h"
#include "models/siglip/siglip.h"

namespace vlm {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> case_files(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".json") out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

void expect_bytes_eq(const Tensor& t, const uint8_t* data, size_t n, const std::string& what) {
  ASSERT_EQ(t.dtype(), DType::U8) << what;
  ASSERT_EQ(size_t(t.numel()), n) << what;
  const uint8_t* ref = t.data<uint8_t>();
  size_t diff = 0;
  for (size_t i = 0; i < n; ++i) diff += ref[i] != data[i];
  EXPECT_EQ(diff, 0u) << what << ": " << diff << " of " << n << " bytes differ";
}

void expect_floats_eq(const Tensor& t, const float* data, size_t n, const std::string& what) {
  ASSERT_EQ(t.dtype(), DType::F32) << what;
  ASSERT_EQ(size_t(t.numel()), n) << what;
  const float* ref = t.data<float>();
  size_t diff = 0;
  for (size_t i = 0; i < n; ++i) diff += ref[i] != data[i];
  EXPECT_EQ(diff, 0u) << what << ": " << diff << " of " << n << " values differ";
}

std::vector<int64_t> grid_rows(const SafetensorsFile& st, const std::string& name) {
  return st.tensor(name).to_ints();
}

TEST(Fixtures, Qwen2VLCases) {
  const std::string dir = test::shared_dir() + "/fixtures/qwen2_vl";
  if (!fs::exists(dir)) GTEST_SKIP() << "no shared fixtures";
  Qwen2VLImageConfig cfg = Qwen2VLImageConfig::from_file(dir + "/tiny-bf16/preprocessor_config.json");
  EXPECT_EQ(cfg.min_pixels, 3136);
  EXPECT_EQ(cfg.max_pixels, 15680);
  Qwen2VLImageConfig cfg2024 = Qwen2VLImageConfig::from_file(dir + "/tiny-mlx-4bit-2024/preprocessor_config.json");
  EXPECT_EQ(cfg2024.min_pixels, cfg.min_pixels);
  EXPECT_EQ(cfg2024.max_pixels, cfg.max_pixels);
  int images = 0, videos = 0;
  for (const std::string& path : case_files(dir + "/cases")) {
    SCOPED_TRACE(path);
    json c = read_json_file(path);
    auto st = SafetensorsFile::open(path.substr(0, path.size() - 5) + ".safetensors");
    std::vector<float> all_pixels;
    std::vector<int64_t> grids;
    for (size_t i = 0; i < c["image_files"].size(); ++i) {
      Image img = load_image(dir + "/" + c["image_files"][i].get<std::string>());
      auto [h, w] = qwen2vl_smart_resize(img.height, img.width, 28, cfg.min_pixels, cfg.max_pixels);
      EXPECT_EQ(h, c["image_resized_hw"][i][0].get<int>());
      EXPECT_EQ(w, c["image_resized_hw"][i][1].get<int>());
      Image r = resize(img, w, h, Resample::Bicubic);
      expect_bytes_eq(st->tensor("image_resized." + std::to_string(i)), r.rgb.data(), r.rgb.size(), "image_resized");
      Qwen2VLPatches p = qwen2vl_preprocess({img}, cfg);
      EXPECT_EQ(p.resized_height, h);
      EXPECT_EQ(p.resized_width, w);
      all_pixels.insert(all_pixels.end(), p.pixel_values.data<float>(),
                        p.pixel_values.data<float>() + p.pixel_values.numel());
      grids.insert(grids.end(), p.grid_thw.begin(), p.grid_thw.end());
      ++images;
    }
    if (!grids.empty()) {
      EXPECT_EQ(grid_rows(*st, "image_grid_thw"), grids);
      expect_floats_eq(st->tensor("pixel_values"), all_pixels.data(), all_pixels.size(), "pixel_values");
    }
    for (size_t v = 0; v < c["video_files"].size(); ++v) {
      std::vector<std::string> paths;
      for (const auto& f : c["video_files"][v]) paths.push_back(dir + "/" + f.get<std::string>());
      std::vector<Image> frames = load_frames_from_images(paths);
      Qwen2VLPatches p = qwen2vl_preprocess(frames, cfg);
      std::vector<uint8_t> resized;
      for (const Image& f : frames) {
        Image r = resize(f, p.resized_width, p.resized_height, Resample::Bicubic);
        resized.insert(resized.end(), r.rgb.begin(), r.rgb.end());
      }
      expect_bytes_eq(st->tensor("video_resized." + std::to_string(v)), resized.data(), resized.size(),
                      "video_resized");
      EXPECT_EQ(grid_rows(*st, "video_grid_thw"), std::vector<int64_t>(p.grid_thw.begin(), p.grid_thw.end()));
      expect_floats_eq(st->tensor("pixel_values_videos"), p.pixel_values.data<float>(), p.pixel_values.numel(),
                       "pixel_values_videos");
      ++videos;
    }
  }
  EXPECT_EQ(images, 8);
  EXPECT_EQ(videos, 1);
}

TEST(Fixtures, PaliGemmaCases) {
  const std::string dir = test::shared_dir() + "/fixtures/paligemma";
  if (!fs::exists(dir)) GTEST_SKIP() << "no shared fixtures";
  SiglipImageConfig cfg = SiglipImageConfig::from_file(dir + "/tiny-bf16/preprocessor_config.json");
  EXPECT_EQ(cfg.height, 56);
  EXPECT_EQ(cfg.width, 56);
  int n = 0;
  for (const std::string& path : case_files(dir + "/cases")) {
    SCOPED_TRACE(path);
    json c = read_json_file(path);
    auto st = SafetensorsFile::open(path.substr(0, path.size() - 5) + ".safetensors");
    Image img = load_image(dir + "/" + c["image"]["file"].get<std::string>());
    EXPECT_EQ(img.width, c["image"]["width"].get<int>());
    EXPECT_EQ(img.height, c["image"]["height"].get<int>());
    EXPECT_EQ(test::sha256_hex(img), c["image"]["decoded_rgb_sha256"].get<std::string>());
    Image r = resize(img, cfg.width, cfg.height, cfg.resample);
    expect_bytes_eq(st->tensor("resized_rgb_u8"), r.rgb.data(), r.rgb.size(), "resized_rgb_u8");
    Tensor pv = siglip_preprocess(img, cfg);
    EXPECT_EQ(pv.shape(), (Shape{3, 56, 56}));
    expect_floats_eq(st->tensor("pixel_values"), pv.data<float>(), pv.numel(), "pixel_values");
    ++n;
  }
  EXPECT_EQ(n, 10);
}

TEST(Preprocess, SmartResize) {
  // Ties: 70/28 = 2.5 -> 2 and 98/28 = 3.5 -> 4 (Python rounds halves to even).
  EXPECT_EQ(qwen2vl_smart_resize(98, 70, 28, 3136, 15680), (std::array<int, 2>{112, 56}));
  EXPECT_EQ(qwen2vl_smart_resize(30, 40, 28, 3136, 15680), (std::array<int, 2>{56, 84}));
  // Qwen2-VL defaults on a 4032x3024 photo: the max_pixels path.
  EXPECT_EQ(qwen2vl_smart_resize(3024, 4032, 28, 3136, 1003520), (std::array<int, 2>{840, 1148}));
  EXPECT_THROW(qwen2vl_smart_resize(20, 100, 28, 3136, 15680), Error);
  EXPECT_THROW(qwen2vl_smart_resize(28, 28 * 201, 28, 3136, 1 << 30), Error);
}

TEST(Preprocess, ConfigLayouts) {
  std::string dir = testing::TempDir();
  auto write = [&](const std::string& name, const std::string& text) {
    std::string p = dir + "/" + name;
    std::ofstream(p) << text;
    return p;
  };
  auto a = Qwen2VLImageConfig::from_file(write("a.json", R"({"size": {"shortest_edge": 100, "longest_edge": 200}})"));
  EXPECT_EQ(a.min_pixels, 100);
  EXPECT_EQ(a.max_pixels, 200);
  auto b = Qwen2VLImageConfig::from_file(write("b.json", R"({"size": {"min_pixels": 10, "max_pixels": 20}})"));
  EXPECT_EQ(b.min_pixels, 10);
  EXPECT_EQ(b.max_pixels, 20);
  auto c = Qwen2VLImageConfig::from_file(
      write("c.json", R"({"min_pixels": 5, "max_pixels": 50, "size": {"shortest_edge": 1, "longest_edge": 2}})"));
  EXPECT_EQ(c.min_pixels, 5);
  EXPECT_EQ(c.max_pixels, 50);
  EXPECT_THROW(Qwen2VLImageConfig::from_file(write("d.json", R"({"min_pixels": "x"})")), Error);
  auto s = SiglipImageConfig::from_file(write("s.json", R"({"size": {"height": 448, "width": 448}, "resample": 2})"));
  EXPECT_EQ(s.height, 448);
  EXPECT_EQ(s.resample, Resample::Bilinear);
}

}  // namespace
}  // namespace vlm
