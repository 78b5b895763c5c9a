#include "core/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <numeric>
#include <vector>

#include "core/compute.h"
#include "core/error.h"

namespace vlm {
namespace {

TEST(ThreadPool, RunsEveryTaskExactlyOnce) {
  for (int threads : {1, 2, 4}) {
    ThreadPool pool(threads);
    for (int64_t n : {1, 2, 3, 17, 1000}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      pool.run(n, [&](int64_t i) { hits[size_t(i)]++; });
      for (auto& h : hits) EXPECT_EQ(h.load(), 1);
    }
  }
}

TEST(ThreadPool, ParallelForCoversRange) {
  ThreadPool pool(3);
  std::vector<int> seen(1001, 0);
  pool.parallel_for(1001, 7, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) seen[size_t(i)]++;
  });
  EXPECT_EQ(std::accumulate(seen.begin(), seen.end(), 0), 1001);
  EXPECT_EQ(*std::min_element(seen.begin(), seen.end()), 1);
}

TEST(ThreadPool, NestedRunIsSerialNotDeadlocked) {
  ThreadPool pool(2);
  std::atomic<int> total{0};
  pool.run(4, [&](int64_t) { pool.run(5, [&](int64_t) { total++; }); });
  EXPECT_EQ(total.load(), 20);
}

TEST(ThreadPool, ManyShortJobsBackToBack) {
  ThreadPool pool(2);
  std::atomic<int64_t> sum{0};
  for (int rep = 0; rep < 2000; ++rep) pool.run(3, [&](int64_t i) { sum += i; });
  EXPECT_EQ(sum.load(), 2000 * 3);
}

TEST(Compute, OwnsItsPoolAndPrecision) {
  Compute a = Compute::make(3, Precision::kFast), b = Compute::make(1);
  EXPECT_EQ(a.num_threads(), 3);
  EXPECT_EQ(b.num_threads(), 1);
  EXPECT_EQ(a.precision, Precision::kFast);
  EXPECT_EQ(b.precision, Precision::kExact);
  EXPECT_NE(a.pool.get(), b.pool.get());
  EXPECT_EQ(Compute::make(0).num_threads() >= 1, true);
  EXPECT_STREQ(precision_name(parse_precision("fast")), "fast");
  EXPECT_THROW(parse_precision("f32"), Error);
}

}  // namespace
}  // namespace vlm

namespace vlm {
namespace {

TEST(ThreadPool, ConcurrentCallersFromOutsideThreadsAreSafe) {
  ThreadPool pool(2);
  std::atomic<int64_t> total{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 4; ++t)
    callers.emplace_back([&] {
      for (int rep = 0; rep < 200; ++rep) pool.run(7, [&](int64_t i) { total += i + 1; });
    });
  for (auto& c : callers) c.join();
  EXPECT_EQ(total.load(), 4 * 200 * 28);
}

}  // namespace
}  // namespace vlm
