// Video frames for Qwen2-VL-style models: decoding with FFmpeg and frame sampling as
// qwen-vl-utils does it (fps-based frame count rounded to the temporal patch, evenly spaced).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "media/image.h"

namespace vlm {

struct VideoSampling {
  double fps = 2.0;  // frames sampled per second of video
  int nframes = 0;   // if > 0: exactly this many frames (rounded to temporal_patch_size)
  int min_frames = 4;
  int max_frames = 768;
  int temporal_patch_size = 2;  // the frame count is a multiple of this (qwen-vl-utils FRAME_FACTOR)
  int64_t max_pixels_total = int64_t(768) * 1920 * 1080;  // sampled frames x width x height
  int64_t max_source_frames = 1 << 20;                    // refuse longer streams
};

// qwen-vl-utils' smart_nframes + linspace(0, total-1, n).round(): the source frame indices to keep.
std::vector<int64_t> sample_frame_indices(int64_t total_frames, double video_fps, const VideoSampling& s,
                                          const std::string& source = "video");

// Decodes the first video stream of `path` and returns the sampled frames (RGB).
std::vector<Image> load_video_frames(const std::string& path, const VideoSampling& s = {});

// A video given as a list of image files, used as is (no sampling), within the same bounds as a decoded
// video: at most s.max_frames frames and s.max_pixels_total pixels over all frames.
std::vector<Image> load_frames_from_images(const std::vector<std::string>& paths, const ImageLimits& limits = {},
                                           const VideoSampling& s = {});

}  // namespace vlm
