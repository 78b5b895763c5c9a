// Connection-level hardening (issue #19): request framing on kept-alive connections, slow clients, body
// limits, half-closed clients, methods, and the listening socket. Raw sockets where an HTTP client would
// hide the problem.
#include <dirent.h>

#include <atomic>

#include "server/http_connections.h"
#include "server_test_util.h"

namespace vlm::server::testing {
namespace {

std::string raw_request(const std::string& method, const std::string& path, const std::string& body,
                        const std::string& extra_headers = "") {
  std::string r = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra_headers;
  if (!body.empty() || method == "POST")
    r += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  return r + "\r\n" + body;
}

int count_threads() {
  int n = 0;
  if (DIR* d = opendir("/proc/self/task")) {
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.') ++n;
    closedir(d);
  }
  return n;
}

// A request hidden in the body of a request the server answers early must never be answered.
TEST(ServerConnections, BodiesOfEarlyAnsweredRequestsAreNeverParsedAsRequests) {
  SKIP_WITHOUT_FIXTURES();
  ServerOptions opts;
  opts.api_key = "sk-key";
  TestServer srv(opts);
  const std::string smuggled = "GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-key\r\n\r\n";
  struct Case {
    std::string name, request;
    int status;
  };
  std::vector<Case> cases = {
      {"401 without a key", raw_request("POST", "/v1/chat/completions", smuggled), 401},
      {"401 with a wrong key", raw_request("POST", "/v1/chat/completions", smuggled, "Authorization: Bearer no\r\n"),
       401},
      {"404 unknown URL", raw_request("POST", "/v1/nothing", smuggled), 404},
      {"GET with a body", raw_request("GET", "/health", smuggled), 200},
      {"405 wrong method", raw_request("DELETE", "/v1/models", smuggled), 405},
      {"chunked body",
       "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
           [&] {
             char size[16];
             std::snprintf(size, sizeof size, "%zx", smuggled.size());
             return std::string(size) + "\r\n" + smuggled + "\r\n0\r\n\r\n";
           }(),
       401},
  };
  RawClient raw(srv.port());
  ASSERT_TRUE(raw.ok());
  for (const auto& c : cases) {
    // Each early answer, then a plain request on the same connection: exactly two answers, in order.
    ASSERT_TRUE(raw.send_raw(c.request + raw_request("GET", "/health", ""))) << c.name;
    RawClient::Response first = raw.read_response(30);
    EXPECT_EQ(first.status, c.status) << c.name << ": " << first.head << first.body;
    EXPECT_EQ(first.body.find("\"object\":\"list\""), std::string::npos) << c.name << ": smuggled request answered";
    RawClient::Response second = raw.read_response(30);
    EXPECT_EQ(second.status, 200) << c.name << ": " << second.head << second.body;
    EXPECT_NE(second.body.find("\"status\""), std::string::npos) << c.name << ": " << second.body;
  }
  // Nothing more arrives (the smuggled GET was not answered).
  RawClient::Response extra = raw.read_response(0.5);
  EXPECT_EQ(extra.status, -1) << extra.head << extra.body;

  // A pooling HTTP client keeps working after a 401 on its connection.
  auto c = srv.client();
  json body = chat_body(user_text("hi"), 2);
  EXPECT_EQ(post(c, body.dump() + std::string(3000, ' ')).status, 401);
  EXPECT_EQ(post(c, body, {{"Authorization", "Bearer sk-key"}}).status, 200);
}

TEST(ServerConnections, ShuttingDownAnswersLeaveNoBodyBehind) {
  SKIP_WITHOUT_FIXTURES();
  ServerOptions opts;
  opts.shutdown_grace_s = 20;
  auto srv = std::make_unique<TestServer>(opts);
  // An endless generation keeps the server in its grace period while new requests get 503.
  RawClient running(srv->port());
  json endless = chat_body(user_text("Count."), 20000);
  endless["ignore_eos"] = true;
  endless["stream"] = true;
  running.send_post(endless.dump());
  ASSERT_NE(running.read_until("\"content\":\"", 30).find("200 OK"), std::string::npos);
  RawClient raw(srv->port());
  ASSERT_TRUE(raw.send_raw(raw_request("GET", "/health", "")));
  ASSERT_EQ(raw.read_response(30).status, 200);
  std::thread stopper([&] { srv->server().shutdown(); });
  ASSERT_TRUE(srv->wait_for([&](const ServerCounters&) {
    httplib::Client c("127.0.0.1", srv->port());
    auto res = c.Get("/health");
    return res && res->status == 503;
  }));
  const std::string smuggled = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_TRUE(raw.send_raw(raw_request("POST", "/v1/chat/completions", smuggled)));
  RawClient::Response r = raw.read_response(30);
  EXPECT_EQ(r.status, 503) << r.head << r.body;
  EXPECT_EQ(raw.read_response(1).status, -1) << "the body was parsed as a request";
  running.close();
  raw.close();
  stopper.join();
}

TEST(ServerConnections, SlowClientsCannotMakeTheServerUnreachable) {
  SKIP_WITHOUT_FIXTURES();
  ServerOptions opts;
  opts.request_timeout_s = 3;
  opts.max_queue = 4;  // few workers: slow clients must not need any
  TestServer srv(opts);
  {
    auto warm = srv.client();  // starts what a first completion starts (the compute threads)
    ASSERT_EQ(post(warm, chat_body(user_text("hi"), 2)).status, 200);
  }
  const int threads_before = count_threads();
  constexpr int kSlow = 120;
  std::vector<std::unique_ptr<RawClient>> slow;
  for (int i = 0; i < kSlow; ++i) {
    slow.push_back(std::make_unique<RawClient>(srv.port()));
    ASSERT_TRUE(slow.back()->ok());
  }
  // Headers one byte at a time, in the background, for longer than the time limit.
  std::atomic<bool> stop{false};
  std::thread trickle([&] {
    const std::string head = "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: ";
    for (size_t i = 0; !stop; ++i) {
      for (auto& c : slow) c->send_raw(std::string(1, i < head.size() ? head[i] : 'a'));
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
  });
  // Meanwhile, health checks and completions are answered promptly.
  for (int i = 0; i < 5; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    httplib::Client c("127.0.0.1", srv.port());
    c.set_connection_timeout(10);
    c.set_read_timeout(20);
    auto res = c.Get("/health");
    ASSERT_TRUE(res) << "health check " << i << " failed with " << slow.size() << " slow clients";
    EXPECT_EQ(res->status, 200);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
    auto cc = srv.client();
    EXPECT_EQ(post(cc, chat_body(user_text("hi"), 2)).status, 200);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
  // The slow requests run out of time: 408 (or a close), and their connections go away.
  int timed_out = 0;
  for (auto& c : slow) {
    RawClient::Response r = c->read_response(30);
    if (r.status == 408 || r.status == -1) ++timed_out;
  }
  stop = true;
  trickle.join();
  EXPECT_EQ(timed_out, kSlow);
  slow.clear();
  EXPECT_TRUE(srv.wait_for([](const ServerCounters& n) { return n.open_connections == 0; }, 20))
      << srv.server().counters().open_connections << " connections still open";
  EXPECT_LE(count_threads(), threads_before) << "threads were started for slow clients";
}

TEST(ServerConnections, IdleKeptAliveConnectionsAreClosed) {
  SKIP_WITHOUT_FIXTURES();
  ServerOptions opts;
  opts.keep_alive_idle_s = 1;
  TestServer srv(opts);
  RawClient raw(srv.port());
  ASSERT_TRUE(raw.send_raw(raw_request("GET", "/health", "")));
  EXPECT_EQ(raw.read_response(30).status, 200);
  EXPECT_TRUE(raw.closed_by_server(15));
}

TEST(ServerConnections, OversizedBodiesGet413WhateverTheirSize) {
  SKIP_WITHOUT_FIXTURES();
  ServerOptions opts;
  opts.max_body_bytes = 1 << 20;
  TestServer srv(opts);
  // Declared far beyond the limit, body never sent: answered from the head alone.
  for (int64_t declared : {int64_t(2) << 20, int64_t(300) << 20, int64_t(1) << 40}) {
    RawClient raw(srv.port());
    ASSERT_TRUE(
        raw.send_raw("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Content-Length: " +
                     std::to_string(declared) + "\r\n\r\n{\"model\":"));
    RawClient::Response r = raw.read_response(20);
    EXPECT_EQ(r.status, 413) << declared << ": " << r.head << r.body;
    EXPECT_EQ(r.j["error"]["code"], "request_too_large") << r.body;
  }
  // A chunked body that grows past the limit.
  RawClient raw(srv.port());
  ASSERT_TRUE(raw.send_raw("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"));
  std::string chunk(256 << 10, ' ');
  for (int i = 0; i < 5; ++i) raw.send_raw("40000\r\n" + chunk + "\r\n");
  EXPECT_EQ(raw.read_response(20).status, 413);
  // An HTTP client sending a large body sees the 413 too.
  auto c = srv.client();
  EXPECT_EQ(post(c, std::string(3 << 20, ' ')).status, 413);
  EXPECT_EQ(post(c, chat_body(user_text("hi"), 2)).status, 200);
}

TEST(ServerConnections, MalformedFramingIsRefusedAndClosed) {
  SKIP_WITHOUT_FIXTURES();
  TestServer srv;
  struct Case {
    std::string name, request;
    int status;
  };
  std::vector<Case> cases = {
      {"conflicting lengths", "POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
       400},
      {"length and chunked",
       "POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
      {"unknown transfer coding", "POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
      {"negative length", "POST /v1/chat/completions HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400},
      {"space before colon", "GET /health HTTP/1.1\r\nHost : x\r\n\r\n", 400},
      {"folded header", "GET /health HTTP/1.1\r\nX-A: 1\r\n  continued\r\n\r\n", 400},
      {"headers too large", "GET /health HTTP/1.1\r\nX-Big: " + std::string(100 << 10, 'a') + "\r\n\r\n", 431},
      {"unknown method", "BREW /health HTTP/1.1\r\nHost: x\r\n\r\n", 501},
      {"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505},
  };
  for (const auto& c : cases) {
    RawClient raw(srv.port());
    ASSERT_TRUE(raw.send_raw(c.request)) << c.name;
    RawClient::Response r = raw.read_response(20);
    EXPECT_EQ(r.status, c.status) << c.name << ": " << r.head << r.body;
    EXPECT_TRUE(r.j.is_object() && r.j.contains("error")) << c.name << ": " << r.body;
    EXPECT_TRUE(raw.closed_by_server(10)) << c.name;
  }
  auto cl = srv.client();
  EXPECT_EQ(post(cl, chat_body(user_text("hi"), 2)).status, 200);
}

TEST(ServerConnections, HalfClosedClientStillGetsItsAnswer) {
  SKIP_WITHOUT_FIXTURES();
  GenerationParams p;
  p.max_tokens = 6;
  std::string want = tiny_model().generate(tiny_model().prepare(UserInput::from_prompt("Hello")), p).text;
  TestServer srv;
  for (bool stream : {false, true}) {
    RawClient raw(srv.port());
    json body = chat_body(user_text("Hello"), 6);
    body["stream"] = stream;
    raw.send_post(body.dump());
    raw.shutdown_write();  // done sending; still reading
    RawClient::Response r = raw.read_response(60);
    ASSERT_EQ(r.status, 200) << "stream=" << stream << ": " << r.head << r.body;
    std::string text;
    if (stream) {
      for (const auto& e : sse_events(r.body))
        if (e.is_object() && !e["choices"].empty() && e["choices"][0]["delta"].contains("content"))
          text += e["choices"][0]["delta"]["content"].get<std::string>();
    } else {
      text = r.j["choices"][0]["message"]["content"];
    }
    EXPECT_EQ(text, want) << "stream=" << stream;
  }
  EXPECT_EQ(srv.server().counters().disconnected, 0);
  EXPECT_EQ(srv.server().counters().completed, 2);
}

TEST(ServerConnections, HeadOptionsAndWrongMethodsGetProperAnswers) {
  SKIP_WITHOUT_FIXTURES();
  TestServer srv;
  RawClient raw(srv.port());
  ASSERT_TRUE(raw.send_raw(raw_request("HEAD", "/health", "")));
  RawClient::Response r = raw.read_response(20, true);
  EXPECT_EQ(r.status, 200) << r.head;
  EXPECT_NE(r.head.find("Content-Length:"), std::string::npos) << r.head;
  ASSERT_TRUE(raw.send_raw(raw_request("OPTIONS", "/v1/chat/completions", "")));
  r = raw.read_response(20);
  EXPECT_EQ(r.status, 204) << r.head;
  EXPECT_NE(r.head.find("Allow: POST, OPTIONS"), std::string::npos) << r.head;
  for (const std::string method : {"HEAD", "GET", "PUT"}) {
    ASSERT_TRUE(raw.send_raw(raw_request(method, "/v1/chat/completions", "")));
    r = raw.read_response(20, method == "HEAD");
    EXPECT_EQ(r.status, 405) << method << ": " << r.head << r.body;
    EXPECT_NE(r.head.find("Allow: POST, OPTIONS"), std::string::npos) << r.head;
  }
  ASSERT_TRUE(raw.send_raw(raw_request("POST", "/v1/models", "{}")));
  r = raw.read_response(20);
  EXPECT_EQ(r.status, 405) << r.head;
  EXPECT_NE(r.head.find("Allow: GET, HEAD, OPTIONS"), std::string::npos) << r.head;
  EXPECT_EQ(r.j["error"]["code"], "method_not_allowed");
  // Still in step after all of these.
  ASSERT_TRUE(raw.send_raw(raw_request("GET", "/health", "")));
  EXPECT_EQ(raw.read_response(20).status, 200);
}

TEST(ServerConnections, ASecondServerCannotBindAPortInUse) {
  SKIP_WITHOUT_FIXTURES();
  TestServer first;
  ServerOptions opts;
  opts.host = "127.0.0.1";
  opts.port = first.port();
  Server second(tiny_model(), opts);
  try {
    second.bind();
    ADD_FAILURE() << "a second server bound port " << first.port();
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("in use"), std::string::npos) << e.what();
  }
}

// The framing parser on its own.
TEST(ServerConnections, RequestHeadParser) {
  RequestHead h = parse_request_head("\r\nPOST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc", 1 << 16);
  ASSERT_EQ(h.status, RequestHead::Status::kComplete) << h.error_message;
  EXPECT_EQ(h.method, "POST");
  EXPECT_EQ(h.content_length, 3);
  EXPECT_EQ(h.head_bytes, std::string("\r\nPOST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n").size());
  EXPECT_EQ(h.normalized, "POST /x HTTP/1.1\r\nHost: a\r\n");
  EXPECT_EQ(parse_request_head("GET / HTTP/1.1\r\nHost: a\r\n", 1 << 16).status, RequestHead::Status::kNeedMore);
  h = parse_request_head("GET / HTTP/1.0\r\n\r\n", 1 << 16);
  EXPECT_FALSE(h.keep_alive);
  h = parse_request_head("GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n", 1 << 16);
  EXPECT_FALSE(h.keep_alive);

  std::string body;
  ChunkedBodyDecoder d(100);
  std::string in = "3;ext=1\r\nabc\r\n";
  size_t pos = 0;
  EXPECT_EQ(d.feed(in, pos, body), ChunkedBodyDecoder::Status::kNeedMore);
  in += "A\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\nNEXT";
  EXPECT_EQ(d.feed(in, pos, body), ChunkedBodyDecoder::Status::kComplete);
  EXPECT_EQ(body, "abc0123456789");
  EXPECT_EQ(in.substr(pos), "NEXT");
  ChunkedBodyDecoder small(4);
  body.clear();
  pos = 0;
  EXPECT_EQ(small.feed("5\r\nabcde\r\n0\r\n\r\n", pos, body), ChunkedBodyDecoder::Status::kTooLarge);
}

}  // namespace
}  // namespace vlm::server::testing
