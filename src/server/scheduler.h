// Request admission: N slots share one loaded model. A request waits (FIFO) for a free slot; the
// slots' generations then share the compute engine through the PromptCache's step batcher (decode
// steps batched, prompt chunks interleaved with them in arrival order).
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>

namespace vlm::server {

struct SchedulerStats {
  int64_t active = 0;       // requests holding a slot
  int64_t queued = 0;       // requests waiting for one
  int64_t peak_active = 0;  // most slots busy at once since start
};

class Scheduler {
 public:
  Scheduler(int slots, int max_queue);

  // A held slot; releases it on destruction.
  class Lease {
   public:
    explicit Lease(Scheduler* s) : s_(s) {}
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease() { s_->release(); }

   private:
    Scheduler* s_;
  };

  // Waits for a free slot. Throws ApiError 503 when the queue is full or the server is shutting down;
  // returns null when `abandoned()` turns true while waiting (the client went away).
  std::unique_ptr<Lease> acquire(const std::function<bool()>& abandoned);

  // Refuses new requests from now on and wakes those waiting (they get 503).
  void shutdown();
  bool shutting_down() const { return shutting_down_.load(); }
  SchedulerStats stats() const;

 private:
  void release();

  const int slots_, max_queue_;
  mutable std::mutex mutex_;
  std::condition_variable slot_free_;
  int64_t active_ = 0, peak_active_ = 0;
  uint64_t next_wait_ticket_ = 0;
  std::deque<uint64_t> waiting_;  // tickets of the requests waiting for a slot, in arrival order
  std::atomic<bool> shutting_down_{false};
};

}  // namespace vlm::server
