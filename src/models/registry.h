// Factories keyed by config.json "model_type" and by processor class, extensible at run time.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "models/model.h"
#include "text/tokenizer.h"

namespace vlm {

using ModelFactory = std::function<std::unique_ptr<Model>(const Checkpoint& checkpoint)>;
using ProcessorFactory =
    std::function<std::unique_ptr<Processor>(const std::string& model_dir, const Tokenizer&, const json& config)>;

// `extra_eos_tokens`: token strings that also end generation for this model type (as MLXVLM's
// extraEOSTokens), resolved through the tokenizer.
void register_model_type(const std::string& model_type, ModelFactory factory,
                         std::vector<std::string> extra_eos_tokens = {});
std::vector<std::string> extra_eos_tokens(const std::string& model_type);
void register_processor_class(const std::string& processor_class, ProcessorFactory factory);
std::vector<std::string> registered_model_types();

std::unique_ptr<Model> create_model(const Checkpoint& checkpoint);  // error names unknown model_type
// processor_class from preprocessor_config.json / processor_config.json, else the model type's default.
std::unique_ptr<Processor> create_processor(const std::string& model_dir, const Tokenizer& tokenizer,
                                            const json& config);

}  // namespace vlm
