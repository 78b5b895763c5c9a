// Shared helpers for the Qwen2-VL tests: fixture paths, case files, cached model loads.
#pragma once
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "io/json_file.h"
#include "io/safetensors.h"
#include "models/qwen2_vl/qwen2_vl.h"

namespace vlm::qwen2vl_test {

inline std::string shared_dir() {
  return VLM_SHARED_DIR;
}
inline std::string fixture_dir() {
  return shared_dir() + "/fixtures/qwen2_vl";
}
inline bool have_fixtures() {
  return std::filesystem::is_directory(fixture_dir() + "/cases");
}

inline const std::vector<std::string>& case_names() {
  static const std::vector<std::string> names = {
      "01_text_only",  "02_one_image",     "03_two_images", "04_tall_image",
      "05_wide_image", "06_video_4frames", "07_multi_turn", "08_system_text_image_text"};
  return names;
}
inline const std::vector<std::string>& model_names() {
  static const std::vector<std::string> names = {"tiny-bf16", "tiny-mlx-4bit", "tiny-mlx-4bit-2024"};
  return names;
}

struct Case {
  std::string name;
  json meta;
  std::shared_ptr<SafetensorsFile> st;
  bool has(const std::string& t) const { return st->contains(t); }
  Tensor get(const std::string& t) const { return st->tensor(t); }
  std::vector<float> floats(const std::string& t) const { return st->tensor(t).to_floats(); }
  std::vector<int64_t> ints(const std::string& t) const { return st->tensor(t).to_ints(); }
};

inline Case load_case(const std::string& name) {
  Case c;
  c.name = name;
  c.meta = read_json_file(fixture_dir() + "/cases/" + name + ".json");
  c.st = SafetensorsFile::open(fixture_dir() + "/cases/" + name + ".safetensors");
  return c;
}

inline std::vector<Grid> grids_of(const Case& c, const std::string& tensor) {
  std::vector<Grid> out;
  if (!c.has(tensor)) return out;
  std::vector<int64_t> v = c.ints(tensor);
  for (size_t i = 0; i + 2 < v.size(); i += 3) out.push_back({v[i], v[i + 1], v[i + 2]});
  return out;
}

// Splits the stored concatenated pixel rows into one tensor per item.
inline std::vector<Tensor> split_items(const Case& c, const std::string& tensor, const std::vector<Grid>& grids) {
  std::vector<Tensor> out;
  if (!c.has(tensor)) return out;
  Tensor all = c.get(tensor);
  int64_t row = 0;
  for (const Grid& g : grids) {
    int64_t n = g[0] * g[1] * g[2];
    out.push_back(all.slice(0, row, row + n).contiguous());
    row += n;
  }
  return out;
}

// ModelInput from the stored ids / pixels / grids.
inline ModelInput stored_input(const Case& c) {
  ModelInput in;
  for (int64_t id : c.ints("input_ids")) in.ids.push_back(int32_t(id));
  in.image_grids = grids_of(c, "image_grid_thw");
  in.images = split_items(c, "pixel_values", in.image_grids);
  in.video_grids = grids_of(c, "video_grid_thw");
  in.videos = split_items(c, "pixel_values_videos", in.video_grids);
  return in;
}

inline const Qwen2VLModel& model(const std::string& name) {
  static std::mutex mu;
  static std::map<std::string, std::unique_ptr<Qwen2VLModel>> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = cache[name];
  if (!slot) slot = Qwen2VLModel::load(Checkpoint::open(fixture_dir() + "/" + name));
  return *slot;
}

inline float max_abs_diff(const float* a, const float* b, size_t n) {
  float m = 0;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

}  // namespace vlm::qwen2vl_test
