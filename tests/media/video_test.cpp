// Video frame sampling and FFmpeg decoding, against frames extracted by the ffmpeg command.
#include "media/video.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include <unistd.h>

#include "core/error.h"
#include "media_test_util.h"

namespace vlm {
namespace {

TEST(Video, SampleIndicesLikeQwenVlUtils) {
  VideoSampling s;
  // 30 frames at 10 fps, 2 fps wanted: 6 frames, linspace(0, 29, 6) = 0 5.8 11.6 17.4 23.2 29.
  EXPECT_EQ(sample_frame_indices(30, 10.0, s), (std::vector<int64_t>{0, 6, 12, 17, 23, 29}));
  // Short clip: min_frames (4) wins, but never more than the clip has.
  EXPECT_EQ(sample_frame_indices(4, 1.0, s), (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(sample_frame_indices(5, 30.0, s), (std::vector<int64_t>{0, 1, 3, 4}));  // 4 from 5: 0 1.33 2.67 4
  // 100 frames at 30 fps: 6.67 -> floored to a multiple of 2.
  EXPECT_EQ(sample_frame_indices(100, 30.0, s).size(), 6u);
  // max_frames caps long videos.
  s.max_frames = 10;
  EXPECT_EQ(sample_frame_indices(100000, 25.0, s).size(), 10u);
  s = {};
  s.nframes = 7;  // rounded to 8 (half to even: 3.5 -> 4)
  EXPECT_EQ(sample_frame_indices(50, 25.0, s).size(), 8u);
  EXPECT_THROW(sample_frame_indices(1, 25.0, VideoSampling{}), Error);
  EXPECT_THROW(sample_frame_indices(0, 25.0, VideoSampling{}), Error);
}

class VideoFile : public testing::Test {
 protected:
  void SetUp() override {
    if (std::system("ffmpeg -version > /dev/null 2>&1") != 0) GTEST_SKIP() << "no ffmpeg command";
    // One folder per process and test: CTest runs the tests of this suite in parallel processes.
    dir_ = testing::TempDir() + "/vlm_video_test_" + std::to_string(::getpid()) + "_" +
           testing::UnitTest::GetInstance()->current_test_info()->name();
    ASSERT_EQ(std::system(("rm -rf " + dir_ + " && mkdir -p " + dir_).c_str()), 0);
  }
  // Encodes 3 s of testsrc at 10 fps and extracts every frame as PNG (frame_001.png ...).
  std::string make(const std::string& name, const std::string& codec_args) {
    std::string video = dir_ + "/" + name;
    std::string cmd = "ffmpeg -v error -y -f lavfi -i testsrc=size=64x48:rate=10 -t 3 " + codec_args + " " + video +
                      " && mkdir -p " + video + ".frames && ffmpeg -v error -y -i " + video + " " + video +
                      ".frames/frame_%03d.png";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    return video;
  }
  void TearDown() override {
    if (!dir_.empty()) {
      EXPECT_EQ(std::system(("rm -rf " + dir_).c_str()), 0);
    }
  }
  std::string dir_;
};

int max_abs_diff(const Image& a, const Image& b) {
  int m = 0;
  for (size_t i = 0; i < a.rgb.size(); ++i) m = std::max(m, std::abs(int(a.rgb[i]) - int(b.rgb[i])));
  return m;
}

void check_frames(const std::string& video, int tolerance) {
  std::vector<Image> frames = load_video_frames(video);
  std::vector<int64_t> idx = {0, 6, 12, 17, 23, 29};
  ASSERT_EQ(frames.size(), idx.size());
  for (size_t i = 0; i < idx.size(); ++i) {
    char name[32];
    std::snprintf(name, sizeof(name), "/frame_%03d.png", int(idx[i] + 1));
    Image ref = load_image(video + ".frames" + name);
    ASSERT_EQ(frames[i].width, ref.width);
    ASSERT_EQ(frames[i].height, ref.height);
    EXPECT_LE(max_abs_diff(frames[i], ref), tolerance) << "frame " << idx[i];
    testing::Test::RecordProperty("max_diff_frame_" + std::to_string(idx[i]), max_abs_diff(frames[i], ref));
    if (i > 0) {
      EXPECT_GT(max_abs_diff(frames[i], frames[i - 1]), 0) << "frames should differ (testsrc moves)";
    }
  }
}

TEST_F(VideoFile, LosslessRgbMatchesFfmpegExactly) {
  check_frames(make("rgb.mkv", "-c:v ffv1 -pix_fmt bgr0"), 0);
}

TEST_F(VideoFile, Yuv420MatchesFfmpegClosely) {
  // Same swscale conversion as the ffmpeg command (observed exact); allow tiny drift across versions.
  check_frames(make("yuv.mp4", "-c:v mpeg4 -q:v 2 -pix_fmt yuv420p"), 2);
}

TEST_F(VideoFile, Limits) {
  std::string v = make("small.mkv", "-c:v ffv1 -pix_fmt bgr0");
  VideoSampling s;
  s.max_pixels_total = 64 * 48 * 5;  // 6 frames needed
  EXPECT_THROW(load_video_frames(v, s), Error);
  s = {};
  s.max_source_frames = 20;
  EXPECT_THROW(load_video_frames(v, s), Error);
}

TEST_F(VideoFile, BadFilesThrow) {
  std::string junk = dir_ + "/junk.mp4";
  std::ofstream(junk) << std::string(5000, 'x');
  EXPECT_THROW(load_video_frames(junk), Error);
  EXPECT_THROW(load_video_frames(dir_ + "/missing.mp4"), Error);
  std::string png = dir_ + "/still.png";
  ASSERT_EQ(std::system(("ffmpeg -v error -y -f lavfi -i testsrc=size=32x32 -frames:v 1 " + png).c_str()), 0);
  EXPECT_THROW(load_video_frames(png), Error);  // one frame: fewer than temporal_patch_size
  EXPECT_THROW(load_frames_from_images({}), Error);
}

}  // namespace
}  // namespace vlm
