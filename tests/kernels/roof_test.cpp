// The roof measurements (kernels/roof.h): the work they count and the sums they compute are exact;
// their rates are the machine's and are not checked here.
#include "kernels/roof.h"

#include <gtest/gtest.h>

#include <vector>

namespace vlm {
namespace {

TEST(Roof, ChainsCountEveryOperationOfEveryThread) {
  for (int threads : {1, 2}) {
    ThreadPool pool(threads);
    const struct {
      RoofOp op;
      double per_instruction;
    } ops[] = {{RoofOp::kF32Fma, 32}, {RoofOp::kBf16Dot, 64}, {RoofOp::kInt8Dot, 128}};
    for (const auto& o : ops) {
      const double done = run_roof_chains(pool, o.op, 1000);
      EXPECT_EQ(done, roof_op_supported(o.op) ? threads * 1000.0 * 16 * o.per_instruction : 0.0)
          << int(o.op) << " threads=" << threads;
    }
    EXPECT_EQ(run_roof_chains(pool, RoofOp::kF32Fma, 0), 0.0);
  }
}

TEST(Roof, ParallelSumIsTheSumWhateverTheSplit) {
  // Small integers: every partial sum is exact in float, so the total is too.
  std::vector<float> v(1000003);
  double expected = 0;
  for (size_t i = 0; i < v.size(); ++i) expected += v[i] = float(i % 7) - 3.f;
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    EXPECT_EQ(sum_floats_parallel(pool, v.data(), int64_t(v.size())), expected) << threads;
    EXPECT_EQ(sum_floats_parallel(pool, v.data(), 5), -3.0 - 2 - 1 + 0 + 1) << threads;
  }
}

}  // namespace
}  // namespace vlm
