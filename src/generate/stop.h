// Stop strings over streamed text: text that could still become the start of a stop string is held
// back until it cannot, and a matched stop string (and anything after it) is never emitted.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace vlm {

class StopStringMatcher {
 public:
  explicit StopStringMatcher(std::vector<std::string> stops);  // empty strings are ignored

  struct Output {
    std::string text;  // safe to emit now
    bool stopped = false;
  };
  // Adds newly decoded text; after a stop has matched, further input is discarded.
  Output push(std::string_view piece);
  // Releases the held-back text (generation ended without a match).
  std::string flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool stopped_ = false;
};

}  // namespace vlm
