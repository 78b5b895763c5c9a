// The machine's compute and memory roofs as this process sees them: what the speed figures of
// `vlm bench --roof` and bench_matmul are compared with. On a shared or virtual machine the roof
// moves with the neighbours' load, so measure it in the same run as the figure it judges.
#pragma once
#include <cstdint>

#include "core/thread_pool.h"

namespace vlm {

enum class RoofOp {
  kF32Fma,   // vfmadd231ps zmm: 32 operations (16 lanes, multiply and add)
  kBf16Dot,  // vdpbf16ps zmm: 64 (two bf16 products and their sum per f32 lane)
  kInt8Dot,  // vpdpbusd zmm: 128 (four u8 x s8 products and their sum per i32 lane)
};

// AVX-512 F, and for the dot products AVX512_BF16 / AVX512_VNNI.
bool roof_op_supported(RoofOp op);

// Every thread of pool runs `iterations` steps of 16 independent chains of op held in registers
// (one dependent chain per register: fewer chains than latency x ports would measure latency, and
// accumulators in memory measure the load/store path). Returns the operations done, 0 when the
// CPU lacks op.
double run_roof_chains(ThreadPool& pool, RoofOp op, int64_t iterations);

// Sum of n floats at p, split contiguously over the pool's threads (512-bit loads where the CPU
// has AVX-512): with n·4 bytes far beyond the last-level cache, the read-bandwidth roof.
double sum_floats_parallel(ThreadPool& pool, const float* p, int64_t n);

struct MachineRoof {
  int threads = 0;
  double f32_gflops = 0;   // 0: not measurable here (no AVX-512)
  double bf16_gflops = 0;  // 0: the CPU lacks AVX512_BF16
  double int8_gops = 0;    // 0: the CPU lacks AVX512_VNNI
  double read_gbs = 0;
};

// Best of three short runs of each on pool's threads: about a second, with a 512 MiB buffer
// allocated while it runs.
MachineRoof measure_machine_roof(ThreadPool& pool);

}  // namespace vlm
