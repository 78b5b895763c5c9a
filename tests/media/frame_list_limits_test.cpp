// A video given as frame images is bounded like a decoded one (frame count, total pixels).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/error.h"
#include "media/video.h"

namespace vlm {
namespace {

const std::string kFrame = std::string(VLM_SOURCE_DIR) + "/tests/media/data/rgb.bmp";

std::string error_of(const std::vector<std::string>& paths, const VideoSampling& s) {
  try {
    load_frames_from_images(paths, {}, s);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(FrameListLimits, FrameCountIsBoundedBeforeAnyDecoding) {
  VideoSampling s;
  // Nonexistent paths: the count is refused before any file is opened.
  std::vector<std::string> paths(s.max_frames + 1, "/nonexistent/frame.png");
  EXPECT_NE(error_of(paths, s).find("769 frame images exceed the limit of 768 frames"), std::string::npos);
  s.max_frames = 2;
  EXPECT_NE(error_of({kFrame, kFrame, kFrame}, s).find("exceed the limit of 2 frames"), std::string::npos);
  s.max_frames = 3;
  EXPECT_EQ(load_frames_from_images({kFrame, kFrame, kFrame}, {}, s).size(), 3u);
}

TEST(FrameListLimits, TotalPixelsAreBounded) {
  Image one = load_image(kFrame);
  VideoSampling s;
  s.max_pixels_total = int64_t(one.width) * one.height * 2;
  EXPECT_EQ(load_frames_from_images({kFrame, kFrame}, {}, s).size(), 2u);
  EXPECT_NE(error_of({kFrame, kFrame, kFrame}, s).find("pixels over all frames"), std::string::npos);
}

}  // namespace
}  // namespace vlm
