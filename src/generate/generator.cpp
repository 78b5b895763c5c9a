#include "generate/generator.h"

#include <algorithm>
#include <chrono>
#include <fstream>
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

GenerationResult generate_tokens(const GenerationSetup& setup, const ModelInput& input, const GenerationParams& params,
                                 const StreamCallback& on_text) {
  if (!setup.model || !setup.text) fail("generate: no model or detokenizer given");
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

  std::vector<int32_t> eos = setup.eos_ids;
  eos.insert(eos.end(), params.extra_eos_ids.begin(), params.extra_eos_ids.end());
  auto is_eos = [&](int32_t id) { return !params.ignore_eos && std::find(eos.begin(), eos.end(), id) != eos.end(); };

  auto t_prefill = Clock::now();
  GenerationResult result;
  result.finish_reason = "length";
  result.stats.prompt_tokens = n_prompt;
  if (params.max_tokens == 0) {
    result.stats.peak_memory_bytes = read_peak_rss_bytes();
    return result;
  }

  Sampler sampler(params.sampling);
  StopStringMatcher stop(params.stop);
  std::unique_ptr<Sequence> fresh = setup.sequence ? nullptr : setup.model->start(setup.env);
  Sequence* seq = setup.sequence ? setup.sequence : fresh.get();
  if (params.max_kv_size > 0) seq->set_kv_window(params.max_kv_size, std::min(4, params.max_kv_size - 1));

  std::vector<float> logits;
  if (params.between_prefill_chunks) {
    ModelInput chunked = input;  // tensors share their storage: a cheap copy
    chunked.between_chunks = params.between_prefill_chunks;
    logits = seq->prefill_reusing(chunked, &result.stats.cached_tokens);
  } else {
    logits = seq->prefill_reusing(input, &result.stats.cached_tokens);
  }
  result.stats.prompt_ms = ms_since(t_prefill);
  result.stats.image_encode_ms = seq->vision_ms();
  if (result.stats.prompt_ms > 0)
    result.stats.prompt_tps = double(n_prompt - result.stats.cached_tokens) / (result.stats.prompt_ms / 1000.0);

  std::vector<int32_t> history(input.ids.begin(), input.ids.end());
  auto t_gen = Clock::now();
  Clock::time_point t_first;
  bool cancelled = false;
  for (int i = 0; i < params.max_tokens; ++i) {
    if (logits.size() == 0) fail("generate: the model returned no logits");
    int32_t token = sampler.sample(logits, history);
    if (params.logprobs)
      result.logprobs.push_back(make_logprob(logits, token, params.top_logprobs, setup.token_string));
    result.token_ids.push_back(token);
    history.push_back(token);
    if (i == 0) {
      t_first = Clock::now();
      result.stats.time_to_first_token_ms = ms_since(t_prefill);
    }

    bool eos_hit = is_eos(token);
    std::string piece = eos_hit ? setup.text->flush() : setup.text->push(token);
    StopStringMatcher::Output out = stop.push(piece);
    if (eos_hit && !out.stopped) out.text += stop.flush();
    result.text += out.text;
    bool keep_going = true;
    if (on_text && (!out.text.empty() || !eos_hit)) keep_going = on_text(out.text, token);
    if (eos_hit || out.stopped) {
      result.finish_reason = "stop";
      break;
    }
    if (!keep_going) {
      result.finish_reason = "cancelled";
      cancelled = true;
      break;
    }
    if (i + 1 == params.max_tokens) break;
    if (info.context_length > 0 && n_prompt + i + 1 >= info.context_length) break;  // "length": context full
    logits = seq->step(token);
  }

  if (result.finish_reason != "stop") {
    std::string tail = stop.push(setup.text->flush()).text;
    if (!stop.stopped())
      tail += stop.flush();
    else
      result.finish_reason = cancelled ? "cancelled" : "stop";
    result.text += tail;
    if (on_text && !cancelled && !tail.empty()) on_text(tail, -1);
  }

  auto& st = result.stats;
  st.generated_tokens = int64_t(result.token_ids.size());
  st.generation_ms = ms_since(t_gen);
  // Decode speed counts the tokens that needed a forward step (the first comes from prefill).
  double decode_s = std::chrono::duration<double>(Clock::now() - t_first).count();
  if (st.generated_tokens > 1 && decode_s > 0)
    st.generation_tps = double(st.generated_tokens - 1) / decode_s;
  else if (st.generation_ms > 0)
    st.generation_tps = double(st.generated_tokens) / (st.generation_ms / 1000.0);
  st.peak_memory_bytes = read_peak_rss_bytes();
  return result;
}

}  // namespace vlm
