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

json usage_json(int64_t prompt_tokens, int64_t completion_tokens) {
  return {{"prompt_tokens", prompt_tokens},
          {"completion_tokens", completion_tokens},
          {"total_tokens", prompt_tokens + completion_tokens}};
}

std::string openai_finish_reason(const std::string& reason) {
  return reason == "length" ? "length" : "stop";
}

namespace {

json token_entry(int32_t id, float logprob, const TextProcessor& text) {
  std::string s = text.decode({id});
  json bytes = json::array();
  for (unsigned char c : s) bytes.push_back(int(c));
  return {{"token", s}, {"logprob", logprob}, {"bytes", bytes}};
}

}  // namespace

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
  return {{"id", meta.id},
          {"object", "chat.completion"},
          {"created", meta.created},
          {"model", meta.model},
          {"system_fingerprint", "vlm.cpp"},
          {"choices", json::array({choice})},
          {"usage", usage_json(result.stats.prompt_tokens, int64_t(result.token_ids.size()))}};
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
