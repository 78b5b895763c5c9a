// The generation loop: prefill, then sample / stream / step until EOS, a stop string, max_tokens,
// the context limit or the caller's callback ends it.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/error.h"
#include "generate/step_batcher.h"
#include "models/model.h"
#include "vlm/vlm.hpp"

namespace vlm {

// The prompt does not fit the model's context (callers map it to a distinct status).
class ContextOverflowError : public Error {
 public:
  using Error::Error;
};

// Incremental detokenization (StreamingDetokenizer in production; a fake in tests).
class TextStream {
 public:
  virtual ~TextStream() = default;
  virtual std::string push(int32_t id) = 0;  // newly completed text
  virtual std::string flush() = 0;           // whatever is still held back
};

struct GenerationSetup {
  const Model* model = nullptr;
  Compute env;  // where the model computes
  TextStream* text = nullptr;
  std::vector<int32_t> eos_ids;                      // the model's EOS ids (params add more)
  std::function<std::string(int32_t)> token_string;  // vocabulary string, for logprobs (may be empty)
  nn::LoraSet adapters;                              // LoRA adapters of this generation
  // Prompt cache: generate on this sequence (of `model`), reusing the longest cached prefix of the
  // prompt; it keeps the prompt and the generated tokens for the next call. Null: a fresh sequence.
  Sequence* sequence = nullptr;
  // Continuous batching with the other generations on this batcher (other threads): the prompt runs
  // holding its engine, yielding it between chunks, and each decode step joins their batched step.
  // Null: the generation computes alone.
  StepBatcher* batcher = nullptr;
};

// Throws vlm::Error when the prompt is empty or longer than the model's context.
GenerationResult generate_tokens(const GenerationSetup& setup, const ModelInput& input, const GenerationParams& params,
                                 const StreamCallback& on_text = nullptr);

// Generates for several prompts at once: each is prefilled alone, then all decode in lockstep
// (`Model::step_batch`, one pass over the weights per step). Each result is what
// `generate_tokens` gives for that prompt alone (same params; no streaming callback).
std::vector<GenerationResult> generate_batch_tokens(const GenerationSetup& setup,
                                                    std::span<const ModelInput* const> inputs,
                                                    std::span<TextStream* const> texts, const GenerationParams& params);

// Peak resident set size (VmHWM) in bytes, 0 when /proc is unavailable.
int64_t read_peak_rss_bytes();

}  // namespace vlm
