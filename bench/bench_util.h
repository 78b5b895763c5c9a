// Helpers shared by the benchmark programs.
#pragma once
#include <time.h>

namespace vlm::bench {

// CPU time of the whole process: rates per CPU-second hold up on a shared, loaded machine where
// wall-clock rates do not.
inline double process_cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

}  // namespace vlm::bench
