// PaliGemma structured outputs: "detect" answers made of <locYYYY> tokens and "segment" answers
// with <segNNN> codes, plus drawing the boxes onto an image and writing it as PNG.
//
// Answer format (big_vision): objects separated by " ; ", each
//   <loc y_min><loc x_min><loc y_max><loc x_max> [<seg...> x16] label
// with bins in [0, 1024) over the image height (y) and width (x).
#pragma once
#include <array>
#include <string>
#include <vector>

#include "media/image.h"

namespace vlm {

struct Detection {
  std::string label;
  std::array<int, 4> bins{};  // y_min, x_min, y_max, x_max as written (0..1023)
  // Pixel coordinates: bin / 1024 * image size.
  float y_min = 0, x_min = 0, y_max = 0, x_max = 0;
  std::vector<int> seg;  // the <segNNN> codes that follow the box (16 in a segmentation answer), else empty
};

// Parses every "<loc><loc><loc><loc>[<seg>...] label" object of `text`; other text is ignored.
std::vector<Detection> parse_detections(const std::string& text, int image_width, int image_height);
// All <segNNN> codes of `text`, in order.
std::vector<int> parse_seg_codes(const std::string& text);

// A copy of `image` with each detection's box outlined and its label written above it.
Image draw_detections(const Image& image, const std::vector<Detection>& detections);
// Writes 8-bit RGB PNG; errors name the path.
void write_png(const std::string& path, const Image& image);

}  // namespace vlm
