// Prometheus metrics of the server (GET /metrics, text exposition format 0.0.4): request counts by status,
// token counts, latency histograms. Counters are atomics or mutex-guarded; scraping never blocks a generation.
#pragma once
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace vlm::server {

// A cumulative histogram with fixed upper bounds (seconds), rendered with _bucket/_sum/_count series.
class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double value);
  // Appends the HELP/TYPE header and the series of `name`.
  void render(std::string& out, const std::string& name, const std::string& help) const;

 private:
  std::vector<double> bounds_;
  mutable std::mutex mutex_;
  std::vector<int64_t> counts_;  // per bucket, not cumulative; the last one is +Inf
  double sum_ = 0;
  int64_t count_ = 0;
};

struct GaugeValues {
  int64_t queue_depth = 0, active_slots = 0, slots_total = 0;
  double model_load_seconds = 0;
  int64_t prompt_cache_bytes = 0;  // KV cache memory the prompt cache holds (at most --cache-mb)
  // Continuous batching: batched decode passes, the tokens they produced, the largest batch.
  int64_t decode_batches = 0, decode_batch_tokens = 0, largest_decode_batch = 0;
};

class ServerMetrics {
 public:
  ServerMetrics();
  // One answered chat completion request, by HTTP status (499: the client went away).
  void count_request(int status);
  void count_tokens(int64_t prompt, int64_t generated);
  void observe_time_to_first_token(double seconds) { ttft_.observe(seconds); }
  void observe_time_per_output_token(double seconds) { tpot_.observe(seconds); }
  std::string render(const GaugeValues& gauges) const;

 private:
  mutable std::mutex status_mutex_;
  std::map<int, int64_t> requests_by_status_;
  std::atomic<int64_t> prompt_tokens_{0}, generation_tokens_{0};
  Histogram ttft_, tpot_;
};

}  // namespace vlm::server
