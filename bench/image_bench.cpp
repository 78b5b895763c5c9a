// Image pipeline speed: decode a 4032x3024 JPEG (a real photo upscaled, like a phone picture) and
// resize it with Pillow-exact bicubic to Qwen2-VL's default max_pixels. After the benchmarks, the
// same work is timed with Pillow (bench/pillow_resize.py) when /usr/bin/python3 has PIL.
#include <benchmark/benchmark.h>
#include <jpeglib.h>

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "media/image.h"
#include "models/qwen2_vl/qwen2_vl.h"

namespace {

const std::filesystem::path kBenchDir = std::filesystem::path(__FILE__).parent_path();

void write_jpeg(const vlm::Image& img, const std::string& path, int quality) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  jpeg_compress_struct c;
  jpeg_error_mgr err;
  c.err = jpeg_std_error(&err);
  jpeg_create_compress(&c);
  jpeg_stdio_dest(&c, f);
  c.image_width = img.width;
  c.image_height = img.height;
  c.input_components = 3;
  c.in_color_space = JCS_RGB;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, quality, TRUE);
  jpeg_start_compress(&c, TRUE);
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = const_cast<uint8_t*>(img.pixel(0, int(c.next_scanline)));
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  std::fclose(f);
}

const std::string& photo_path() {
  static const std::string path = [] {
    std::string out = (std::filesystem::temp_directory_path() / "vlm_bench_4032x3024.jpg").string();
    vlm::Image src;
    std::filesystem::path rocket = kBenchDir / ".." / ".." / "shared" / "images" / "rocket.jpg";
    if (std::filesystem::exists(rocket)) {
      src = vlm::load_image(rocket.string());
    } else {  // synthetic fallback
      src.width = 640, src.height = 480;
      src.rgb.resize(640 * 480 * 3);
      for (size_t i = 0; i < src.rgb.size(); ++i) src.rgb[i] = uint8_t((i * 2654435761u) >> 24);
    }
    write_jpeg(vlm::resize(src, 4032, 3024, vlm::Resample::Bicubic), out, 90);
    return out;
  }();
  return path;
}

std::array<int, 2> qwen_target(const vlm::Image& img) {
  vlm::Qwen2VLImageConfig cfg;  // defaults: min 56*56, max 28*28*1280
  return vlm::qwen2vl_smart_resize(img.height, img.width, 28, cfg.min_pixels, cfg.max_pixels);
}

void BM_DecodeJpeg4032x3024(benchmark::State& state) {
  photo_path();  // creates the file outside the timed loop
  for (auto _ : state) benchmark::DoNotOptimize(vlm::load_image(photo_path()));
}

void BM_ResizeBicubicToQwenMaxPixels(benchmark::State& state) {
  vlm::Image img = vlm::load_image(photo_path());
  auto [h, w] = qwen_target(img);
  for (auto _ : state) benchmark::DoNotOptimize(vlm::resize(img, w, h, vlm::Resample::Bicubic));
  state.SetLabel(std::to_string(img.width) + "x" + std::to_string(img.height) + " -> " + std::to_string(w) + "x" +
                 std::to_string(h));
}

void BM_DecodeAndResize(benchmark::State& state) {
  photo_path();
  for (auto _ : state) {
    vlm::Image img = vlm::load_image(photo_path());
    auto [h, w] = qwen_target(img);
    benchmark::DoNotOptimize(vlm::resize(img, w, h, vlm::Resample::Bicubic));
  }
}

void BM_Qwen2VLPreprocess(benchmark::State& state) {
  vlm::Image img = vlm::load_image(photo_path());
  vlm::Qwen2VLImageConfig cfg;
  for (auto _ : state) benchmark::DoNotOptimize(vlm::qwen2vl_preprocess({img}, cfg));
}

BENCHMARK(BM_DecodeJpeg4032x3024)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ResizeBicubicToQwenMaxPixels)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_DecodeAndResize)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Qwen2VLPreprocess)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  std::string script = (kBenchDir / "pillow_resize.py").string();
  if (std::system("/usr/bin/python3 -c 'import PIL' > /dev/null 2>&1") == 0) {
    std::fflush(stdout);
    int rc = std::system(("/usr/bin/python3 " + script + " " + photo_path() + " 5").c_str());
    (void)rc;
  }
  return 0;
}
