#include "server/server.h"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <regex>
#include <thread>

#include "server/chat_response.h"
#include "server/server_impl.h"

namespace vlm::server {

namespace {

bool constant_time_equal(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) diff |= uint8_t(a[i]) ^ uint8_t(i < b.size() ? b[i] : 0);
  return diff == 0;
}

httplib::Headers cors_headers(const ServerOptions& o) {
  if (o.cors_origin.empty()) return {};
  return {{"Access-Control-Allow-Origin", o.cors_origin},
          {"Access-Control-Allow-Headers", "Authorization, Content-Type"},
          {"Access-Control-Allow-Methods", "GET, HEAD, POST, OPTIONS"},
          {"Vary", "Origin"}};
}

ConnectionLimits connection_limits(const ServerOptions& o) {
  ConnectionLimits l;
  l.request_timeout_s = o.request_timeout_s;
  l.keep_alive_idle_s = std::min(o.keep_alive_idle_s, o.request_timeout_s);
  l.max_body_bytes = o.max_body_bytes;
  l.max_connections = o.max_connections;
  // A request waiting for a slot holds its worker, so the workers cover the slots, the queue and a few
  // quick answers (/health, errors) on top. Slow clients hold none: requests reach workers complete.
  l.workers = o.parallel + o.max_queue + 8;
  l.extra_headers = cors_headers(o);
  return l;
}

// Why binding failed, from a bind(2) of our own (cpp-httplib only says that it failed).
std::string bind_failure(const std::string& host, int port) {
  addrinfo hints{}, *res = nullptr;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  if (int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res); rc != 0)
    return std::string("cannot resolve the address: ") + gai_strerror(rc);
  std::string why = "address not available";
  for (addrinfo* a = res; a; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd < 0) continue;
    int yes = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    int rc = ::bind(fd, a->ai_addr, a->ai_addrlen);
    int err = errno;
    ::close(fd);
    if (rc != 0) {
      why = std::strerror(err);
      if (err == EADDRINUSE) why += " (is another server running on this port?)";
      break;
    }
  }
  freeaddrinfo(res);
  return why;
}

// Request fields in a log line: control characters (a forged newline, say) and non-ASCII bytes escaped.
std::string log_escape(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += char(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

int64_t longest_token_bytes(const ModelContext& model) {
  size_t longest = 1;
  for (int64_t id = 0; id < model.info().vocab_size; ++id) {
    try {
      longest = std::max(longest, model.text().decode({int32_t(id)}).size());
    } catch (const std::exception&) {
      break;  // the model's vocabulary is padded beyond the tokenizer's: no more tokens
    }
  }
  return int64_t(longest);
}

}  // namespace

Server::Impl::Impl(ModelContext m, ServerOptions o)
    : model(std::move(m)),
      options(std::move(o)),
      prompt_cache(model, size_t(std::max<int64_t>(0, options.cache_bytes))),
      scheduler(options.parallel, options.max_queue),
      http(connection_limits(options)) {
  ctx_size = model.info().context_length;
  if (options.ctx_size > 0 && (ctx_size <= 0 || options.ctx_size < ctx_size)) ctx_size = options.ctx_size;
  if (options.model_names.empty())
    options.model_names.push_back(std::filesystem::path(model.info().dir).filename().string());
  max_token_bytes = longest_token_bytes(model);
}

void Server::Impl::check_auth(const httplib::Request& req) const {
  if (options.api_key.empty()) return;
  std::string h = req.get_header_value("Authorization");
  const std::string bearer = "Bearer ";
  if (h.empty())
    throw ApiError(401, "You didn't provide an API key (Authorization: Bearer KEY).", "", "invalid_api_key");
  if (h.rfind(bearer, 0) != 0 || !constant_time_equal(h.substr(bearer.size()), options.api_key))
    throw ApiError(401, "Incorrect API key provided.", "", "invalid_api_key");
}

void Server::Impl::check_model(const std::string& name) const {
  for (const auto& n : options.model_names)
    if (n == name) return;
  for (const auto& a : options.adapters)
    if (a.first == name) return;
  throw ApiError(404, "The model '" + name + "' does not exist; this server serves '" + options.model_names[0] + "'.",
                 "model", "model_not_found");
}

void Server::Impl::send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status();
  res.set_content(dump_json(e.to_json()), "application/json");
}

void Server::Impl::log(const httplib::Request& req, int status, const std::string& note) const {
  if (!options.log_requests) return;
  std::string line = "vlm serve: " + log_escape(req.method) + " " + log_escape(req.path) + " -> " +
                     std::to_string(status) + (note.empty() ? "" : " " + log_escape(note)) + "\n";
  std::fputs(line.c_str(), stderr);
}

void Server::Impl::set_method_answers() {
  // Methods per route: others get 405 with Allow (HEAD comes with GET), OPTIONS gets 204 with Allow.
  struct Route {
    std::regex path;
    std::string allow;
  };
  static const std::vector<Route> routes = {{std::regex("/health|/ready|/metrics"), "GET, HEAD"},
                                            {std::regex("/v1/models(/.+)?"), "GET, HEAD"},
                                            {std::regex("/v1/chat/completions"), "POST"},
                                            {std::regex("\\*"), "GET, HEAD, POST"}};
  http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    for (const auto& r : routes) {
      if (!std::regex_match(req.path, r.path)) continue;
      const std::string allow = r.allow + ", OPTIONS";
      if (req.method == "OPTIONS") {
        res.status = 204;
        res.set_header("Allow", allow);
        return httplib::Server::HandlerResponse::Handled;
      }
      if ((", " + r.allow + ",").find(", " + req.method + ",") != std::string::npos && req.path != "*")
        return httplib::Server::HandlerResponse::Unhandled;
      res.set_header("Allow", allow);
      send_error(
          res, ApiError(405, "Method " + req.method + " is not allowed for " + req.path + " (allowed: " + allow + ").",
                        "", "method_not_allowed"));
      log(req, 405, "");
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
}

void Server::Impl::set_routes() {
  // Connections, time limits and body limits are the reactor's (http_connections.h); what cpp-httplib
  // reads is always one complete request.
  http.set_default_headers(cors_headers(options));
  set_method_answers();

  http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    SchedulerStats s = scheduler.stats();
    json j = {{"status", stopping ? "shutting_down" : "ok"},
              {"slots_total", options.parallel},
              {"slots_processing", s.active},
              {"requests_queued", s.queued},
              {"model", options.model_names[0]}};
    res.status = stopping ? 503 : 200;
    res.set_content(dump_json(j), "application/json");
  });

  // Readiness, apart from liveness: a draining server is alive (it finishes its requests) but must get no
  // new ones. (While the model loads, serve_command answers 503 here itself.)
  http.Get("/ready", [this](const httplib::Request&, httplib::Response& res) {
    res.status = stopping ? 503 : 200;
    res.set_content(dump_json({{"status", stopping ? "draining" : "ready"}}), "application/json");
  });

  // Prometheus text exposition format 0.0.4; like /health it needs no key (scrapers run inside the cluster).
  http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    SchedulerStats s = scheduler.stats();
    const DecodeBatchStats batches = prompt_cache.decode_stats();
    GaugeValues gauges{s.queued,
                       s.active,
                       options.parallel,
                       model.info().load_ms / 1000.0,
                       int64_t(prompt_cache.bytes()),
                       batches.steps,
                       batches.sequence_steps,
                       batches.largest};
    res.set_content(metrics.render(gauges), "text/plain; version=0.0.4; charset=utf-8");
  });

  auto models = [this](const httplib::Request& req, httplib::Response& res) {
    try {
      check_auth(req);
      json data = json::array();
      data.push_back({{"id", options.model_names[0]},
                      {"object", "model"},
                      {"created", 0},
                      {"owned_by", "vlm.cpp"},
                      {"context_length", ctx_size}});
      for (const auto& [name, id] : options.adapters)  // as vLLM lists LoRA modules
        data.push_back({{"id", name},
                        {"object", "model"},
                        {"created", 0},
                        {"owned_by", "vlm.cpp"},
                        {"root", model.adapters()[size_t(id)].dir},
                        {"parent", options.model_names[0]},
                        {"context_length", ctx_size}});
      if (req.matches.size() > 1) {
        check_model(req.matches[1]);
        for (const json& m : data)
          if (m["id"] == req.matches[1]) res.set_content(dump_json(m), "application/json");
        if (res.body.empty()) res.set_content(dump_json(data[0]), "application/json");
        return;
      }
      res.set_content(dump_json({{"object", "list"}, {"data", data}}), "application/json");
    } catch (const ApiError& e) {
      send_error(res, e);
    }
  };
  http.Get("/v1/models", models);
  http.Get(R"(/v1/models/(.+))", models);

  // A content-reader route, so that cpp-httplib does not copy the body: the handler takes it from the reactor.
  http.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res,
                                           const httplib::ContentReader&) { handle_chat(req, res); });

  // Anything httplib answers by itself (unknown route 404, oversized body 413, ...) gets an OpenAI body.
  http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    std::string msg = res.status == 404   ? "Unknown request URL: " + req.method + " " + req.path + "."
                      : res.status == 413 ? std::string("The request body is too large.")
                                          : "HTTP error " + std::to_string(res.status) + ".";
    ApiError e(res.status, msg, "", res.status == 404 ? "unknown_url" : "");
    res.set_content(dump_json(e.to_json()), "application/json");
  });
  http.set_exception_handler([this](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "internal error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(res, ApiError(500, what));
    log(req, 500, what);
  });
}

Server::Server(ModelContext model, ServerOptions options)
    : impl_(std::make_unique<Impl>(std::move(model), std::move(options))) {
  impl_->set_routes();
}

Server::~Server() {
  shutdown();
}

int Server::bind() {
  if (impl_->bound_port > 0) return impl_->bound_port;
  Impl& s = *impl_;
  if (s.options.port == 0) {
    s.bound_port = s.http.bind_to_any_port(s.options.host);
  } else if (s.http.bind_to_port(s.options.host, s.options.port)) {
    s.bound_port = s.options.port;
  }
  if (s.bound_port <= 0)
    throw std::runtime_error("cannot listen on " + s.options.host + ":" + std::to_string(s.options.port) + ": " +
                             bind_failure(s.options.host, s.options.port));
  return s.bound_port;
}

int Server::port() const {
  return impl_->bound_port;
}

void Server::run() {
  bind();
  impl_->run_state = 1;
  if (!impl_->stopping) impl_->http.listen_after_bind();
  impl_->http.stop_connections();
  impl_->run_state = 2;
}

void Server::shutdown() {
  Impl& s = *impl_;
  std::call_once(s.shutdown_once, [&s] {
    s.stopping = true;
    s.scheduler.shutdown();  // queued and new requests: 503
    auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(s.options.shutdown_grace_s);
    while (s.scheduler.stats().active > 0 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    s.cancel_all = true;  // whatever still runs stops at its next token and ends its response cleanly
    while (s.scheduler.stats().active > 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    // Stops listening and joins the HTTP workers, which finish writing their responses first.
    // (httplib ignores stop() until its accept loop runs, hence the retry while run() is entering it.)
    while (s.run_state == 1) {
      s.http.stop();
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  });
}

ServerCounters Server::counters() const {
  const Impl& s = *impl_;
  SchedulerStats st = s.scheduler.stats();
  return {s.requests, s.completed, s.failed,       s.disconnected,           s.tokens_generated,
          st.active,  st.queued,   st.peak_active, s.http.open_connections()};
}

const ServerOptions& Server::options() const {
  return impl_->options;
}

}  // namespace vlm::server
