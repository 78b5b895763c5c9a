// Inputs found by the fuzzers (fuzz/) that once misbehaved; each is also in fuzz/corpus/.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "io/json_file.h"

namespace vlm {
namespace {

// config_fuzz: "image_token_index": 2571e52 reached nlohmann's float -> int cast (undefined behaviour).
TEST(FuzzRegressions, IntegerFieldsRejectOutOfRangeNumbers) {
  json cfg = json::parse(R"({"big": 2571e52, "f": 3.0, "frac": 2.5, "i64": 1099511627776, "neg": -1,
                             "inf_ish": 1e308, "two63": 9223372036854775808.0, "u64": 18446744073709551615})");
  auto error = [&](auto fallback, const char* key) -> std::string {
    try {
      json_get(cfg, key, fallback, "config.json");
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(error(0, "big").find("config.json: field 'big' is not an integer in range"), std::string::npos);
  EXPECT_NE(error(0, "frac").find("not an integer"), std::string::npos);
  EXPECT_NE(error(0, "i64").find("not an integer"), std::string::npos);
  EXPECT_NE(error(uint32_t(0), "neg").find("not an integer"), std::string::npos);
  EXPECT_NE(error(int64_t(0), "inf_ish").find("not an integer"), std::string::npos);
  EXPECT_NE(error(int64_t(0), "two63").find("not an integer"), std::string::npos);
  EXPECT_NE(error(int64_t(0), "u64").find("not an integer"), std::string::npos);
  EXPECT_THROW(json_require<int>(cfg, "big", "config.json"), Error);
  // In-range values keep working, integral floats included; floats still convert to floats.
  EXPECT_EQ(json_get(cfg, "f", 0, "c"), 3);
  EXPECT_EQ(json_get(cfg, "i64", int64_t(0), "c"), int64_t(1) << 40);
  EXPECT_EQ(json_get(cfg, "neg", 0, "c"), -1);
  EXPECT_EQ(json_get(cfg, "u64", uint64_t(0), "c"), UINT64_MAX);
  EXPECT_DOUBLE_EQ(json_get(cfg, "big", 0.0, "c"), 2571e52);
  EXPECT_EQ(json_require<int>(cfg, "f", "c"), 3);
}

}  // namespace
}  // namespace vlm
