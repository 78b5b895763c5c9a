// Helpers shared by the media tests: SHA-256 (to compare with Pillow goldens), paths, JSON.
#pragma once
#include <array>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "core/sha256.h"
#include "io/json_file.h"
#include "media/image.h"

namespace vlm::test {

inline std::string sha256_hex(const uint8_t* data, size_t len) {
  return vlm::sha256_hex(data, len);
}

inline std::string sha256_hex(const Image& img) {
  return sha256_hex(img.rgb.data(), img.rgb.size());
}

inline std::string source_dir() {
  return VLM_SOURCE_DIR;
}
inline std::string shared_dir() {
  return VLM_SHARED_DIR;
}
inline std::string media_test_dir() {
  return source_dir() + "/tests/media";
}

inline std::vector<uint8_t> read_bytes(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return {};
  std::vector<uint8_t> out;
  uint8_t buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) out.insert(out.end(), buf, buf + n);
  std::fclose(f);
  return out;
}

}  // namespace vlm::test
