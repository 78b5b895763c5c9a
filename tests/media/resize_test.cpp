// Pillow bit-exactness of resize(): goldens from tests/media/make_resize_goldens.py, plus a live
// comparison with Debian's Pillow when /usr/bin/python3 has PIL.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <map>

#include "core/error.h"
#include "media/image.h"
#include "media_test_util.h"

namespace vlm {
namespace {

// Same formula as pattern_pixel() in make_resize_goldens.py.
uint8_t pattern_pixel(uint32_t x, uint32_t y, uint32_t c, uint32_t seed) {
  if (seed % 2)
    return uint8_t(((x / 9 + y / 7) % 2) ? (x * 255 / 97 + y * 3 + c * 40) % 256 : (x + y * 2 + c * 85) % 256);
  uint32_t h = x * 2654435761u + y * 40503u + c * 977u + seed * 7919u;
  h ^= h >> 13;
  h *= 0x5BD1E995u;
  h ^= h >> 15;
  return uint8_t(h & 255);
}

Image pattern_image(int w, int h, int seed) {
  Image img;
  img.width = w;
  img.height = h;
  img.rgb.resize(size_t(w) * h * 3);
  size_t i = 0;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c) img.rgb[i++] = pattern_pixel(x, y, c, seed);
  return img;
}

const std::map<std::string, Resample> kFilters = {{"nearest", Resample::Nearest},   {"box", Resample::Box},
                                                  {"bilinear", Resample::Bilinear}, {"hamming", Resample::Hamming},
                                                  {"bicubic", Resample::Bicubic},   {"lanczos", Resample::Lanczos}};

TEST(Resize, MatchesPillowGoldens) {
  json g = read_json_file(test::media_test_dir() + "/resize_goldens.json");
  int n = 0;
  for (const auto& c : g["cases"]) {
    int iw = c["in"][0], ih = c["in"][1], ow = c["out"][0], oh = c["out"][1], seed = c["seed"];
    std::string filter = c["filter"];
    Image out = resize(pattern_image(iw, ih, seed), ow, oh, kFilters.at(filter));
    ASSERT_EQ(out.width, ow);
    ASSERT_EQ(out.height, oh);
    EXPECT_EQ(test::sha256_hex(out), c["sha256"].get<std::string>())
        << filter << " " << iw << "x" << ih << " -> " << ow << "x" << oh << " seed " << seed;
    ++n;
  }
  EXPECT_GE(n, 180);
}

TEST(Resize, SameSizeIsACopyAndBadSizesThrow) {
  Image img = pattern_image(5, 4, 2);
  EXPECT_EQ(resize(img, 5, 4, Resample::Lanczos).rgb, img.rgb);
  EXPECT_THROW(resize(img, 0, 4, Resample::Bicubic), Error);
  EXPECT_THROW(resize(Image{}, 3, 3, Resample::Bicubic), Error);
}

// Random sizes checked against Pillow itself at test time (skipped without python3-pil).
TEST(Resize, LivePillowRandomSizes) {
  if (std::system("/usr/bin/python3 -c 'import PIL' > /dev/null 2>&1") != 0) GTEST_SKIP() << "no python3-pil";
  std::string dir = testing::TempDir();
  std::string script = dir + "/vlm_resize_live.py", out = dir + "/vlm_resize_live.txt";
  std::ofstream(script) << R"(
import hashlib, random, sys
sys.path.insert(0, ')" << test::media_test_dir()
                        << R"(')
from make_resize_goldens import pattern_image, FILTERS
rng = random.Random(1234)
for i in range(40):
    iw, ih = rng.randint(1, 90), rng.randint(1, 90)
    ow, oh = rng.randint(1, 120), rng.randint(1, 120)
    seed = rng.randint(0, 50)
    name = rng.choice(sorted(FILTERS))
    r = pattern_image(iw, ih, seed).resize((ow, oh), FILTERS[name])
    print(iw, ih, ow, oh, seed, name, hashlib.sha256(r.tobytes()).hexdigest())
)";
  ASSERT_EQ(std::system(("/usr/bin/python3 " + script + " > " + out).c_str()), 0);
  std::ifstream in(out);
  int iw, ih, ow, oh, seed, n = 0;
  std::string name, sha;
  while (in >> iw >> ih >> ow >> oh >> seed >> name >> sha) {
    EXPECT_EQ(test::sha256_hex(resize(pattern_image(iw, ih, seed), ow, oh, kFilters.at(name))), sha)
        << name << " " << iw << "x" << ih << " -> " << ow << "x" << oh << " seed " << seed;
    ++n;
  }
  EXPECT_EQ(n, 40);
}

}  // namespace
}  // namespace vlm
