#include "server/metrics.h"

#include <charconv>

namespace vlm::server {

namespace {

// The shortest text that reads back as the same double (bucket labels "0.1", not "0.10000000000000001").
std::string number(double x) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, x);
  return ec == std::errc() ? std::string(buf, end) : std::string("NaN");
}

void header(std::string& out, const std::string& name, const std::string& help, const char* type) {
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

void single(std::string& out, const std::string& name, const std::string& help, const char* type, double value) {
  header(out, name, help, type);
  out += name + " " + number(value) + "\n";
}

}  // namespace

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
  size_t bucket = 0;
  while (bucket < bounds_.size() && value > bounds_[bucket]) ++bucket;
  std::lock_guard<std::mutex> lock(mutex_);
  ++counts_[bucket];
  sum_ += value;
  ++count_;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& help) const {
  header(out, name, help, "histogram");
  std::lock_guard<std::mutex> lock(mutex_);
  int64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    out += name + "_bucket{le=\"" + number(bounds_[i]) + "\"} " + std::to_string(cumulative) + "\n";
  }
  out += name + "_bucket{le=\"+Inf\"} " + std::to_string(count_) + "\n";
  out += name + "_sum " + number(sum_) + "\n";
  out += name + "_count " + std::to_string(count_) + "\n";
}

// Buckets as vLLM's: time to first token spans queueing and prefill (ms to minutes), time per output token
// one decode step (ms to a second).
ServerMetrics::ServerMetrics()
    : ttft_({0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80}),
      tpot_({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5}) {}

void ServerMetrics::count_request(int status) {
  std::lock_guard<std::mutex> lock(status_mutex_);
  ++requests_by_status_[status];
}

void ServerMetrics::count_tokens(int64_t prompt, int64_t generated) {
  prompt_tokens_ += prompt;
  generation_tokens_ += generated;
}

std::string ServerMetrics::render(const GaugeValues& gauges) const {
  std::string out;
  header(out, "vlm_requests_total", "Chat completion requests answered, by HTTP status (499: client went away).",
         "counter");
  {
    std::lock_guard<std::mutex> lock(status_mutex_);
    // 200 is always present, so that rate() has a series to start from before the first request.
    if (requests_by_status_.empty()) out += "vlm_requests_total{status=\"200\"} 0\n";
    for (const auto& [status, count] : requests_by_status_)
      out += "vlm_requests_total{status=\"" + std::to_string(status) + "\"} " + std::to_string(count) + "\n";
  }
  single(out, "vlm_prompt_tokens_total", "Prompt tokens processed.", "counter", double(prompt_tokens_.load()));
  single(out, "vlm_generation_tokens_total", "Tokens generated (cancelled generations included).", "counter",
         double(generation_tokens_.load()));
  ttft_.render(out, "vlm_time_to_first_token_seconds",
               "Time from a request's arrival to its first generated token (queueing and prefill included).");
  tpot_.render(out, "vlm_time_per_output_token_seconds", "Decode time per generated token after the first.");
  single(out, "vlm_queue_depth", "Requests waiting for a generation slot.", "gauge", double(gauges.queue_depth));
  single(out, "vlm_active_slots", "Generation slots busy.", "gauge", double(gauges.active_slots));
  single(out, "vlm_slots_total", "Generation slots (--parallel).", "gauge", double(gauges.slots_total));
  single(out, "vlm_model_load_seconds", "Time the model took to load.", "gauge", gauges.model_load_seconds);
  single(out, "vlm_prompt_cache_bytes", "KV cache memory held by the prompt cache (at most --cache-mb).", "gauge",
         double(gauges.prompt_cache_bytes));
  single(out, "vlm_decode_batches_total", "Batched decode passes over the weights (continuous batching).", "counter",
         double(gauges.decode_batches));
  single(out, "vlm_decode_batch_tokens_total",
         "Tokens produced by the batched decode passes (divided by vlm_decode_batches_total: mean batch size).",
         "counter", double(gauges.decode_batch_tokens));
  single(out, "vlm_decode_batch_size_max", "The largest decode batch so far.", "gauge",
         double(gauges.largest_decode_batch));
  return out;
}

}  // namespace vlm::server
