// Shared helpers for the Qwen2-VL and Qwen2.5-VL tests: fixture paths, case files, cached model loads.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "io/json_file.h"
#include "io/safetensors.h"
#include "media/image.h"
#include "models/qwen2_vl/qwen2_vl.h"
#include "trace_util.h"

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

// `dir`: the fixture folder (Qwen2.5-VL's cases have the same format plus extra tensors).
inline Case load_case(const std::string& name, const std::string& dir = fixture_dir()) {
  Case c;
  c.name = name;
  c.meta = read_json_file(dir + "/cases/" + name + ".json");
  c.st = SafetensorsFile::open(dir + "/cases/" + name + ".safetensors");
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
  if (c.has("second_per_grid_ts"))
    for (float s : c.floats("second_per_grid_ts")) in.video_second_per_grid.push_back(s);
  return in;
}

// HF-structured messages (content string or list of {type: image|video|text}) as ChatMessages,
// with media paths relative to `base` and a video's "fps".
inline std::vector<ChatMessage> to_messages(const json& messages, const std::string& base) {
  std::vector<ChatMessage> out;
  for (const json& m : messages) {
    ChatMessage msg;
    msg.role = m["role"].get<std::string>();
    if (m["content"].is_string()) {
      ContentPart p;
      p.text = m["content"].get<std::string>();
      msg.content.push_back(p);
    } else {
      for (const json& c : m["content"]) {
        ContentPart p;
        std::string type = c["type"].get<std::string>();
        if (type == "text") {
          p.text = c["text"].get<std::string>();
        } else if (type == "image") {
          p.kind = ContentPart::Kind::Image;
          p.image = load_image(base + "/" + c["image"].get<std::string>());
        } else {
          p.kind = ContentPart::Kind::Video;
          for (const json& f : c["video"]) p.frames.push_back(load_image(base + "/" + f.get<std::string>()));
          p.fps = c.value("fps", 0.0);
        }
        msg.content.push_back(std::move(p));
      }
    }
    out.push_back(std::move(msg));
  }
  return out;
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

// The stored decoder tensors of model `m` (prefix "<model>.") against a one-shot forward trace:
// residual stream after each layer and final norm at the last 8 positions (1e-3), logits at
// logits_cols, full-row argmax (exact), max and logsumexp (2e-3).
inline void expect_decoder_matches(const Case& c, const std::string& m, const vlm::testing::ForwardTrace& t,
                                   const nn::DecoderConfig& cfg) {
  const int64_t H = cfg.hidden, V = cfg.vocab;
  const std::string p = m + ".";
  std::vector<float> layers = c.floats(p + "layer_out_last8");
  const auto& layer_out = t.rec.all("decoder.layer");
  ASSERT_EQ(layer_out.size(), size_t(cfg.num_layers));
  const int64_t L = int64_t(layer_out[0].size()) / H;
  for (size_t l = 0; l < layer_out.size(); ++l) {
    const float* got = layer_out[l].data() + (L - 8) * H;
    EXPECT_LE(max_abs_diff(got, layers.data() + l * 8 * H, size_t(8 * H)), 1e-3f) << "layer " << l;
  }
  std::vector<float> hidden = c.floats(p + "hidden_last8");
  EXPECT_LE(max_abs_diff(t.rec.last("decoder.norm").data() + (L - 8) * H, hidden.data(), size_t(8 * H)), 1e-3f)
      << "hidden_last8";
  ASSERT_EQ(t.logits.size(), size_t(8 * V));
  std::vector<int64_t> cols = c.ints("logits_cols");
  std::vector<float> want = c.floats(p + "logits_last8");
  std::vector<float> want_max = c.floats(p + "logits_last8_max"), want_lse = c.floats(p + "logits_last8_logsumexp");
  std::vector<int64_t> want_argmax = c.ints(p + "logits_last8_argmax");
  float worst = 0;
  for (int64_t r = 0; r < 8; ++r) {
    const float* row = t.logits.data() + r * V;
    for (size_t j = 0; j < cols.size(); ++j)
      worst = std::max(worst, std::abs(row[cols[j]] - want[size_t(r) * cols.size() + j]));
    const float* best = std::max_element(row, row + V);
    double sum = 0;
    for (int64_t i = 0; i < V; ++i) sum += std::exp(double(row[i]) - double(*best));
    EXPECT_EQ(best - row, want_argmax[size_t(r)]) << "argmax of row " << r;
    EXPECT_NEAR(*best, want_max[size_t(r)], 2e-3f) << "max of row " << r;
    EXPECT_NEAR(double(*best) + std::log(sum), want_lse[size_t(r)], 2e-3) << "logsumexp of row " << r;
  }
  EXPECT_LE(worst, 2e-3f) << "logits_last8 at logits_cols";
}

}  // namespace vlm::qwen2vl_test
