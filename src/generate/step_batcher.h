// Continuous batching for generations that run on threads of their own (a server's slots): each
// decode step waits briefly for the steps of the other generations in their decode phase, and all
// of them run as one Model::step_batch, one pass over the weights. Generations join and leave at any
// step. Model::step_batch gives each sequence the logits its own step() would, so batching never
// changes a generation's tokens.
//
// The batcher is also the lock on the compute engine: work that must run alone (a prompt chunk, an
// image encode) holds it, and the batched steps take it in the same first-come, first-served order,
// so a long prompt's chunks interleave with the others' decode steps instead of stalling them.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <vector>

#include "models/model.h"
#include "vlm/vlm.hpp"  // DecodeBatchStats

namespace vlm {

class StepBatcher {
 public:
  // `gather`: how long a step waits for members that have not submitted theirs yet (one busy writing
  // to a slow client, say) before the others go without it.
  explicit StepBatcher(const Model& model, std::chrono::microseconds gather = std::chrono::milliseconds(5));
  StepBatcher(const StepBatcher&) = delete;
  StepBatcher& operator=(const StepBatcher&) = delete;

  // The compute engine (BasicLockable, FIFO): held for work that runs alone.
  void lock();
  void unlock();

  // A generation in its decode phase, from its first step to its last: every step waits (up to
  // `gather`) until each member has submitted one.
  class Membership {
   public:
    explicit Membership(StepBatcher& b) : b_(b) { b_.join(); }
    Membership(const Membership&) = delete;
    Membership& operator=(const Membership&) = delete;
    ~Membership() { b_.leave(); }

   private:
    StepBatcher& b_;
  };

  // Appends `token` to `seq` (a sequence of this batcher's model) together with the steps the other
  // members submit meanwhile; returns seq's logits. Rethrows a failure of the batched pass.
  std::vector<float> step(Sequence& seq, int32_t token);

  int64_t members() const;
  DecodeBatchStats stats() const;

 private:
  struct Request {
    Sequence* sequence;
    int32_t token;
    std::vector<float> logits;
    std::exception_ptr error;
    bool done = false;
  };
  void join();
  void leave();
  void run(std::vector<Request*>& batch);

  const Model& model_;
  const std::chrono::microseconds gather_;

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<Request*> pending_;
  int64_t members_ = 0;
  bool leading_ = false;  // a thread is gathering or running a batch
  DecodeBatchStats stats_;

  std::mutex engine_mutex_;
  std::condition_variable engine_turn_;
  uint64_t next_ticket_ = 0, now_serving_ = 0;
};

}  // namespace vlm
