// Server internals shared by server.cpp (HTTP plumbing, lifecycle) and chat_handler.cpp (completions).
#pragma once
#include <httplib.h>

#include <atomic>
#include <condition_variable>
#include <mutex>

#include "server/api_error.h"
#include "server/http_connections.h"
#include "server/metrics.h"
#include "server/scheduler.h"
#include "server/server.h"

namespace vlm::server {

struct ChatJob;  // one chat completion in flight (chat_handler.cpp)

struct Server::Impl {
  Impl(ModelContext m, ServerOptions o);

  ModelContext model;
  ServerOptions options;
  PromptCache prompt_cache;  // every generation goes through it (slots never share a cached sequence)
  int64_t ctx_size = 0;      // effective prompt + completion limit
  Scheduler scheduler;
  ReactorHttpServer http;
  // The most bytes of text one token stands for, over the vocabulary: text_bytes / this (with a margin for
  // normalizers) bounds a prompt's token count from below before tokenizing it.
  int64_t max_token_bytes = 1;
  int bound_port = -1;

  ServerMetrics metrics;
  std::atomic<int64_t> requests{0}, completed{0}, failed{0}, disconnected{0}, tokens_generated{0};
  std::atomic<bool> cancel_all{false};  // set when the shutdown grace period ran out
  std::atomic<bool> stopping{false};
  std::atomic<int> run_state{0};  // 0: run() not entered, 1: serving, 2: returned
  std::once_flag shutdown_once;

  void set_routes();
  void handle_chat(const httplib::Request& req, httplib::Response& res);
  void check_request_fits(const ChatRequest& request) const;
  // Checks the request's "lora" ids and adds the adapter its "model" names; returns the name reported.
  std::string select_adapters(ChatRequest& request) const;
  void stream_completion(ChatJob& job, httplib::DataSink& sink);
  void record_generation(const ChatJob& job, const GenerationResult& r);  // token counters and latency histograms
  void check_auth(const httplib::Request& req) const;
  void check_model(const std::string& name) const;
  void send_error(httplib::Response& res, const ApiError& e);
  void log(const httplib::Request& req, int status, const std::string& note) const;
  void set_method_answers();
};

}  // namespace vlm::server
