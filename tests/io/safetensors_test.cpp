#include "io/safetensors.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "io/checkpoint.h"

namespace vlm {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() / ("vlm_io_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter_++));
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  std::string str() const { return path_.string(); }

 private:
  fs::path path_;
  static inline int counter_ = 0;
};

// Writes a safetensors file from a literal header and a data section.
void write_raw(const std::string& path, const std::string& header, const std::string& data, int64_t len_override = -1) {
  std::ofstream out(path, std::ios::binary);
  uint64_t len = len_override >= 0 ? uint64_t(len_override) : header.size();
  for (int i = 0; i < 8; ++i) out.put(char((len >> (8 * i)) & 0xff));
  out << header << data;
}

std::string expect_error(const std::string& path) {
  try {
    SafetensorsFile::open(path);
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error for " << path;
  return "";
}

TEST(Safetensors, RoundTripZeroCopy) {
  TempDir dir;
  Tensor a = Tensor::from_floats({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = a.to(DType::BF16);
  save_safetensors(dir.file("m.safetensors"), {{"a", a}, {"b.weight", b}}, {{"format", "pt"}});
  auto f = SafetensorsFile::open(dir.file("m.safetensors"));
  EXPECT_EQ(f->metadata().at("format"), "pt");
  Tensor ra = f->tensor("a");
  EXPECT_EQ(ra.shape(), (Shape{2, 3}));
  EXPECT_EQ(ra.to_floats(), a.to_floats());
  EXPECT_EQ(f->tensor("b.weight").dtype(), DType::BF16);
  EXPECT_EQ(f->tensor("b.weight").to_floats(), a.to_floats());
  f.reset();
  EXPECT_EQ(ra.to_floats()[5], 6);  // the tensor keeps the mapping alive
}

TEST(Safetensors, ReadsFixtureModel) {
  std::string path = std::string(VLM_SHARED_DIR) + "/fixtures/qwen2_vl/tiny-bf16/model.safetensors";
  if (!fs::exists(path)) GTEST_SKIP() << "shared fixtures absent";
  auto f = SafetensorsFile::open(path);
  EXPECT_EQ(f->entries().size(), 57u);
  Tensor emb = f->tensor("model.embed_tokens.weight");
  EXPECT_EQ(emb.shape(), (Shape{151936, 64}));
  EXPECT_EQ(emb.dtype(), DType::BF16);
}

TEST(Safetensors, CorruptFilesGiveClearErrors) {
  TempDir dir;
  const std::string ok_entry = R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  std::string p = dir.file("x.safetensors");

  std::ofstream(p, std::ios::binary) << "abc";
  EXPECT_NE(expect_error(p).find("shorter than the 8-byte header"), std::string::npos);

  write_raw(p, ok_entry, std::string(8, '\0'), 1 << 30);
  EXPECT_NE(expect_error(p).find("exceeds the limit"), std::string::npos);

  write_raw(p, ok_entry, std::string(8, '\0'), int64_t(ok_entry.size()) + 100);
  EXPECT_NE(expect_error(p).find("past the end of the file"), std::string::npos);

  write_raw(p, "{not json", "");
  EXPECT_NE(expect_error(p).find("not valid JSON"), std::string::npos);

  write_raw(p, "[1,2]", "");
  EXPECT_NE(expect_error(p).find("not a JSON object"), std::string::npos);

  write_raw(p, R"({"t":{"dtype":"F8_E9","shape":[2],"data_offsets":[0,2]}})", "xx");
  std::string e = expect_error(p);
  EXPECT_NE(e.find("unsupported dtype F8_E9"), std::string::npos);
  EXPECT_NE(e.find("'t'"), std::string::npos);
  EXPECT_NE(e.find(p), std::string::npos);

  write_raw(p, ok_entry, std::string(4, '\0'));  // truncated data
  EXPECT_NE(expect_error(p).find("truncated"), std::string::npos);

  write_raw(p, R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", std::string(12, '\0'));
  EXPECT_NE(expect_error(p).find("needs 12 bytes"), std::string::npos);

  write_raw(p, R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", std::string(8, '\0'));
  EXPECT_NE(expect_error(p).find("negative"), std::string::npos);

  write_raw(p, R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
            std::string(12, '\0'));
  EXPECT_NE(expect_error(p).find("overlap"), std::string::npos);

  write_raw(p, R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", std::string(8, '\0'));
  EXPECT_NE(expect_error(p).find("begin"), std::string::npos);

  write_raw(p, R"({"t":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", std::string(8, '\0'));
  EXPECT_NE(expect_error(p).find("too large"), std::string::npos);

  write_raw(p, R"({"__metadata__":{"k":1}})", "");
  EXPECT_NE(expect_error(p).find("__metadata__"), std::string::npos);

  EXPECT_NE(expect_error(dir.file("missing.safetensors")).find("cannot open"), std::string::npos);
}

TEST(Safetensors, MissingTensorNamesFile) {
  TempDir dir;
  save_safetensors(dir.file("m.safetensors"), {{"a", Tensor::from_floats({1}, {1})}});
  auto f = SafetensorsFile::open(dir.file("m.safetensors"));
  try {
    f->tensor("nope");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no tensor named 'nope'"), std::string::npos);
  }
}

TEST(Checkpoint, ShardedThroughIndex) {
  TempDir dir;
  save_safetensors(dir.file("model-00001-of-00002.safetensors"), {{"a", Tensor::from_floats({1, 2}, {2})}});
  save_safetensors(dir.file("model-00002-of-00002.safetensors"), {{"b", Tensor::from_floats({3}, {1})}});
  std::ofstream(dir.file("model.safetensors.index.json"))
      << R"({"metadata":{},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}})";
  std::ofstream(dir.file("config.json")) << R"({"model_type":"x"})";
  Checkpoint c = Checkpoint::open(dir.str());
  EXPECT_TRUE(c.has("a"));
  EXPECT_TRUE(c.has("b"));
  EXPECT_EQ(c.get("b").to_floats()[0], 3);
  EXPECT_EQ(c.config()["model_type"], "x");
  EXPECT_THROW(c.get("a", {3}), Error);
  try {
    c.get("zzz");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing tensor 'zzz'"), std::string::npos);
  }
}

TEST(Checkpoint, MissingShardAndEmptyDir) {
  TempDir dir;
  std::ofstream(dir.file("model.safetensors.index.json")) << R"({"weight_map":{"a":"model-00001-of-00002.safetensors"}})";
  try {
    Checkpoint::open(dir.str());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("shard model-00001-of-00002.safetensors is missing"), std::string::npos);
  }
  TempDir empty;
  EXPECT_THROW(Checkpoint::open(empty.str()), Error);
  EXPECT_THROW(Checkpoint::open(empty.file("nope")), Error);
  std::ofstream(dir.file("model.safetensors.index.json")) << R"({"weight_map":{"a":"../etc/passwd"}})";
  EXPECT_THROW(Checkpoint::open(dir.str()), Error);
}

TEST(Checkpoint, DuplicateTensorAcrossFiles) {
  TempDir dir;
  save_safetensors(dir.file("a.safetensors"), {{"w", Tensor::from_floats({1}, {1})}});
  save_safetensors(dir.file("b.safetensors"), {{"w", Tensor::from_floats({1}, {1})}});
  EXPECT_THROW(Checkpoint::open(dir.str()), Error);
}

TEST(QuantConfig, GlobalAndPerModuleOverrides) {
  json cfg = json::parse(R"({"quantization":{"group_size":64,"bits":4,
      "language_model.lm_head":{"group_size":32,"bits":8},
      "vision_tower.blocks.0.attn.qkv":false}})");
  QuantConfig q = QuantConfig::from_model_config(cfg, "config.json");
  EXPECT_TRUE(q.present());
  auto g = q.for_module("language_model.model.layers.0.mlp.up_proj");
  ASSERT_TRUE(g);
  EXPECT_EQ(g->bits, 4);
  EXPECT_EQ(g->group_size, 64);
  auto h = q.for_module("language_model.lm_head");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->bits, 8);
  EXPECT_EQ(h->group_size, 32);
  EXPECT_FALSE(q.for_module("vision_tower.blocks.0.attn.qkv"));
  EXPECT_FALSE(QuantConfig::from_model_config(json::object(), "c").present());
}

TEST(QuantConfig, RejectsBadSettings) {
  EXPECT_THROW(QuantConfig::from_model_config(json::parse(R"({"quantization":{"group_size":64,"bits":7}})"), "c"),
               Error);
  EXPECT_THROW(QuantConfig::from_model_config(json::parse(R"({"quantization":{"group_size":48,"bits":4}})"), "c"),
               Error);
  EXPECT_THROW(QuantConfig::from_model_config(json::parse(R"({"quantization":{"group_size":"64","bits":4}})"), "c"),
               Error);
  EXPECT_THROW(
      QuantConfig::from_model_config(json::parse(R"({"quantization":{"group_size":64,"bits":4,"mode":"mxfp4"}})"), "c"),
      Error);
  // Legacy quantization_config key is accepted.
  EXPECT_TRUE(
      QuantConfig::from_model_config(json::parse(R"({"quantization_config":{"group_size":64,"bits":4}})"), "c").present());
}

}  // namespace
}  // namespace vlm
