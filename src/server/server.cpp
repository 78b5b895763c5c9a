#include "server/server.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
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

}  // namespace

Server::Impl::Impl(ModelContext m, ServerOptions o)
    : model(std::move(m)), options(std::move(o)), scheduler(options.parallel, options.max_queue) {
  ctx_size = model.info().context_length;
  if (options.ctx_size > 0 && (ctx_size <= 0 || options.ctx_size < ctx_size)) ctx_size = options.ctx_size;
  if (options.model_names.empty())
    options.model_names.push_back(std::filesystem::path(model.info().dir).filename().string());
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
  throw ApiError(404, "The model '" + name + "' does not exist; this server serves '" + options.model_names[0] + "'.",
                 "model", "model_not_found");
}

void Server::Impl::send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status();
  res.set_content(dump_json(e.to_json()), "application/json");
}

void Server::Impl::log(const httplib::Request& req, int status, const std::string& note) const {
  if (!options.log_requests) return;
  std::fprintf(stderr, "vlm serve: %s %s -> %d%s%s\n", req.method.c_str(), req.path.c_str(), status,
               note.empty() ? "" : " ", note.c_str());
}

void Server::Impl::set_routes() {
  // Waiting requests hold an HTTP worker thread each, so the pool covers the slots, the queue and a few
  // idle keep-alive connections.
  size_t threads = size_t(options.parallel + options.max_queue + 8);
  http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  // Bodies over the limit are read and discarded by the handler (so the client sees the 413); this
  // hard cap only stops a client that would stream without end.
  http.set_payload_max_length(size_t(options.max_body_bytes) * 4 + (1 << 20));
  http.set_read_timeout(30);
  http.set_write_timeout(30);
  http.set_keep_alive_max_count(1000);

  if (!options.cors_origin.empty()) {
    http.set_default_headers({{"Access-Control-Allow-Origin", options.cors_origin},
                              {"Access-Control-Allow-Headers", "Authorization, Content-Type"},
                              {"Access-Control-Allow-Methods", "GET, POST, OPTIONS"},
                              {"Vary", "Origin"}});
    http.Options(R"(/.*)", [](const httplib::Request&, httplib::Response& res) { res.status = 204; });
  }

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

  auto models = [this](const httplib::Request& req, httplib::Response& res) {
    try {
      check_auth(req);
      json data = json::array();
      data.push_back({{"id", options.model_names[0]},
                      {"object", "model"},
                      {"created", 0},
                      {"owned_by", "vlm.cpp"},
                      {"context_length", ctx_size}});
      if (req.matches.size() > 1) {
        check_model(req.matches[1]);
        res.set_content(dump_json(data[0]), "application/json");
        return;
      }
      res.set_content(dump_json({{"object", "list"}, {"data", data}}), "application/json");
    } catch (const ApiError& e) {
      send_error(res, e);
    }
  };
  http.Get("/v1/models", models);
  http.Get(R"(/v1/models/(.+))", models);

  http.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res,
                                           const httplib::ContentReader& reader) { handle_chat(req, res, reader); });

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
    throw std::runtime_error("cannot listen on " + s.options.host + ":" + std::to_string(s.options.port) +
                             " (address in use or not available)");
  return s.bound_port;
}

int Server::port() const {
  return impl_->bound_port;
}

void Server::run() {
  bind();
  impl_->run_state = 1;
  if (!impl_->stopping) impl_->http.listen_after_bind();
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
  return {s.requests, s.completed, s.failed, s.disconnected, s.tokens_generated, st.active, st.queued, st.peak_active};
}

const ServerOptions& Server::options() const {
  return impl_->options;
}

}  // namespace vlm::server
