// FFmpeg decoding of sampled video frames.
#include "media/video.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <set>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libswscale/swscale.h>
}

#include "core/error.h"

namespace vlm {
namespace {

std::string av_error(int code) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {};
  av_strerror(code, buf, sizeof(buf));
  return buf;
}

struct FormatCloser {
  void operator()(AVFormatContext* f) const { avformat_close_input(&f); }
};
struct CodecFreer {
  void operator()(AVCodecContext* c) const { avcodec_free_context(&c); }
};
struct FrameFreer {
  void operator()(AVFrame* f) const { av_frame_free(&f); }
};
struct PacketFreer {
  void operator()(AVPacket* p) const { av_packet_free(&p); }
};
struct SwsFreer {
  void operator()(SwsContext* s) const { sws_freeContext(s); }
};
using FormatPtr = std::unique_ptr<AVFormatContext, FormatCloser>;

FormatPtr open_input(const std::string& path, int* stream) {
  // FFmpeg logs to stderr by default; our errors carry the message already. Only lowered from the
  // library default, so an application's own choice is kept.
  if (av_log_get_level() == AV_LOG_INFO) av_log_set_level(AV_LOG_FATAL);
  AVFormatContext* raw = nullptr;
  int rc = avformat_open_input(&raw, path.c_str(), nullptr, nullptr);
  if (rc < 0) fail(path, ": cannot open video: ", av_error(rc));
  FormatPtr fmt(raw);
  if ((rc = avformat_find_stream_info(fmt.get(), nullptr)) < 0)
    fail(path, ": cannot read video stream info: ", av_error(rc));
  *stream = av_find_best_stream(fmt.get(), AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
  if (*stream < 0) fail(path, ": no decodable video stream");
  return fmt;
}

int64_t floor_by(double v, int f) {
  return int64_t(std::floor(v / f)) * f;
}
int64_t ceil_by(double v, int f) {
  return int64_t(std::ceil(v / f)) * f;
}
int64_t round_by(double v, int f) {
  return int64_t(std::nearbyint(v / f)) * f;
}

}  // namespace

std::vector<int64_t> sample_frame_indices(int64_t total, double video_fps, const VideoSampling& s,
                                          const std::string& source) {
  const int f = std::max(1, s.temporal_patch_size);
  if (total <= 0) fail(source, ": video has no frames");
  int64_t n;
  if (s.nframes > 0) {
    n = round_by(s.nframes, f);
  } else {
    if (!(video_fps > 0)) fail(source, ": unknown frame rate");
    int64_t min_frames = ceil_by(s.min_frames, f);
    int64_t max_frames = floor_by(double(std::min<int64_t>(s.max_frames, total)), f);
    double want = double(total) / video_fps * s.fps;
    want = std::min(std::min(std::max(want, double(min_frames)), double(max_frames)), double(total));
    n = floor_by(want, f);
  }
  if (n < f || n > total)
    fail(source, ": cannot sample ", n, " frames from a video of ", total, " frames (need ", f, "..", total, ")");
  // torch.linspace in float32 (first half from the start, second half from the end), then
  // round-half-even.
  std::vector<int64_t> idx(n);
  const float start = 0.0f, end = float(total - 1);
  const float step = n > 1 ? (end - start) / float(n - 1) : 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    float v = i < n / 2 ? start + step * float(i) : end - step * float(n - 1 - i);
    idx[i] = int64_t(std::nearbyint(v));
  }
  return idx;
}

std::vector<Image> load_video_frames(const std::string& path, const VideoSampling& s) {
  int stream = -1;
  FormatPtr fmt = open_input(path, &stream);
  AVStream* st = fmt->streams[stream];
  // Pass 1: count the stream's packets (no decoding).
  int64_t total = 0;
  std::unique_ptr<AVPacket, PacketFreer> pkt(av_packet_alloc());
  while (av_read_frame(fmt.get(), pkt.get()) >= 0) {
    if (pkt->stream_index == stream && ++total > s.max_source_frames)
      fail(path, ": video has more than ", s.max_source_frames, " frames");
    av_packet_unref(pkt.get());
  }
  AVRational rate = st->avg_frame_rate.num > 0 ? st->avg_frame_rate : st->r_frame_rate;
  double fps = rate.den > 0 ? av_q2d(rate) : 0.0;
  std::vector<int64_t> indices = sample_frame_indices(total, fps, s, path);
  const int64_t w = st->codecpar->width, h = st->codecpar->height;
  if (w <= 0 || h <= 0) fail(path, ": video has zero frame size");
  if (int64_t(indices.size()) * w * h > s.max_pixels_total)
    fail(path, ": ", indices.size(), " frames of ", w, "x", h, " exceed the limit of ", s.max_pixels_total, " pixels");

  // Pass 2: reopen (seeking is unreliable across containers) and decode, keeping sampled frames.
  fmt = open_input(path, &stream);
  st = fmt->streams[stream];
  const AVCodec* codec = avcodec_find_decoder(st->codecpar->codec_id);
  if (!codec) fail(path, ": no decoder for the video codec");
  std::unique_ptr<AVCodecContext, CodecFreer> cc(avcodec_alloc_context3(codec));
  int rc = avcodec_parameters_to_context(cc.get(), st->codecpar);
  if (rc >= 0) rc = avcodec_open2(cc.get(), codec, nullptr);
  if (rc < 0) fail(path, ": cannot open the video decoder: ", av_error(rc));
  std::unique_ptr<AVFrame, FrameFreer> frame(av_frame_alloc());
  std::unique_ptr<SwsContext, SwsFreer> sws;
  std::vector<Image> out;
  out.reserve(indices.size());
  size_t next = 0;  // position in `indices` (sorted, may repeat)
  int64_t decoded = 0;
  auto take_frames = [&]() {
    for (;;) {
      int r = avcodec_receive_frame(cc.get(), frame.get());
      if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return;
      if (r < 0) fail(path, ": video decoding failed: ", av_error(r));
      while (next < indices.size() && indices[next] == decoded) {
        Image img;
        img.width = frame->width;
        img.height = frame->height;
        img.rgb.resize(size_t(img.width) * img.height * 3);
        sws.reset(sws_getCachedContext(sws.release(), frame->width, frame->height, AVPixelFormat(frame->format),
                                       frame->width, frame->height, AV_PIX_FMT_RGB24, SWS_BICUBIC, nullptr, nullptr,
                                       nullptr));
        if (!sws) fail(path, ": unsupported video pixel format");
        uint8_t* dst[4] = {img.rgb.data(), nullptr, nullptr, nullptr};
        int dst_stride[4] = {img.width * 3, 0, 0, 0};
        sws_scale(sws.get(), frame->data, frame->linesize, 0, frame->height, dst, dst_stride);
        out.push_back(std::move(img));
        ++next;
      }
      ++decoded;
      av_frame_unref(frame.get());
    }
  };
  while (next < indices.size() && av_read_frame(fmt.get(), pkt.get()) >= 0) {
    if (pkt->stream_index == stream) {
      rc = avcodec_send_packet(cc.get(), pkt.get());
      if (rc < 0 && rc != AVERROR(EAGAIN)) {
        av_packet_unref(pkt.get());
        fail(path, ": corrupt video data: ", av_error(rc));
      }
      take_frames();
    }
    av_packet_unref(pkt.get());
  }
  if (next < indices.size()) {
    avcodec_send_packet(cc.get(), nullptr);
    take_frames();
  }
  if (out.empty()) fail(path, ": no video frame could be decoded");
  // A stream that decodes to fewer frames than it has packets: repeat the last decoded frame.
  while (out.size() < indices.size()) out.push_back(out.back());
  return out;
}

std::vector<Image> load_frames_from_images(const std::vector<std::string>& paths, const ImageLimits& limits,
                                           const VideoSampling& s) {
  if (paths.empty()) fail("video: empty list of frame images");
  if (paths.size() > size_t(std::max(s.max_frames, 0)))
    fail("video: ", paths.size(), " frame images exceed the limit of ", s.max_frames, " frames");
  std::vector<Image> frames;
  frames.reserve(paths.size());
  int64_t total_pixels = 0;
  for (const auto& p : paths) {
    frames.push_back(load_image(p, limits));
    total_pixels += int64_t(frames.back().width) * frames.back().height;
    if (total_pixels > s.max_pixels_total)
      fail(p, ": video frames exceed the limit of ", s.max_pixels_total, " pixels over all frames");
  }
  return frames;
}

}  // namespace vlm
