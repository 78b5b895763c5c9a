// Client disconnects, graceful shutdown, and the real `vlm serve` binary.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>

#include "server_test_util.h"

namespace vlm::server::testing {
namespace {

// A generation that would run for minutes unless stopped.
json endless_body(bool stream) {
  json b = chat_body(user_text("Count forever."), 20000);
  b["ignore_eos"] = true;
  b["stream"] = stream;
  return b;
}

TEST(ServerLifecycle, StreamingClientDisconnectStopsGeneration) {
  SKIP_WITHOUT_FIXTURES();
  TestServer srv;
  RawClient raw(srv.port());
  ASSERT_TRUE(raw.ok());
  raw.send_post(endless_body(true).dump());
  std::string got = raw.read_until("\"content\":\"", 30);
  ASSERT_NE(got.find("200 OK"), std::string::npos) << got;
  raw.close();
  EXPECT_TRUE(srv.wait_for([](const ServerCounters& n) { return n.disconnected == 1 && n.active == 0; }))
      << "disconnected=" << srv.server().counters().disconnected;
  int64_t tokens = srv.server().counters().tokens_generated;
  EXPECT_LT(tokens, 20000);
  // Nothing keeps generating in the background.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(srv.server().counters().tokens_generated, tokens);
  // The slot is free again.
  auto c = srv.client();
  EXPECT_EQ(post(c, chat_body(user_text("hi"), 2)).status, 200);
}

TEST(ServerLifecycle, NonStreamingAndQueuedClientDisconnectsStopWork) {
  SKIP_WITHOUT_FIXTURES();
  TestServer srv;  // one slot: the second request waits in the queue
  RawClient running(srv.port()), waiting(srv.port());
  ASSERT_TRUE(running.ok() && waiting.ok());
  running.send_post(endless_body(false).dump());
  ASSERT_TRUE(srv.wait_for([](const ServerCounters& n) { return n.tokens_generated > 0 || n.active == 1; }));
  waiting.send_post(endless_body(false).dump());
  ASSERT_TRUE(srv.wait_for([](const ServerCounters& n) { return n.queued == 1; }));
  waiting.close();
  EXPECT_TRUE(srv.wait_for([](const ServerCounters& n) { return n.disconnected == 1 && n.queued == 0; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  running.close();
  EXPECT_TRUE(srv.wait_for([](const ServerCounters& n) { return n.disconnected == 2 && n.active == 0; }));
  EXPECT_LT(srv.server().counters().tokens_generated, 20000);
  EXPECT_EQ(srv.server().counters().completed, 0);
}

TEST(ServerLifecycle, ShutdownEndsInFlightStreamsCleanly) {
  SKIP_WITHOUT_FIXTURES();
  ServerOptions opts;
  opts.shutdown_grace_s = 0.3;
  auto srv = std::make_unique<TestServer>(opts);
  RawClient raw(srv->port());
  raw.send_post(endless_body(true).dump());
  ASSERT_NE(raw.read_until("\"content\":\"", 30).find("200 OK"), std::string::npos);
  std::thread stopper([&] { srv->server().shutdown(); });
  // The stream ends properly: an error event, [DONE], and the chunked terminator.
  std::string all = raw.read_until("\r\n0\r\n\r\n", 20);
  raw.close();  // (an idle keep-alive connection would hold the shutdown for httplib's keep-alive timeout)
  stopper.join();
  EXPECT_NE(all.find("server_shutting_down"), std::string::npos);
  EXPECT_NE(all.find("data: [DONE]"), std::string::npos);
  EXPECT_NE(all.find("\r\n0\r\n\r\n"), std::string::npos) << "chunked stream not terminated";
  int port = srv->port();
  srv.reset();
  RawClient after(port);
  EXPECT_FALSE(after.ok()) << "still listening after shutdown";
}

#ifdef VLM_CLI_PATH
// `vlm serve` as users run it: the demo model answers, SIGTERM stops it with status 0.
TEST(ServerLifecycle, CliServeAnswersAndStopsOnSigterm) {
  std::string model = std::string(VLM_SOURCE_DIR) + "/models/qwen2-vl-shapes-4bit";
  std::string image = std::string(VLM_SOURCE_DIR) + "/assets/images/shapes_02.png";
  if (!fs::exists(model) || !fs::exists(image)) GTEST_SKIP() << "demo model absent: " << model;
  int err_pipe[2];
  ASSERT_EQ(pipe(err_pipe), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    dup2(err_pipe[1], 2);
    close(err_pipe[0]);
    execl(VLM_CLI_PATH, VLM_CLI_PATH, "serve", "--model", model.c_str(), "--host", "127.0.0.1", "--port", "0",
          "--alias", "shapes", "--api-key", "k", static_cast<char*>(nullptr));
    _exit(127);
  }
  close(err_pipe[1]);
  // The port is announced on stderr: "... on http://127.0.0.1:PORT/v1 ...".
  std::string log;
  int port = 0;
  auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (port == 0 && std::chrono::steady_clock::now() < end) {
    char buf[512];
    ssize_t n = read(err_pipe[0], buf, sizeof buf);
    if (n <= 0) break;
    log.append(buf, size_t(n));
    size_t at = log.find("http://127.0.0.1:");
    if (at != std::string::npos && log.find("/v1", at) != std::string::npos) port = std::atoi(log.c_str() + at + 17);
  }
  ASSERT_GT(port, 0) << log;
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(60);
  json content = json::array({{{"type", "image_url"}, {"image_url", {{"url", data_url(image)}}}},
                              {{"type", "text"}, {"text", "Describe the image."}}});
  json body = {{"model", "shapes"}, {"messages", {{{"role", "user"}, {"content", content}}}}, {"max_tokens", 30}};
  HttpResult r = post(c, body, {{"Authorization", "Bearer k"}});
  EXPECT_EQ(r.status, 200) << r.body;
  if (r.status == 200) {
    EXPECT_EQ(r.j["choices"][0]["message"]["content"], "A purple circle above a red square.");
  }
  EXPECT_EQ(post(c, body).status, 401);
  kill(pid, SIGTERM);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  char buf[4096];
  for (ssize_t n; (n = read(err_pipe[0], buf, sizeof buf)) > 0;) log.append(buf, size_t(n));
  close(err_pipe[0]);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << log;
  EXPECT_NE(log.find("stopped"), std::string::npos) << log;
}

// Request fields cannot forge log lines, and a second SIGTERM exits at once, mid grace period.
TEST(ServerLifecycle, CliLogLinesAreEscapedAndASecondSignalExitsAtOnce) {
  SKIP_WITHOUT_FIXTURES();
  ServeProcess serve({"--model", tiny_model_dir(), "--host", "127.0.0.1", "--port", "0", "--alias", "tiny", "--log",
                      "--shutdown-timeout", "120"});
  int port = serve.port();
  ASSERT_GT(port, 0) << serve.log();
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(60);
  json forged = chat_body(user_text("hi"), 2);
  forged["model"] = "x\nvlm serve: POST /v1/chat/completions -> 200 FORGED";
  EXPECT_EQ(post(c, forged).status, 404);
  ASSERT_TRUE(serve.wait_for_log("-> 404", 30)) << serve.log();
  EXPECT_EQ(serve.log().find("\nvlm serve: POST /v1/chat/completions -> 200 FORGED"), std::string::npos) << serve.log();
  EXPECT_NE(serve.log().find("\\x0avlm serve: POST"), std::string::npos) << serve.log();

  // A generation that outlasts any test keeps the first SIGTERM in its grace period.
  RawClient raw(port);
  json endless = chat_body(user_text("Count."), 20000);
  endless["ignore_eos"] = true;
  endless["stream"] = true;
  raw.send_post(endless.dump());
  ASSERT_NE(raw.read_until("\"content\":\"", 30).find("200 OK"), std::string::npos);
  kill(serve.pid(), SIGTERM);
  ASSERT_TRUE(serve.wait_for_log("shutting down", 30)) << serve.log();
  auto t0 = std::chrono::steady_clock::now();
  kill(serve.pid(), SIGTERM);
  int status = serve.wait_exit(30);
  ASSERT_NE(status, -1) << "still running 30 s after the second SIGTERM: " << serve.log();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 128 + SIGTERM) << serve.log();
  EXPECT_NE(serve.log().find("second signal"), std::string::npos) << serve.log();
}
#endif

}  // namespace
}  // namespace vlm::server::testing
