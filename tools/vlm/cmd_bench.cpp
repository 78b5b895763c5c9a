// `vlm bench`: one end-to-end run with a synthetic prompt of N tokens (plus an optional image) and M
// greedy tokens generated without stopping at EOS; reports load time, prompt and decode speed, image
// encoding time and peak memory. With --batch B, B copies of the prompt decode in lockstep (one pass
// over the weights per step) and it reports aggregate and per-sequence decode speed; --follow-up N
// adds a second turn on the same session (prompt cache). Achieved rates come from the model's work
// counters: GFLOP/s of the image encoder and of the prompt, GB/s of weights read while decoding.
// --roof then measures the machine's roofs on the model's threads (kernels/roof.h) to set beside them.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <optional>

#include "common.h"
#include "core/thread_pool.h"
#include "kernels/roof.h"

namespace vlm::cli {

namespace {

// A text of exactly n tokens when encoded alone (" the" repeated, cut to n ids and decoded back).
std::string synthetic_text(const TextProcessor& tp, int64_t n) {
  if (n <= 0) return "";
  std::string text;
  for (int64_t i = 0; i < n; ++i) text += " the";
  std::vector<int32_t> ids = tp.encode(text, false);
  if (int64_t(ids.size()) > n) ids.resize(size_t(n));
  return tp.decode(ids, true);
}

}  // namespace

int run_bench(const std::vector<std::string>& argv) {
  Command cmd{"bench", "Time one end-to-end run: load, prompt (prefill), decode; report speed and memory.", "", {}};
  cmd.options = {
      {"model", true, false, "model directory or Hugging Face id", "DIR|ID"},
      {"image", true, false, "image included in the prompt", "PATH"},
      {"prompt-tokens", true, false, "synthetic text tokens in the prompt (default 128)", "N"},
      {"gen-tokens", true, false, "tokens generated greedily, EOS ignored (default 64)", "M"},
      {"batch", true, false, "sequences decoding together (default 1)", "B"},
      {"follow-up", true, false,
       "then a second turn of N more synthetic tokens on the same session (prompt cache): its time to first "
       "token and cached tokens",
       "N"},
      {"roof", false, false,
       "afterwards, measure this machine's compute and read-bandwidth roofs on the model's threads (about 1 s, "
       "512 MiB)"},
      {"json", false, false, "print JSON"},
  };
  for (auto& o : processing_options()) cmd.options.push_back(o);
  for (auto& o : runtime_options()) cmd.options.push_back(o);
  cmd.options.push_back(adapter_option());
  Args args = Args::parse(cmd, argv);
  if (int rc = help_requested(cmd, args); rc >= 0) return rc;
  std::string model = args.require("model");
  int64_t n_prompt = args.get_int("prompt-tokens", 0, 1 << 20).value_or(128);
  int64_t n_gen = args.get_int("gen-tokens", 1, 1 << 20).value_or(64);
  int64_t batch = args.get_int("batch", 1, 64).value_or(1);
  UserInput::Options opts = input_options(args);
  LoadOptions lo = load_options(args);

  ModelContext ctx = ModelContext::load(model, lo);
  std::vector<AdapterRef> adapters = load_adapters(ctx, args, lo);
  std::string text = synthetic_text(ctx.text(), n_prompt);
  std::vector<std::string> images;
  if (auto img = args.get("image")) images.push_back(*img);
  UserInput in = UserInput::from_prompt(text, images);
  in.options = opts;
  auto t0 = std::chrono::steady_clock::now();
  PreparedInput prepared = ctx.prepare(in);
  double prepare_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  GenerationParams p;
  p.max_tokens = int(n_gen);
  p.ignore_eos = true;
  p.sampling.temperature = 0;
  p.adapters = adapters;
  if (batch > 1 && args.get("follow-up")) throw UsageError("--follow-up and --batch cannot be combined");
  ChatSession session(ctx, opts);
  auto t_gen = std::chrono::steady_clock::now();
  std::vector<GenerationResult> results = batch == 1 ? std::vector<GenerationResult>{session.generate(prepared, p)}
                                                     : ctx.generate_batch(std::vector(size_t(batch), prepared), p);
  double total_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_gen).count();
  const GenerationResult& r = results.front();
  const GenerationStats& s = r.stats;
  // Aggregate decode: every sequence's decode tokens over the time all of them decoded together
  // (the first token of each comes from its prefill).
  double prefill_ms = 0, per_sequence_tps = 0;
  int64_t decode_tokens = 0;
  for (const GenerationResult& g : results) {
    prefill_ms += g.stats.prompt_ms;
    decode_tokens += g.stats.generated_tokens - 1;
    per_sequence_tps += g.stats.generation_tps / double(results.size());
  }
  double decode_wall_ms = total_ms - prefill_ms;
  double aggregate_tps = decode_wall_ms > 0 ? double(decode_tokens) / (decode_wall_ms / 1000.0) : 0;
  auto per_second = [](double amount, double ms) { return ms > 0 ? amount / (ms / 1000.0) : 0.0; };
  const double encode_gflops = per_second(s.image_encode_gflop, s.image_encode_ms);
  double prompt_gflop = 0;
  for (const GenerationResult& g : results) prompt_gflop += g.stats.prompt_gflop;
  const double prompt_gflops = per_second(prompt_gflop, prefill_ms);
  // Weights read per decode step, and at what rate: the memory roof's measure (batch: the batch's steps).
  const double decode_gbs = per_second(s.decode_weight_gb, batch == 1 ? s.generation_ms : decode_wall_ms);
  const double gb_per_step = s.generated_tokens > 1 ? s.decode_weight_gb / double(s.generated_tokens - 1) : 0;
  // A second turn: the first prompt, the answer and N more tokens, on the session's cache.
  std::optional<GenerationStats> follow;
  if (auto n_follow = args.get_int("follow-up", 1, 1 << 20)) {
    UserInput next = in;
    next.messages.push_back({"assistant", {UserInput::Part::text_part(r.text)}});
    next.messages.push_back({"user", {UserInput::Part::text_part(synthetic_text(ctx.text(), *n_follow))}});
    follow = session.generate(ctx.prepare(next), p).stats;
  }
  // After the run, so that neither its time nor its buffer touches the figures above.
  std::optional<MachineRoof> roof;
  if (args.flag("roof")) {
    ThreadPool pool(std::max(1, ctx.info().threads));
    roof = measure_machine_roof(pool);
  }

  if (args.flag("json")) {
    nlohmann::json j = {{"model", model},
                        {"model_type", ctx.info().model_type},
                        {"load_ms", ctx.info().load_ms},
                        {"preprocess_ms", prepare_ms},
                        {"prompt_tokens", s.prompt_tokens},
                        {"prompt_ms", s.prompt_ms},
                        {"prompt_tps", s.prompt_tps},
                        {"image_encode_ms", s.image_encode_ms},
                        {"generated_tokens", s.generated_tokens},
                        {"generation_ms", s.generation_ms},
                        {"decode_tps", s.generation_tps},
                        {"batch", batch},
                        {"decode_tps_per_sequence", per_sequence_tps},
                        {"decode_tps_aggregate", aggregate_tps},
                        {"peak_rss_bytes", s.peak_memory_bytes},
                        {"image_encode_gflop", s.image_encode_gflop},
                        {"image_encode_gflops", encode_gflops},
                        {"prompt_gflop", prompt_gflop},
                        {"prompt_gflops", prompt_gflops},
                        {"decode_weight_gb_per_step", gb_per_step},
                        {"decode_weight_gbs", decode_gbs},
                        {"adapters", args.all("adapter")},
                        {"cached_tokens", s.cached_tokens},
                        {"time_to_first_token_ms", s.time_to_first_token_ms}};
    if (follow)
      j["follow_up"] = {{"prompt_tokens", follow->prompt_tokens},
                        {"cached_tokens", follow->cached_tokens},
                        {"prompt_ms", follow->prompt_ms},
                        {"image_encode_ms", follow->image_encode_ms},
                        {"time_to_first_token_ms", follow->time_to_first_token_ms}};
    if (roof)
      j["roof"] = {{"threads", roof->threads},
                   {"f32_fma_gflops", roof->f32_gflops},
                   {"bf16_dot_gflops", roof->bf16_gflops},
                   {"int8_dot_gops", roof->int8_gops},
                   {"read_gbs", roof->read_gbs}};
    std::printf("%s\n", dump_json(j, 2).c_str());
    return 0;
  }
  std::printf("model:         %s (%s)\n", model.c_str(), ctx.info().model_type.c_str());
  std::printf("load:          %.1f ms\n", ctx.info().load_ms);
  std::printf("preprocess:    %.1f ms\n", prepare_ms);
  std::printf("prompt:        %lld tokens in %.1f ms, %.1f tokens/s, %.1f GFLOP at %.1f GFLOP/s\n",
              (long long)s.prompt_tokens, s.prompt_ms, s.prompt_tps, prompt_gflop, prompt_gflops);
  std::printf("image encode:  %.1f ms, %.1f GFLOP at %.1f GFLOP/s\n", s.image_encode_ms, s.image_encode_gflop,
              encode_gflops);
  std::printf("first token:   %.1f ms after the start (%lld prompt tokens cached)\n", s.time_to_first_token_ms,
              (long long)s.cached_tokens);
  if (batch == 1) {
    std::printf("decode:        %lld tokens, %.1f tokens/s\n", (long long)s.generated_tokens, s.generation_tps);
  } else {
    std::printf("decode:        %lld x %lld tokens, %.1f tokens/s per sequence, %.1f tokens/s aggregate\n",
                (long long)batch, (long long)s.generated_tokens, per_sequence_tps, aggregate_tps);
  }
  std::printf("weights read:  %.3f GB per decode step, %.1f GB/s\n", gb_per_step, decode_gbs);
  std::printf("peak RSS:      %s\n", human_bytes(s.peak_memory_bytes).c_str());
  if (follow)
    std::printf("follow-up:     %lld tokens (%lld cached), first token after %.1f ms (%.1f%% of the first turn's)\n",
                (long long)follow->prompt_tokens, (long long)follow->cached_tokens, follow->time_to_first_token_ms,
                100.0 * follow->time_to_first_token_ms / std::max(s.time_to_first_token_ms, 1e-9));
  if (roof) {
    auto rate = [](double v, const char* unit) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.1f %s", v, unit);
      return v > 0 ? std::string(buf) : std::string("-");
    };
    std::printf("roof:          f32 FMA %s, bf16 dot %s, int8 dot %s, read %s (%d threads)\n",
                rate(roof->f32_gflops, "GFLOP/s").c_str(), rate(roof->bf16_gflops, "GFLOP/s").c_str(),
                rate(roof->int8_gops, "GOP/s").c_str(), rate(roof->read_gbs, "GB/s").c_str(), roof->threads);
  }
  return 0;
}

}  // namespace vlm::cli
