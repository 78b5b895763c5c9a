// Loading helpers every family uses: probing where a checkpoint layout keeps a module, counting
// parameters, and resolving EOS ids from the model directory.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/checkpoint.h"

namespace vlm {

// The first of `prefixes` under which "<prefix><probe>" exists, or "" when none does.
std::string find_prefix(const Checkpoint& ckpt, const std::vector<std::string>& prefixes, const std::string& probe);
// The same, but a missing module is an error naming `what` and every name tried.
std::string require_prefix(const Checkpoint& ckpt, const std::vector<std::string>& prefixes, const std::string& probe,
                           const std::string& what);

// Logical parameter count: packed quantized words count as the values they hold; quantization
// scales/biases and non-parameter buffers (position_ids, inv_freq) do not count.
int64_t count_parameters(const Checkpoint& ckpt);

// EOS ids: `value` (an id or a list of ids, as config.json's eos_token_id) followed by those of
// generation_config.json in the model directory, without duplicates.
std::vector<int32_t> resolve_eos_ids(const Checkpoint& ckpt, const json& value);

// Gemma's embedding scale sqrt(hidden) as transformers applies it: a tensor of the activation
// dtype, so the factor is rounded to bf16/f16 when the embedding `module` (or its MLX scales) is
// stored so (sqrt(2048) -> 45.25, not 45.2548).
float gemma_embed_scale(const Checkpoint& ckpt, const std::string& module, int64_t hidden);

}  // namespace vlm
