// The AVX-512 attention compiled a second time with its bf16 instructions emulated in AVX512F
// (attention_avx512_emulated_bf16, for tests): the fast path's packing, tiling and softmax then
// run on CPUs without AVX512-BF16 too.
#define VLM_ATTENTION_EMULATE_BF16 1
#include "kernels/attention_avx512.cpp"  // NOLINT(bugprone-suspicious-include)
