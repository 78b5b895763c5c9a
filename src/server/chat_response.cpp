#include "server/chat_response.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <random>

namespace vlm::server {

CompletionMeta new_completion_meta(const std::string& model) {
  static std::atomic<uint64_t> counter{0};
  static const uint64_t salt = [] {
    std::random_device rd;
    return uint64_t(rd()) << 32 | rd();
  }();
  CompletionMeta m;
  char buf[48];
  std::snprintf(buf, sizeof buf, "chatcmpl-%016llx%06llx", static_cast<unsigned long long>(salt),
                static_cast<unsigned long long>(counter.fetch_add(1)));
  m.id = buf;
  m.created =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  m.model = model;
  return m;
}

json usage_json(int64_t prompt_tokens, int64_t completion_tokens, int64_t cached_tokens) {
  return {{"prompt_tokens", prompt_tokens},
          {"completion_tokens", completion_tokens},
          {"total_tokens", prompt_tokens + completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", cached_tokens}}}};
}

std::string openai_finish_reason(const std::string& reason) {
  return reason == "length" ? "length" : "stop";
}

namespace {

// The text of one token. Many checkpoints pad the model's vocabulary beyond the tokenizer's (for
// alignment); the padding ids have no token and read as "" rather than failing the response.
std::string token_text(int32_t id, const TextProcessor& text) {
  try {
    return text.decode({id});
  } catch (const std::exception&) {
    return "";
  }
}

json token_entry(int32_t id, float logprob, const TextProcessor& text) {
  std::string s = token_text(id, text);
  json bytes = json::array();
  for (unsigned char c : s) bytes.push_back(int(c));
  return {{"token", s}, {"logprob", logprob}, {"bytes", bytes}};
}

}  // namespace

std::vector<TokenLogprob> content_logprobs(const GenerationResult& result, const TextProcessor& text) {
  // The text of the first n tokens grows with n, so the tokens that start inside the content are found
  // by bisection: the smallest n whose text covers the content. Decoding a prefix uses the same rules as
  // the generation's detokenizer (special tokens kept, unknown ids dropped).
  const auto& lps = result.logprobs;
  auto prefix_len = [&](size_t n) {
    std::vector<int32_t> ids;
    for (size_t i = 0; i < n; ++i) ids.push_back(lps[i].id);
    try {
      return text.decode(ids, true).size();
    } catch (const std::exception&) {  // padding ids outside the tokenizer: decode without them
      std::vector<int32_t> known;
      for (int32_t id : ids)
        if (!token_text(id, text).empty()) known.push_back(id);
      return text.decode(known, true).size();
    }
  };
  size_t lo = 0, hi = lps.size();  // the answer n lies in [lo, hi]
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (prefix_len(mid) >= result.text.size())
      hi = mid;
    else
      lo = mid + 1;
  }
  return std::vector<TokenLogprob>(lps.begin(), lps.begin() + std::ptrdiff_t(lo));
}

json logprobs_json(const std::vector<TokenLogprob>& logprobs, const TextProcessor& text) {
  json content = json::array();
  for (const auto& lp : logprobs) {
    json e = token_entry(lp.id, lp.logprob, text);
    json top = json::array();
    for (const auto& t : lp.top) top.push_back(token_entry(t.id, t.logprob, text));
    e["top_logprobs"] = top;
    content.push_back(e);
  }
  return {{"content", content}};
}

json completion_json(const CompletionMeta& meta, const GenerationResult& result, const json& logprobs) {
  json choice = {{"index", 0},
                 {"message", {{"role", "assistant"}, {"content", result.text}}},
                 {"logprobs", logprobs},
                 {"finish_reason", openai_finish_reason(result.finish_reason)}};
  return {
      {"id", meta.id},
      {"object", "chat.completion"},
      {"created", meta.created},
      {"model", meta.model},
      {"system_fingerprint", "vlm.cpp"},
      {"choices", json::array({choice})},
      {"usage", usage_json(result.stats.prompt_tokens, int64_t(result.token_ids.size()), result.stats.cached_tokens)}};
}

json chunk_json(const CompletionMeta& meta, const json& delta, const std::string& finish_reason, bool include_usage_key,
                const json& logprobs) {
  json choice = {{"index", 0},
                 {"delta", delta},
                 {"logprobs", logprobs},
                 {"finish_reason", finish_reason.empty() ? json(nullptr) : json(finish_reason)}};
  json j = {{"id", meta.id},       {"object", "chat.completion.chunk"}, {"created", meta.created},
            {"model", meta.model}, {"system_fingerprint", "vlm.cpp"},   {"choices", json::array({choice})}};
  if (include_usage_key) j["usage"] = nullptr;
  return j;
}

json usage_chunk_json(const CompletionMeta& meta, const json& usage) {
  return {{"id", meta.id},       {"object", "chat.completion.chunk"}, {"created", meta.created},
          {"model", meta.model}, {"system_fingerprint", "vlm.cpp"},   {"choices", json::array()},
          {"usage", usage}};
}

std::string dump_json(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string sse_event(const json& j) {
  return "data: " + dump_json(j) + "\n\n";
}

}  // namespace vlm::server
