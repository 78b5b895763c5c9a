// The Prometheus text the server exposes: histogram buckets cumulative and closed by +Inf, counters by
// status, HELP/TYPE before every family.
#include <gtest/gtest.h>

#include "server/metrics.h"

namespace vlm::server {
namespace {

TEST(ServerMetrics, HistogramBucketsAreCumulative) {
  Histogram h({0.1, 1});
  h.observe(0.05);
  h.observe(0.1);  // on a bound: counted in it (le = "less or equal")
  h.observe(0.5);
  h.observe(3);
  std::string out;
  h.render(out, "x_seconds", "help text");
  EXPECT_NE(out.find("# HELP x_seconds help text\n# TYPE x_seconds histogram\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_seconds_bucket{le=\"0.1\"} 2\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_seconds_bucket{le=\"1\"} 3\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_seconds_bucket{le=\"+Inf\"} 4\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_seconds_sum 3.65\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_seconds_count 4\n"), std::string::npos) << out;
}

TEST(ServerMetrics, CountersByStatusAndGauges) {
  ServerMetrics m;
  EXPECT_NE(m.render({}).find("vlm_requests_total{status=\"200\"} 0\n"), std::string::npos);
  m.count_request(200);
  m.count_request(200);
  m.count_request(400);
  m.count_tokens(30, 7);
  std::string out = m.render({3, 2, 4, 1.5});
  EXPECT_NE(out.find("# TYPE vlm_requests_total counter\n"), std::string::npos) << out;
  EXPECT_NE(out.find("vlm_requests_total{status=\"200\"} 2\n"), std::string::npos) << out;
  EXPECT_NE(out.find("vlm_requests_total{status=\"400\"} 1\n"), std::string::npos) << out;
  EXPECT_NE(out.find("vlm_prompt_tokens_total 30\n"), std::string::npos) << out;
  EXPECT_NE(out.find("vlm_generation_tokens_total 7\n"), std::string::npos) << out;
  EXPECT_NE(out.find("vlm_queue_depth 3\n"), std::string::npos) << out;
  EXPECT_NE(out.find("vlm_active_slots 2\n"), std::string::npos) << out;
  EXPECT_NE(out.find("vlm_model_load_seconds 1.5\n"), std::string::npos) << out;
  // Every sample line belongs to a family announced by a TYPE line before it.
  std::string family;
  size_t start = 0;
  while (start < out.size()) {
    size_t end = out.find('\n', start);
    std::string line = out.substr(start, end - start);
    start = end + 1;
    if (line.rfind("# TYPE ", 0) == 0) {
      family = line.substr(7, line.find(' ', 7) - 7);
    } else if (line[0] != '#') {
      EXPECT_EQ(line.rfind(family, 0), 0u) << line;
    }
  }
}

}  // namespace
}  // namespace vlm::server
