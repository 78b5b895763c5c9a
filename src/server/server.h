// The OpenAI-compatible HTTP server behind `vlm serve`: POST /v1/chat/completions (JSON or server-sent
// events), GET /v1/models, GET /health, over one loaded model shared by N generation slots.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "server/chat_request.h"
#include "server/media_source.h"
#include "vlm/vlm.hpp"

namespace vlm::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;          // 0: any free port (see Server::port())
  std::string api_key;      // "": no authentication
  std::string cors_origin;  // "": no CORS headers
  int parallel = 1;         // generation slots
  int max_queue = 64;       // requests waiting for a slot before 503
  int64_t max_body_bytes = 64 << 20;
  // A request's head and body must arrive within this long of its first byte (else 408), and a response
  // write that makes no progress for this long drops the connection (--timeout).
  double request_timeout_s = 30;
  double keep_alive_idle_s = 5;  // idle kept-alive connections are closed after this (at most request_timeout_s)
  int max_connections = 512;     // open at once; slow clients beyond it are dropped first
  int64_t ctx_size = 0;          // prompt + completion token limit; 0: the model's context length
  double shutdown_grace_s = 30;  // in-flight generations get this long to finish, then are cancelled
  bool log_requests = false;     // one line per request on stderr
  // Prompt cache: KV caches of finished requests kept for requests that share their prefix (--cache-mb).
  int64_t cache_bytes = int64_t(512) << 20;
  std::vector<std::string> model_names;  // accepted as "model"; the first is the one reported
  // LoRA adapters served by name (--adapter NAME=DIR): "model": NAME selects one; the ids are the
  // ModelContext's adapter ids, which llama.cpp-style "lora": [{"id", "scale"}] entries name.
  std::vector<std::pair<std::string, int>> adapters;
  MediaLimits media;
  RequestDefaults defaults;
};

struct ServerCounters {
  int64_t requests = 0;          // chat completion requests received
  int64_t completed = 0;         // answered successfully
  int64_t failed = 0;            // answered with an error status
  int64_t disconnected = 0;      // client went away; its generation (or its wait) was stopped
  int64_t tokens_generated = 0;  // over all generations, cancelled ones included
  int64_t active = 0, queued = 0, peak_active = 0;
  int64_t open_connections = 0;
};

class Server {
 public:
  Server(ModelContext model, ServerOptions options);
  ~Server();  // shuts down if still running
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the listening socket; returns the port (throws when it cannot bind).
  int bind();
  int port() const;
  // Serves until shutdown() (binds first if needed).
  void run();
  // Graceful: refuses new requests, lets in-flight ones finish within the grace period (then cancels
  // them cleanly), and stops listening. Safe from any thread, idempotent.
  void shutdown();

  ServerCounters counters() const;
  const ServerOptions& options() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace vlm::server
