// A fork-join thread pool for data-parallel kernels. Workers spin briefly for new work (decode
// steps arrive microseconds apart) and then sleep on a condition variable, so an idle or
// oversubscribed machine is not burned by busy-waiting.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace vlm {

class ThreadPool {
 public:
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return int(workers_.size()) + 1; }  // the caller participates

  // Runs fn(task_index) for task_index in [0, num_tasks); returns when all are done.
  // Tasks are handed out dynamically. Nested calls from inside a task run serially; calls from
  // several outside threads (e.g. server slots) take turns, one job at a time.
  void run(int64_t num_tasks, const std::function<void(int64_t)>& fn);

  // Splits [0, n) into chunks of at least `grain` items and calls fn(begin, end) on each (one call
  // over the whole range in a one-thread pool).
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

 private:
  void worker_loop();
  void drain();

  std::vector<std::thread> workers_;
  std::mutex job_mutex_;  // held by the outside thread whose job is running
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(int64_t)>* job_ = nullptr;
  int64_t num_tasks_ = 0;
  std::atomic<int64_t> next_{0};
  std::atomic<int64_t> finished_{0};
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> busy_workers_{0};  // changed under mutex_, read without it while spinning
  bool stop_ = false;
};

// Number of physical cores (hyper-threads not counted), at least 1.
int physical_core_count();

}  // namespace vlm
