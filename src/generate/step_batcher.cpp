#include "generate/step_batcher.h"

#include <algorithm>

namespace vlm {

StepBatcher::StepBatcher(const Model& model, std::chrono::microseconds gather) : model_(model), gather_(gather) {}

void StepBatcher::lock() {
  std::unique_lock<std::mutex> lock(engine_mutex_);
  const uint64_t ticket = next_ticket_++;
  engine_turn_.wait(lock, [&] { return now_serving_ == ticket; });
}

void StepBatcher::unlock() {
  std::lock_guard<std::mutex> lock(engine_mutex_);
  ++now_serving_;
  engine_turn_.notify_all();
}

void StepBatcher::join() {
  std::lock_guard<std::mutex> lock(mutex_);
  ++members_;
}

void StepBatcher::leave() {
  std::lock_guard<std::mutex> lock(mutex_);
  --members_;
  changed_.notify_all();  // a gathering step no longer waits for this one
}

int64_t StepBatcher::members() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return members_;
}

DecodeBatchStats StepBatcher::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

std::vector<float> StepBatcher::step(Sequence& seq, int32_t token) {
  Request request{&seq, token, {}, nullptr};
  std::unique_lock<std::mutex> lock(mutex_);
  pending_.push_back(&request);
  changed_.notify_all();
  while (!request.done) {
    if (leading_) {
      changed_.wait(lock);
      continue;
    }
    // Lead the next batch: it holds every step submitted until all members are in or the gathering
    // time is up, whichever comes first.
    leading_ = true;
    changed_.wait_for(lock, gather_, [&] { return int64_t(pending_.size()) >= members_; });
    std::vector<Request*> batch;
    batch.swap(pending_);
    lock.unlock();
    run(batch);
    lock.lock();
    for (Request* r : batch) r->done = true;
    ++stats_.steps;
    stats_.sequence_steps += int64_t(batch.size());
    stats_.largest = std::max(stats_.largest, int64_t(batch.size()));
    leading_ = false;
    changed_.notify_all();
  }
  if (request.error) std::rethrow_exception(request.error);
  return std::move(request.logits);
}

void StepBatcher::run(std::vector<Request*>& batch) {
  std::vector<Sequence*> sequences;
  std::vector<int32_t> tokens;
  for (const Request* r : batch) {
    sequences.push_back(r->sequence);
    tokens.push_back(r->token);
  }
  std::lock_guard<StepBatcher> engine(*this);
  try {
    std::vector<std::vector<float>> logits = model_.step_batch(sequences, tokens);
    for (size_t i = 0; i < batch.size(); ++i) batch[i]->logits = std::move(logits[i]);
  } catch (...) {
    for (Request* r : batch) r->error = std::current_exception();
  }
}

}  // namespace vlm
