#include "generate/generator.h"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <optional>
#include <sstream>

#include "core/error.h"
#include "generate/sampler.h"
#include "generate/stop.h"

namespace vlm {

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

TokenLogprob make_logprob(std::span<const float> logits, int32_t id, int top_n,
                          const std::function<std::string(int32_t)>& token_string) {
  std::vector<float> lp = log_softmax(logits);
  TokenLogprob out;
  out.id = id;
  out.logprob = (id >= 0 && size_t(id) < lp.size()) ? lp[id] : 0.0f;
  if (token_string) out.token = token_string(id);
  for (auto [alt, value] : top_k_entries(lp, top_n)) {
    TopLogprob t;
    t.id = alt;
    t.logprob = value;
    if (token_string) t.token = token_string(alt);
    out.top.push_back(std::move(t));
  }
  return out;
}

}  // namespace

int64_t read_peak_rss_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmHWM:", 0) == 0) {
      std::istringstream is(line.substr(6));
      int64_t kb = 0;
      is >> kb;
      return kb * 1024;
    }
  }
  return 0;
}

namespace {

// What happens to one sequence between two forward passes: sampling, logprobs, EOS, stop strings,
// streaming, and the context limit. Shared by the single and the batched loop, so a sequence in a
// batch gets exactly what it gets alone.
class TokenLoop {
 public:
  TokenLoop(const GenerationSetup& setup, TextStream& text, const ModelInput& input, const GenerationParams& params,
            const StreamCallback& on_text)
      : setup_(setup),
        text_(text),
        params_(params),
        on_text_(on_text),
        sampler_(params.sampling),
        stop_(params.stop),
        n_prompt_(int64_t(input.ids.size())),
        history_(input.ids.begin(), input.ids.end()) {
    eos_ = setup.eos_ids;
    eos_.insert(eos_.end(), params.extra_eos_ids.begin(), params.extra_eos_ids.end());
    result_.finish_reason = "length";
    result_.stats.prompt_tokens = n_prompt_;
  }

  // Samples the next token from `logits` and emits its text; returns the token to feed the model
  // next, or nothing when this sequence is finished.
  std::optional<int32_t> accept(std::span<const float> logits) {
    if (logits.empty()) fail("generate: the model returned no logits");
    const int i = int(result_.token_ids.size());
    int32_t token = sampler_.sample(logits, history_);
    if (params_.logprobs)
      result_.logprobs.push_back(make_logprob(logits, token, params_.top_logprobs, setup_.token_string));
    result_.token_ids.push_back(token);
    history_.push_back(token);
    if (i == 0) {
      t_first_ = Clock::now();
      result_.stats.time_to_first_token_ms = std::chrono::duration<double, std::milli>(t_first_ - t_start_).count();
    }

    bool eos_hit = !params_.ignore_eos && std::find(eos_.begin(), eos_.end(), token) != eos_.end();
    std::string piece = eos_hit ? text_.flush() : text_.push(token);
    StopStringMatcher::Output out = stop_.push(piece);
    if (eos_hit && !out.stopped) out.text += stop_.flush();
    result_.text += out.text;
    bool keep_going = true;
    if (on_text_ && (!out.text.empty() || !eos_hit)) keep_going = on_text_(out.text, token);
    if (eos_hit || out.stopped) {
      result_.finish_reason = "stop";
      return std::nullopt;
    }
    if (!keep_going) {
      result_.finish_reason = "cancelled";
      return std::nullopt;
    }
    if (i + 1 == params_.max_tokens) return std::nullopt;
    const int64_t context = setup_.model->info().context_length;
    if (context > 0 && n_prompt_ + i + 1 >= context) return std::nullopt;  // "length": context full
    return token;
  }

  GenerationResult finish(double prompt_ms, double image_encode_ms, int64_t cached_tokens, Clock::time_point t_gen) {
    const bool cancelled = result_.finish_reason == "cancelled";
    if (result_.finish_reason != "stop") {
      std::string tail = stop_.push(text_.flush()).text;
      if (!stop_.stopped())
        tail += stop_.flush();
      else
        result_.finish_reason = cancelled ? "cancelled" : "stop";
      result_.text += tail;
      if (on_text_ && !cancelled && !tail.empty()) on_text_(tail, -1);
    }
    auto& st = result_.stats;
    st.prompt_ms = prompt_ms;
    st.image_encode_ms = image_encode_ms;
    st.cached_tokens = cached_tokens;
    if (prompt_ms > 0) st.prompt_tps = double(n_prompt_ - cached_tokens) / (prompt_ms / 1000.0);
    st.generated_tokens = int64_t(result_.token_ids.size());
    st.generation_ms = ms_since(t_gen);
    // Decode speed counts the tokens that needed a forward step (the first comes from prefill).
    double decode_s = std::chrono::duration<double>(Clock::now() - t_first_).count();
    if (st.generated_tokens > 1 && decode_s > 0)
      st.generation_tps = double(st.generated_tokens - 1) / decode_s;
    else if (st.generation_ms > 0)
      st.generation_tps = double(st.generated_tokens) / (st.generation_ms / 1000.0);
    st.peak_memory_bytes = read_peak_rss_bytes();
    return std::move(result_);
  }

 private:
  const GenerationSetup& setup_;
  TextStream& text_;
  const GenerationParams& params_;
  const StreamCallback& on_text_;
  Sampler sampler_;
  StopStringMatcher stop_;
  const int64_t n_prompt_;
  std::vector<int32_t> history_;
  std::vector<int32_t> eos_;
  GenerationResult result_;
  const Clock::time_point t_start_ = Clock::now();  // before the prompt runs
  Clock::time_point t_first_ = t_start_;
};

// Checks what every generation needs; throws ContextOverflowError for a prompt beyond the context.
void validate(const GenerationSetup& setup, const ModelInput& input, const GenerationParams& params) {
  if (!setup.model) fail("generate: no model given");
  const ModelInfo& info = setup.model->info();
  const int64_t n_prompt = int64_t(input.ids.size());
  if (n_prompt == 0) fail("generate: the prompt is empty (no tokens)");
  if (info.context_length > 0 && n_prompt > info.context_length) {
    std::ostringstream msg;
    msg << "the prompt has " << n_prompt << " tokens, more than the model's context length of " << info.context_length
        << " (" << info.model_type
        << "); shorten the prompt or use fewer or smaller images (e.g. --resize / max_pixels)";
    throw ContextOverflowError(msg.str());
  }
  if (params.max_tokens < 0) fail("generate: max_tokens must be >= 0 (got ", params.max_tokens, ")");
}

std::unique_ptr<Sequence> start_sequence(const GenerationSetup& setup, const GenerationParams& params) {
  std::unique_ptr<Sequence> seq = setup.model->start(setup.env);
  seq->set_adapters(setup.adapters);
  if (params.max_kv_size > 0) seq->set_kv_window(params.max_kv_size, std::min(4, params.max_kv_size - 1));
  return seq;
}

// Runs the prompt, reusing the rows the sequence already holds for its longest matching prefix;
// `between_chunks` (may be empty) runs between its chunks.
std::vector<float> prefill(Sequence& seq, const ModelInput& input, const std::function<void()>& between_chunks,
                           int64_t* cached_tokens) {
  if (!between_chunks) return seq.prefill_reusing(input, cached_tokens);
  ModelInput chunked = input;  // tensors share their storage: a cheap copy
  chunked.between_chunks = between_chunks;
  return seq.prefill_reusing(chunked, cached_tokens);
}

// The work counters' differences over a generation's stages, in its stats.
void note_work(GenerationStats& st, int64_t vision_flops, const ComputeCounters::Snapshot& prefill_start,
               const ComputeCounters::Snapshot& prefill_end, const ComputeCounters::Snapshot& decode_start,
               const ComputeCounters::Snapshot& decode_end) {
  st.image_encode_gflop = double(vision_flops) * 1e-9;
  st.prompt_gflop = double(prefill_end.flops - prefill_start.flops) * 1e-9;
  st.decode_weight_gb = double(decode_end.weight_bytes - decode_start.weight_bytes) * 1e-9;
}

GenerationResult empty_result(const ModelInput& input) {
  GenerationResult r;
  r.finish_reason = "length";
  r.stats.prompt_tokens = int64_t(input.ids.size());
  r.stats.peak_memory_bytes = read_peak_rss_bytes();
  return r;
}

}  // namespace

GenerationResult generate_tokens(const GenerationSetup& setup, const ModelInput& input, const GenerationParams& params,
                                 const StreamCallback& on_text) {
  if (!setup.text) fail("generate: no detokenizer given");
  validate(setup, input, params);
  if (params.max_tokens == 0) return empty_result(input);

  TokenLoop loop(setup, *setup.text, input, params, on_text);
  std::unique_ptr<Sequence> fresh = setup.sequence ? nullptr : start_sequence(setup, params);
  Sequence* seq = setup.sequence ? setup.sequence : fresh.get();
  if (setup.sequence) {
    setup.sequence->set_adapters(setup.adapters);  // a different adapter set drops the cached rows
    if (params.max_kv_size > 0) seq->set_kv_window(params.max_kv_size, std::min(4, params.max_kv_size - 1));
  }
  auto t_prefill = Clock::now();
  const ComputeCounters::Snapshot work_start = setup.env.snapshot();
  int64_t cached_tokens = 0;
  std::vector<float> logits;
  if (StepBatcher* batcher = setup.batcher) {
    // The prompt holds the engine, letting the others' decode steps (and prompts) in between chunks.
    std::unique_lock<StepBatcher> engine(*batcher);
    logits = prefill(
        *seq, input,
        [&] {
          if (params.between_prefill_chunks) params.between_prefill_chunks();
          engine.unlock();
          engine.lock();
        },
        &cached_tokens);
  } else {
    logits = prefill(*seq, input, params.between_prefill_chunks, &cached_tokens);
  }
  const double prompt_ms = ms_since(t_prefill);
  const ComputeCounters::Snapshot work_prefilled = setup.env.snapshot();

  auto t_gen = Clock::now();
  if (StepBatcher* batcher = setup.batcher) {
    StepBatcher::Membership member(*batcher);
    while (std::optional<int32_t> next = loop.accept(logits)) logits = batcher->step(*seq, *next);
  } else {
    while (std::optional<int32_t> next = loop.accept(logits)) logits = seq->step(*next);
  }
  GenerationResult result = loop.finish(prompt_ms, seq->vision_ms(), cached_tokens, t_gen);
  note_work(result.stats, seq->vision_flops(), work_start, work_prefilled, work_prefilled, setup.env.snapshot());
  return result;
}

std::vector<GenerationResult> generate_batch_tokens(const GenerationSetup& setup,
                                                    std::span<const ModelInput* const> inputs,
                                                    std::span<TextStream* const> texts,
                                                    const GenerationParams& params) {
  if (inputs.size() != texts.size())
    fail("generate_batch: ", inputs.size(), " inputs but ", texts.size(), " detokenizers");
  for (size_t b = 0; b < inputs.size(); ++b) {
    if (!inputs[b] || !texts[b]) fail("generate_batch: input ", b, " has no prompt or detokenizer");
    validate(setup, *inputs[b], params);
  }
  std::vector<GenerationResult> results;
  if (params.max_tokens == 0) {
    for (const ModelInput* in : inputs) results.push_back(empty_result(*in));
    return results;
  }

  // Prompts run one at a time (their lengths differ); then all sequences decode in lockstep, one
  // pass over the weights per step, and leave the batch as they finish.
  const StreamCallback no_callback;
  std::vector<std::unique_ptr<TokenLoop>> loops;
  std::vector<std::unique_ptr<Sequence>> seqs;
  std::vector<std::vector<float>> logits;
  std::vector<double> prompt_ms;
  std::vector<ComputeCounters::Snapshot> work_start;
  for (size_t b = 0; b < inputs.size(); ++b) {
    work_start.push_back(setup.env.snapshot());
    loops.push_back(std::make_unique<TokenLoop>(setup, *texts[b], *inputs[b], params, no_callback));
    seqs.push_back(start_sequence(setup, params));
    auto t0 = Clock::now();
    logits.push_back(prefill(*seqs[b], *inputs[b], params.between_prefill_chunks, nullptr));
    prompt_ms.push_back(ms_since(t0));
  }

  auto t_gen = Clock::now();
  const ComputeCounters::Snapshot work_prefilled = setup.env.snapshot();
  std::vector<size_t> active(inputs.size());
  for (size_t b = 0; b < active.size(); ++b) active[b] = b;
  std::vector<std::optional<GenerationResult>> done(inputs.size());
  while (!active.empty()) {
    std::vector<Sequence*> batch;
    std::vector<int32_t> tokens;
    for (size_t b : active) {
      if (std::optional<int32_t> next = loops[b]->accept(logits[b])) {
        batch.push_back(seqs[b].get());
        tokens.push_back(*next);
      } else {
        done[b] = loops[b]->finish(prompt_ms[b], seqs[b]->vision_ms(), 0, t_gen);
      }
    }
    std::erase_if(active, [&](size_t b) { return done[b].has_value(); });
    if (batch.empty()) break;
    std::vector<std::vector<float>> out = setup.model->step_batch(batch, tokens);
    for (size_t k = 0; k < active.size(); ++k) logits[active[k]] = std::move(out[k]);
  }
  // Each sequence's own prefill; the decode steps are the batch's.
  const ComputeCounters::Snapshot work_end = setup.env.snapshot();
  for (size_t b = 0; b < inputs.size(); ++b) {
    GenerationResult& r = *done[b];
    const ComputeCounters::Snapshot prefill_end = b + 1 < inputs.size() ? work_start[b + 1] : work_prefilled;
    note_work(r.stats, seqs[b]->vision_flops(), work_start[b], prefill_end, work_prefilled, work_end);
    results.push_back(std::move(r));
  }
  return results;
}

}  // namespace vlm
