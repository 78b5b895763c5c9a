// Pieces shared by the `vlm` subcommands: option groups, parameter building, output formatting.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "args.h"
#include "vlm/vlm.hpp"

namespace vlm::cli {

// Subcommand entry points: argv holds the arguments after the subcommand name; they return the exit status.
int run_generate(const std::vector<std::string>& argv);
int run_chat(const std::vector<std::string>& argv);
int run_list(const std::vector<std::string>& argv);
int run_info(const std::vector<std::string>& argv);
int run_download(const std::vector<std::string>& argv);
int run_tokenize(const std::vector<std::string>& argv);
int run_chat_template(const std::vector<std::string>& argv);
int run_bench(const std::vector<std::string>& argv);
int run_batch(const std::vector<std::string>& argv);
int run_lora(const std::vector<std::string>& argv);

// --max-tokens, --temperature, --top-p, --top-k, --min-p, --repetition-penalty, ... --seed, --stop.
std::vector<OptionSpec> sampling_options();
// --threads, --precision, --offline.
std::vector<OptionSpec> runtime_options();
// --resize, --min-pixels, --max-pixels, --fps.
std::vector<OptionSpec> processing_options();

// --adapter DIR[:SCALE] (repeatable): LoRA adapters.
OptionSpec adapter_option();
// "DIR[:SCALE]" -> directory (or hub id) and scale (1 when absent).
std::pair<std::string, float> parse_adapter_spec(const std::string& option, const std::string& text);
// Loads every --adapter into `ctx` and returns them for GenerationParams::adapters.
std::vector<AdapterRef> load_adapters(ModelContext& ctx, const Args& args, const LoadOptions& options);
void print_adapters(const ModelContext& ctx);  // targets, ranks and scales, one block per adapter

GenerationParams generation_params(const Args& args, const ModelDefaults& defaults);
LoadOptions load_options(const Args& args);
UserInput::Options input_options(const Args& args);
// Defaults registered for `model` (an id), or the generic ones.
ModelDefaults defaults_for(const std::string& model);

// Prints usage and returns 0 when --help was given; returns -1 otherwise.
int help_requested(const Command& cmd, const Args& args);

std::string read_text_file(const std::string& path);  // throws vlm-style errors naming the file
// "TEXT" as is, "@path" read from the file.
std::string text_or_file(const std::string& value);

nlohmann::json stats_json(const GenerationStats& stats);
nlohmann::json result_json(const GenerationResult& result, bool with_logprobs);
std::string dump_json(const nlohmann::json& j, int indent = -1);  // invalid UTF-8 replaced
void print_stats(const GenerationStats& stats);                   // one human-readable block on stderr
std::string human_bytes(int64_t bytes);

}  // namespace vlm::cli
