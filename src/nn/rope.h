// Rotary position embedding tables (cos/sin rows of head_dim floats, "rotate half" layout:
// angles for the first half are repeated in the second half). Apply with kernels' apply_rope.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

namespace vlm::nn {

// inv_freq[j] = 1 / theta^(2j / dim), j < dim/2.
std::vector<float> rope_inv_freq(int dim, double theta);

struct RopeTables {
  std::vector<float> cos, sin;  // [rows, head_dim]
};

// Standard 1-D RoPE for the given positions.
RopeTables rope_tables(const std::vector<int64_t>& positions, const std::vector<float>& inv_freq);

// Qwen2-VL multimodal RoPE: positions[a][t] for axes a = T, H, W. The head dimension is cut into
// chunks sized mrope_section repeated twice (one per half); chunk k takes axis k mod 3.
RopeTables mrope_tables(const std::array<std::vector<int64_t>, 3>& positions, const std::vector<float>& inv_freq,
                        const std::vector<int>& mrope_section);

}  // namespace vlm::nn
