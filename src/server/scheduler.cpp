#include "server/scheduler.h"

#include <algorithm>
#include <chrono>

#include "server/api_error.h"

namespace vlm::server {

Scheduler::Scheduler(int slots, int max_queue) : slots_(std::max(1, slots)), max_queue_(std::max(0, max_queue)) {}

std::unique_ptr<Scheduler::Lease> Scheduler::acquire(const std::function<bool()>& abandoned) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (shutting_down_) throw ApiError(503, "The server is shutting down.", "", "server_shutting_down");
  if (active_ >= slots_ && int64_t(waiting_.size()) >= max_queue_)
    throw ApiError(503, "The server is overloaded: the request queue is full; retry later.", "", "queue_full");
  uint64_t ticket = next_wait_ticket_++;
  waiting_.push_back(ticket);
  auto leave = [&] {
    waiting_.erase(std::find(waiting_.begin(), waiting_.end(), ticket));
    slot_free_.notify_all();
  };
  while (!(waiting_.front() == ticket && active_ < slots_)) {
    if (shutting_down_) {
      leave();
      throw ApiError(503, "The server is shutting down.", "", "server_shutting_down");
    }
    // Poll the client while waiting: a request abandoned in the queue must not take a slot later.
    slot_free_.wait_for(lock, std::chrono::milliseconds(50));
    if (abandoned && abandoned()) {
      leave();
      return nullptr;
    }
  }
  waiting_.pop_front();
  ++active_;
  peak_active_ = std::max(peak_active_, active_);
  slot_free_.notify_all();
  return std::make_unique<Lease>(this);
}

void Scheduler::release() {
  std::lock_guard<std::mutex> lock(mutex_);
  --active_;
  slot_free_.notify_all();
}

void Scheduler::shutdown() {
  shutting_down_ = true;
  std::lock_guard<std::mutex> lock(mutex_);
  slot_free_.notify_all();
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return {active_, int64_t(waiting_.size()), peak_active_};
}

}  // namespace vlm::server
