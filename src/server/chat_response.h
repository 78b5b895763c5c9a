// OpenAI chat.completion / chat.completion.chunk JSON bodies and server-sent-event framing.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "io/json_file.h"
#include "vlm/vlm.hpp"

namespace vlm::server {

struct CompletionMeta {
  std::string id;  // "chatcmpl-..."
  int64_t created = 0;
  std::string model;
};

CompletionMeta new_completion_meta(const std::string& model);

// OpenAI's usage object; prompt_tokens_details.cached_tokens: prompt tokens taken from the prompt cache.
json usage_json(int64_t prompt_tokens, int64_t completion_tokens, int64_t cached_tokens = 0);
// OpenAI's finish_reason for ours ("stop", "length"; a cancelled generation never reaches a client).
std::string openai_finish_reason(const std::string& reason);
// The log-probabilities of the tokens that make up the returned content, as OpenAI reports them: not the
// end-of-sequence token, nor the tokens that completed a stop string (which is cut from the content).
std::vector<TokenLogprob> content_logprobs(const GenerationResult& result, const TextProcessor& text);
// {"content": [{token, logprob, bytes, top_logprobs}]}: tokens as the text they decode to ("" for ids the
// tokenizer does not have).
json logprobs_json(const std::vector<TokenLogprob>& logprobs, const TextProcessor& text);

json completion_json(const CompletionMeta& meta, const GenerationResult& result, const json& logprobs);
// One streamed chunk; `delta` {"role"/"content"}, finish_reason null unless given, "usage": null when
// the client asked for usage (OpenAI sends the key on every chunk then).
json chunk_json(const CompletionMeta& meta, const json& delta, const std::string& finish_reason, bool include_usage_key,
                const json& logprobs = nullptr);
json usage_chunk_json(const CompletionMeta& meta, const json& usage);

// "data: <json>\n\n" (invalid UTF-8 from a partial or random model replaced, never an exception).
std::string sse_event(const json& j);
std::string dump_json(const json& j);

}  // namespace vlm::server
