// What the public handles of vlm.hpp hold, shared by the api sources.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/compute.h"
#include "generate/step_batcher.h"
#include "io/checkpoint.h"
#include "media/image.h"
#include "models/feature_cache.h"
#include "models/model.h"
#include "text/tokenizer.h"
#include "vlm/vlm.hpp"

namespace vlm {

struct TextProcessor::Impl {
  std::string dir;
  Tokenizer tokenizer;
};

struct PreparedInput::Impl {
  ModelInput input;
};

struct ModelContext::Impl {
  std::string dir;
  std::shared_ptr<Checkpoint> checkpoint;  // weights may be borrowed from its mappings
  TextProcessor text;
  std::unique_ptr<Model> model;
  std::unique_ptr<Processor> processor;
  ModelInfoSummary info;
  Compute env;                                                   // this model's threads and precision
  std::vector<std::shared_ptr<const nn::LoraAdapter>> adapters;  // by id
  std::vector<AdapterSummary> adapter_info;
  std::shared_ptr<FeatureCache> features;  // vision-feature cache of all its generations (null: off)
};

// An adapter directory, or a Hugging Face id resolved (downloaded) through the hub cache.
std::string resolve_adapter_dir(const std::string& id_or_dir, const LoadOptions& options);

// Generation on `model`, on `sequence` when given (prompt cache), else on a fresh sequence; decode
// steps batched with the other generations on `batcher` when given.
GenerationResult generate_on(const ModelContext::Impl& model, const ModelInput& input, const GenerationParams& params,
                             const StreamCallback& on_text, Sequence* sequence, StepBatcher* batcher = nullptr);

// UserInput -> the processor's messages: images decoded, videos decoded and sampled.
std::vector<ChatMessage> to_chat_messages(const UserInput& input);
ProcessingOptions to_processing_options(const UserInput::Options& options);
Image decode_image_source(const ImageSource& src);

// EOS ids of a model directory: the model's own list, config.json, generation_config.json and the
// tokenizer's eos token, in that order, without duplicates.
std::vector<int32_t> collect_eos_ids(const std::string& dir, const ModelInfo& info, const Tokenizer& tokenizer);

}  // namespace vlm
