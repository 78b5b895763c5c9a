#include "common.h"

#include <cstdio>
#include <fstream>
#include <iostream>
#include <limits>
#include <sstream>

namespace vlm::cli {

using nlohmann::json;

std::vector<OptionSpec> sampling_options() {
  return {
      {"max-tokens", true, false, "maximum number of generated tokens (default: per model, else 256)", "N"},
      {"temperature", true, false, "sampling temperature; 0 = greedy (default: per model, else 0)", "T"},
      {"top-p", true, false, "nucleus sampling mass (default 1 = off)", "P"},
      {"top-k", true, false, "keep the K most likely tokens (default 0 = off)", "K"},
      {"min-p", true, false, "drop tokens below P x the top probability (default 0 = off)", "P"},
      {"repetition-penalty", true, false, "HF repetition penalty (default 1 = off)", "R"},
      {"repetition-context-size", true, false, "tokens the repetition penalty looks back on (default 20)", "N"},
      {"seed", true, false, "random seed for reproducible sampling", "S"},
      {"stop", true, true, "stop string (not included in the output)", "STR"},
      {"max-kv-size", true, false, "rotating KV cache of N tokens (keeps the first 4; default: unbounded)", "N"},
  };
}

std::vector<OptionSpec> runtime_options() {
  return {
      {"threads", true, false, "compute threads (default: physical cores, or VLM_THREADS)", "N"},
      {"precision", true, false,
       "fast (int8/bf16 activations, logits within NMSE 1e-3 of exact) or exact (float32, the oracle "
       "path); default: VLM_PRECISION, else fast",
       "P"},
      {"offline", false, false, "never download (same as HF_HUB_OFFLINE=1)"},
  };
}

std::vector<OptionSpec> processing_options() {
  return {
      {"resize", true, false, "resize images to W,H pixels before the processor", "W,H"},
      {"min-pixels", true, false, "Qwen2-VL: minimum pixels per image", "N"},
      {"max-pixels", true, false, "Qwen2-VL: maximum pixels per image", "N"},
      {"fps", true, false,
       "video frames per second: how a video file is sampled, and the rate of frame lists (default 2)", "F"},
      {"max-frames", true, false, "at most this many video frames", "N"},
      {"prefill-chunk", true, false, "prompt tokens per decoder pass (default 512)", "N"},
  };
}

ModelDefaults defaults_for(const std::string& model) {
  if (auto d = find_model_defaults(model)) return *d;
  // A hub snapshot path or a local copy is matched by its trailing "org/name" / "name" too.
  for (const auto& [id, d] : known_models()) {
    std::string name = id.substr(id.find('/') + 1);
    if (model.size() >= name.size() && model.compare(model.size() - name.size(), name.size(), name) == 0) return d;
  }
  return ModelDefaults{};
}

OptionSpec adapter_option() {
  return {"adapter", true, true, "LoRA adapter (MLX or PEFT) directory or hub id, optional :SCALE (default 1)",
          "DIR[:SCALE]"};
}

std::pair<std::string, float> parse_adapter_spec(const std::string& option, const std::string& text) {
  const size_t colon = text.rfind(':');
  if (colon != std::string::npos && colon > 0 && colon + 1 < text.size()) {
    const std::string tail = text.substr(colon + 1);
    if (tail.find_first_not_of("0123456789.eE+-") == std::string::npos)
      return {text.substr(0, colon), float(parse_double(option, tail, -1e6, 1e6))};
  }
  if (text.empty()) throw UsageError("option '--" + option + "': empty adapter path");
  return {text, 1.0f};
}

std::vector<AdapterRef> load_adapters(ModelContext& ctx, const Args& args, const LoadOptions& options) {
  std::vector<AdapterRef> out;
  for (const std::string& spec : args.all("adapter")) {
    auto [dir, scale] = parse_adapter_spec("adapter", spec);
    out.push_back({ctx.load_adapter(dir, dir, options), scale});
  }
  return out;
}

void print_adapters(const ModelContext& ctx) {
  for (const AdapterSummary& a : ctx.adapters()) {
    std::printf("adapter %d:     %s (%s, %zu modules)\n", a.id, a.name.c_str(), a.format.c_str(), a.modules.size());
    for (const AdapterModuleSummary& m : a.modules)
      std::printf("  layer %-3d %-18s %5lld -> %-5lld rank %-3lld scale %g\n", m.layer, m.module.c_str(),
                  (long long)m.in_features, (long long)m.out_features, (long long)m.rank, double(m.scale));
  }
}

GenerationParams generation_params(const Args& args, const ModelDefaults& defaults) {
  GenerationParams p;
  p.max_tokens = int(args.get_int("max-tokens", 0, 1 << 24).value_or(defaults.max_tokens));
  p.sampling.temperature = float(args.get_double("temperature", 0, 100).value_or(defaults.temperature));
  p.sampling.top_p = float(args.get_double("top-p", 0, 1).value_or(1.0));
  p.sampling.top_k = int(args.get_int("top-k", 0, std::numeric_limits<int32_t>::max()).value_or(0));
  p.sampling.min_p = float(args.get_double("min-p", 0, 1).value_or(0.0));
  p.sampling.repetition_penalty = float(args.get_double("repetition-penalty", 1e-6, 100).value_or(1.0));
  p.sampling.repetition_context_size = int(args.get_int("repetition-context-size", 0, 1 << 24).value_or(20));
  if (auto s = args.get_int("seed", 0, std::numeric_limits<int64_t>::max())) p.sampling.seed = uint64_t(*s);
  p.max_kv_size = int(args.get_int("max-kv-size", 8, 1 << 24).value_or(0));
  p.stop = args.all("stop");
  for (const auto& s : p.stop)
    if (s.empty()) throw UsageError("option '--stop': empty stop string");
  return p;
}

LoadOptions load_options(const Args& args) {
  LoadOptions o;
  o.offline = args.flag("offline");
  if (auto t = args.get_int("threads", 1, 1024)) o.threads = int(*t);
  if (auto p = args.get("precision")) {
    if (*p != "exact" && *p != "fast")
      throw UsageError("option '--precision': expected exact or fast, got '" + *p + "'");
    o.precision = *p;
  }
  return o;
}

UserInput::Options input_options(const Args& args) {
  UserInput::Options o;
  if (auto r = args.get("resize")) {
    size_t sep = r->find_first_of(",x");
    if (sep == std::string::npos) throw UsageError("option '--resize': expected W,H (e.g. 448,448)");
    o.resize_width = int(parse_int("resize", r->substr(0, sep), 1, 16384));
    o.resize_height = int(parse_int("resize", r->substr(sep + 1), 1, 16384));
  }
  o.min_pixels = args.get_int("min-pixels", 1, int64_t(1) << 40).value_or(0);
  o.max_pixels = args.get_int("max-pixels", 1, int64_t(1) << 40).value_or(0);
  if (o.min_pixels > 0 && o.max_pixels > 0 && o.min_pixels > o.max_pixels)
    throw UsageError("--min-pixels is larger than --max-pixels");
  o.fps = args.get_double("fps", 1e-3, 1000).value_or(2.0);
  o.max_frames = int(args.get_int("max-frames", 1, 100000).value_or(0));
  o.prefill_chunk = int(args.get_int("prefill-chunk", 1, 1 << 20).value_or(o.prefill_chunk));
  return o;
}

int help_requested(const Command& cmd, const Args& args) {
  if (!args.help()) return -1;
  std::cout << cmd.usage();
  return 0;
}

std::string read_text_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path);
  std::ostringstream os;
  os << f.rdbuf();
  return os.str();
}

std::string text_or_file(const std::string& value) {
  if (value.size() > 1 && value[0] == '@') return read_text_file(value.substr(1));
  return value;
}

json stats_json(const GenerationStats& s) {
  return {{"prompt_tokens", s.prompt_tokens},     {"prompt_ms", s.prompt_ms},
          {"prompt_tps", s.prompt_tps},           {"generated_tokens", s.generated_tokens},
          {"generation_ms", s.generation_ms},     {"generation_tps", s.generation_tps},
          {"image_encode_ms", s.image_encode_ms}, {"peak_memory_bytes", s.peak_memory_bytes},
          {"cached_tokens", s.cached_tokens},     {"time_to_first_token_ms", s.time_to_first_token_ms}};
}

json result_json(const GenerationResult& r, bool with_logprobs) {
  json j = {
      {"text", r.text}, {"token_ids", r.token_ids}, {"finish_reason", r.finish_reason}, {"stats", stats_json(r.stats)}};
  if (with_logprobs) {
    json lps = json::array();
    for (const auto& lp : r.logprobs) {
      json top = json::array();
      for (const auto& t : lp.top) top.push_back({{"id", t.id}, {"token", t.token}, {"logprob", t.logprob}});
      lps.push_back({{"id", lp.id}, {"token", lp.token}, {"logprob", lp.logprob}, {"top_logprobs", top}});
    }
    j["logprobs"] = lps;
  }
  return j;
}

std::string dump_json(const json& j, int indent) {
  return j.dump(indent, ' ', false, json::error_handler_t::replace);
}

std::string human_bytes(int64_t bytes) {
  char buf[64];
  double b = double(bytes);
  if (b >= 1024.0 * 1024 * 1024)
    std::snprintf(buf, sizeof buf, "%.2f GiB", b / (1024.0 * 1024 * 1024));
  else if (b >= 1024.0 * 1024)
    std::snprintf(buf, sizeof buf, "%.1f MiB", b / (1024.0 * 1024));
  else if (b >= 1024.0)
    std::snprintf(buf, sizeof buf, "%.1f KiB", b / 1024.0);
  else
    std::snprintf(buf, sizeof buf, "%lld B", (long long)bytes);
  return buf;
}

void print_stats(const GenerationStats& s) {
  std::fprintf(stderr, "prompt: %lld tokens (%lld cached), %.1f tokens/s\n", (long long)s.prompt_tokens,
               (long long)s.cached_tokens, s.prompt_tps);
  std::fprintf(stderr, "time to first token: %.1f ms\n", s.time_to_first_token_ms);
  std::fprintf(stderr, "generation: %lld tokens, %.1f tokens/s\n", (long long)s.generated_tokens, s.generation_tps);
  if (s.image_encode_ms > 0) std::fprintf(stderr, "image encode: %.1f ms\n", s.image_encode_ms);
  std::fprintf(stderr, "peak memory: %s\n", human_bytes(s.peak_memory_bytes).c_str());
}

}  // namespace vlm::cli
