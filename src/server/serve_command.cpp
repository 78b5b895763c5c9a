#include "server/serve_command.h"

#include <httplib.h>
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <exception>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>

#include "server/api_error.h"
#include "server/server.h"

namespace vlm::server {

namespace {

const char* kUsage =
    "usage: vlm serve --model ID|DIR [options]\n"
    "\n"
    "OpenAI-compatible HTTP server: POST /v1/chat/completions, GET /v1/models, GET /health (liveness),\n"
    "GET /ready (readiness: 503 while loading and draining), GET /metrics (Prometheus).\n"
    "\n"
    "  --model ID|DIR            model directory or Hugging Face id (required)\n"
    "  --host ADDR               address to listen on (default 127.0.0.1)\n"
    "  --port N                  port (default 8080; 0 picks a free one)\n"
    "  --api-key KEY             require 'Authorization: Bearer KEY' (also env VLM_API_KEY)\n"
    "  --parallel N              generation slots sharing the weights (default 1)\n"
    "  --queue N                 requests waiting for a slot before 503 (default 64)\n"
    "  --cors ORIGIN             send CORS headers for ORIGIN ('*' for any); off by default\n"
    "  --allow-local-media DIR   accept local image paths / file:// URLs inside DIR only\n"
    "  --no-remote-media         refuse http(s) image URLs\n"
    "  --allow-private-media-hosts  let image URLs reach loopback, private, link-local and metadata\n"
    "                            addresses (refused by default)\n"
    "  --max-images N            images per request (default 8)\n"
    "  --max-image-mb MB         encoded size of one image (default 20)\n"
    "  --max-image-pixels N      decoded width*height of one image (default 16777216)\n"
    "  --max-request-pixels N    decoded width*height of all images of a request (default 33554432)\n"
    "  --max-body-mb MB          request body limit (default 64)\n"
    "  --fetch-timeout S         time limit to fetch an image URL (default 10)\n"
    "  --timeout S               a request must arrive within S seconds, a stalled response write\n"
    "                            is dropped after S (default 30; idle keep-alive: min(5, S))\n"
    "  --max-connections N       open connections (default 512; slow clients are dropped first)\n"
    "  --ctx-size N              prompt + completion token limit (default: the model's context)\n"
    "  --max-tokens N            completion length when a request gives none (default 512)\n"
    "  --temperature T           temperature when a request gives none (default 0 = greedy)\n"
    "  --prefill-chunk N         prompt tokens per engine turn: other streams decode between a new\n"
    "                            prompt's chunks (default 128)\n"
    "  --alias NAME              name reported by /v1/models and accepted as \"model\" (repeatable)\n"
    "  --adapter NAME=DIR        LoRA adapter (MLX or PEFT dir or hub id) served as model NAME (repeatable)\n"
    "  --cache-mb MB             prompt cache: KV caches of finished requests kept for requests\n"
    "                            that share their prefix (default 512; 0: off)\n"
    "  --shutdown-timeout S      grace period for in-flight requests on SIGINT/SIGTERM (default 30)\n"
    "  --threads N               compute threads (default: physical cores)\n"
    "  --precision P             fast (int8/bf16 activations) or exact (float32); default:\n"
    "                            VLM_PRECISION, else fast\n"
    "  --offline                 never download the model\n"
    "  --log                     one line per request on stderr\n";

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string shortest(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", x);
  return buf;
}

double number(const std::string& opt, const std::string& v, double lo, double hi) {
  size_t used = 0;
  double x = 0;
  try {
    x = std::stod(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != v.size() || v.empty() || !(x >= lo && x <= hi))
    throw UsageError("--" + opt + ": expected a number in [" + shortest(lo) + ", " + shortest(hi) + "], got '" + v +
                     "'");
  return x;
}

int64_t integer(const std::string& opt, const std::string& v, int64_t lo, int64_t hi) {
  double x = number(opt, v, double(lo), double(hi));
  if (x != double(int64_t(x))) throw UsageError("--" + opt + ": expected an integer, got '" + v + "'");
  return int64_t(x);
}

struct Parsed {
  std::string model;
  std::vector<std::pair<std::string, std::string>> adapters;  // NAME, DIR
  ServerOptions server;
  LoadOptions load;
};

Parsed parse(int argc, char** argv) {
  static const std::map<std::string, bool> kOptions = {{"model", true},
                                                       {"host", true},
                                                       {"port", true},
                                                       {"api-key", true},
                                                       {"parallel", true},
                                                       {"cache-mb", true},
                                                       {"queue", true},
                                                       {"cors", true},
                                                       {"allow-local-media", true},
                                                       {"no-remote-media", false},
                                                       {"allow-private-media-hosts", false},
                                                       {"max-request-pixels", true},
                                                       {"timeout", true},
                                                       {"max-connections", true},
                                                       {"max-images", true},
                                                       {"max-image-mb", true},
                                                       {"max-image-pixels", true},
                                                       {"max-body-mb", true},
                                                       {"fetch-timeout", true},
                                                       {"ctx-size", true},
                                                       {"max-tokens", true},
                                                       {"temperature", true},
                                                       {"prefill-chunk", true},
                                                       {"alias", true},
                                                       {"adapter", true},
                                                       {"shutdown-timeout", true},
                                                       {"threads", true},
                                                       {"precision", true},
                                                       {"offline", false},
                                                       {"log", false}};
  Parsed p;
  ServerOptions& s = p.server;
  if (const char* key = std::getenv("VLM_API_KEY")) s.api_key = key;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") throw std::logic_error("help");
    if (a.rfind("--", 0) != 0) throw UsageError("unexpected argument '" + a + "'");
    std::string name = a.substr(2), value;
    size_t eq = name.find('=');
    bool inline_value = eq != std::string::npos;
    if (inline_value) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    auto it = kOptions.find(name);
    if (it == kOptions.end()) throw UsageError("unknown option --" + name);
    if (it->second && !inline_value) {
      if (i + 1 >= argc) throw UsageError("--" + name + " needs a value");
      value = argv[++i];
    } else if (!it->second && inline_value) {
      throw UsageError("--" + name + " takes no value");
    }
    if (name == "model")
      p.model = value;
    else if (name == "host")
      s.host = value;
    else if (name == "port")
      s.port = int(integer(name, value, 0, 65535));
    else if (name == "api-key")
      s.api_key = value;
    else if (name == "parallel")
      s.parallel = int(integer(name, value, 1, 256));
    else if (name == "queue")
      s.max_queue = int(integer(name, value, 0, 4096));
    else if (name == "cors")
      s.cors_origin = value;
    else if (name == "allow-local-media")
      s.media.local_media_dir = value;
    else if (name == "no-remote-media")
      s.media.allow_remote = false;
    else if (name == "allow-private-media-hosts")
      s.media.allow_private_hosts = true;
    else if (name == "max-request-pixels")
      s.media.max_request_pixels = integer(name, value, 1, int64_t(1) << 36);
    else if (name == "timeout")
      s.request_timeout_s = number(name, value, 0.1, 86400);
    else if (name == "max-connections")
      s.max_connections = int(integer(name, value, 1, 1 << 20));
    else if (name == "max-images")
      s.media.max_images = int(integer(name, value, 0, 1024));
    else if (name == "max-image-mb")
      s.media.max_image_bytes = int64_t(number(name, value, 0.001, 4096) * (1 << 20));
    else if (name == "max-image-pixels")
      s.media.max_image_pixels = integer(name, value, 1, int64_t(1) << 34);
    else if (name == "max-body-mb")
      s.max_body_bytes = int64_t(number(name, value, 0.001, 16384) * (1 << 20));
    else if (name == "fetch-timeout")
      s.media.fetch_timeout_s = number(name, value, 0.1, 3600);
    else if (name == "ctx-size")
      s.ctx_size = integer(name, value, 1, int64_t(1) << 40);
    else if (name == "max-tokens")
      s.defaults.max_tokens = int(integer(name, value, 1, 1 << 30));
    else if (name == "temperature")
      s.defaults.temperature = float(number(name, value, 0, 2));
    else if (name == "prefill-chunk")
      s.defaults.prefill_chunk = int(integer(name, value, 1, 1 << 20));
    else if (name == "alias")
      s.model_names.push_back(value);
    else if (name == "adapter") {
      const size_t at = value.find('=');
      if (at == std::string::npos || at == 0 || at + 1 == value.size())
        throw UsageError("--adapter expects NAME=DIR, got '" + value + "'");
      p.adapters.emplace_back(value.substr(0, at), value.substr(at + 1));
    } else if (name == "cache-mb")
      s.cache_bytes = int64_t(number(name, value, 0, 1 << 20) * (1 << 20));
    else if (name == "shutdown-timeout")
      s.shutdown_grace_s = number(name, value, 0, 86400);
    else if (name == "threads")
      p.load.threads = int(integer(name, value, 1, 1024));
    else if (name == "precision") {
      if (value != "exact" && value != "fast")
        throw UsageError("option '--precision': expected exact or fast, got '" + value + "'");
      p.load.precision = value;
    } else if (name == "offline")
      p.load.offline = true;
    else if (name == "log")
      s.log_requests = true;
  }
  if (p.model.empty()) throw UsageError("--model is required");
  // Clients name the model as it was given (a hub id, a directory) unless aliases say otherwise.
  if (s.model_names.empty()) s.model_names.push_back(p.model);
  return p;
}

std::atomic<Server*> g_server{nullptr};
std::atomic<bool> g_done{false};

// Signals are taken synchronously on one thread (sigtimedwait) so the shutdown may lock and join freely.
// The graceful shutdown runs on a thread of its own: this loop must stay free to see a second signal,
// which exits at once.
void signal_loop(sigset_t set) {
  int received = 0;
  std::thread drain;
  while (!g_done) {
    timespec tick{0, 200 * 1000 * 1000};
    int sig = sigtimedwait(&set, nullptr, &tick);
    if (sig <= 0) continue;
    if (++received > 1) {
      std::fprintf(stderr, "vlm serve: second signal, exiting now\n");
      std::_Exit(128 + sig);
    }
    Server* s = g_server.load();
    if (!s) std::_Exit(128 + sig);  // still loading the model: nothing to drain
    std::fprintf(stderr, "vlm serve: shutting down (in-flight requests get %.0f s)...\n",
                 s->options().shutdown_grace_s);
    drain = std::thread([s] { s->shutdown(); });
  }
  if (drain.joinable()) drain.join();
}

// Answers on the port while the model loads, so that probes see "alive, not ready" instead of a refused
// connection: /health 200, /ready and everything else 503. Binding failures are left to the real server,
// which explains them.
class LoadingResponder {
 public:
  LoadingResponder(const std::string& host, int& port) {
    http_.Get("/health", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(R"({"status":"loading"})", "application/json");
    });
    http_.set_error_handler([](const httplib::Request&, httplib::Response& res) {
      res.status = 503;
      res.set_content(ApiError(503, "The model is still loading.", "", "model_loading").to_json().dump(),
                      "application/json");
    });
    http_.Get("/ready", [](const httplib::Request&, httplib::Response& res) { res.status = 503; });
    int bound = port == 0 ? http_.bind_to_any_port(host) : (http_.bind_to_port(host, port) ? port : -1);
    if (bound <= 0) return;
    port = bound;  // the real server takes over this port (a free one picked here included)
    thread_ = std::thread([this] {
      http_.listen_after_bind();
      returned_ = true;
    });
  }
  ~LoadingResponder() { stop(); }
  // Closes the port; the real server binds it again right after (httplib sets SO_REUSEADDR).
  void stop() {
    if (!thread_.joinable()) return;
    // httplib ignores stop() until its accept loop runs, hence the retry.
    while (!returned_) {
      http_.stop();
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    thread_.join();
  }

 private:
  httplib::Server http_;
  std::thread thread_;
  std::atomic<bool> returned_{false};
};

}  // namespace

int serve_command(int argc, char** argv) {
  Parsed p;
  try {
    p = parse(argc, argv);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "vlm serve: error: %s\n\n%s", e.what(), kUsage);
    return 2;
  } catch (const std::logic_error&) {
    std::fputs(kUsage, stdout);
    return 0;
  }

  // Blocked before any thread starts, so every thread inherits the mask and only signal_loop sees them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
  std::thread signals(signal_loop, set);

  int status = 0;
  try {
    std::fprintf(stderr, "vlm serve: loading %s...\n", p.model.c_str());
    LoadingResponder loading(p.server.host, p.server.port);
    ModelContext model = ModelContext::load(p.model, p.load);
    for (const auto& [name, dir] : p.adapters)
      p.server.adapters.emplace_back(name, model.load_adapter(dir, name, p.load));
    Server server(model, p.server);
    loading.stop();
    int port = server.bind();
    std::fprintf(stderr, "vlm serve: %s (%s, context %lld) on http://%s:%d/v1 with %d slot(s)\n",
                 p.server.model_names[0].c_str(), model.info().model_type.c_str(),
                 static_cast<long long>(model.info().context_length), p.server.host.c_str(), port, p.server.parallel);
    std::fflush(stderr);
    g_server = &server;
    server.run();
    g_server = nullptr;
    std::fprintf(stderr, "vlm serve: stopped\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vlm: error: %s\n", e.what());
    status = 1;
  }
  g_done = true;
  signals.join();
  return status;
}

}  // namespace vlm::server
