// A CI-sized soak (about a minute): mixed traffic against `vlm serve --parallel 2` (good requests,
// bad JSON, wrong keys with bodies, slow clients, disconnects, oversized images and bodies). Every good
// request must be answered correctly, and afterwards the process must be back where it was after the
// warm-up: RSS within 10 %, no more threads, no more open files.
#include <dirent.h>

#include <atomic>
#include <fstream>
#include <mutex>

#include "server_test_util.h"

namespace vlm::server::testing {
namespace {

#ifdef VLM_CLI_PATH

int64_t count_entries(const std::string& dir) {
  int64_t n = 0;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.') ++n;
    closedir(d);
  }
  return n;
}

int64_t rss_kb(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::atoll(line.c_str() + 6);
  return 0;
}

struct Usage {
  int64_t rss_kb = 0, threads = 0, fds = 0;
};

Usage usage_of(pid_t pid) {
  const std::string proc = "/proc/" + std::to_string(pid);
  return {rss_kb(pid), count_entries(proc + "/task"), count_entries(proc + "/fd")};
}

class MixedTraffic {
 public:
  MixedTraffic(int port, std::vector<std::string> prompts, std::vector<std::string> answers)
      : port_(port), prompts_(std::move(prompts)), answers_(std::move(answers)) {}

  // Runs `clients` threads for `seconds`, each cycling through the kinds of traffic.
  void run(int clients, double seconds) {
    auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    std::vector<std::thread> threads;
    for (int t = 0; t < clients; ++t)
      threads.emplace_back([this, t, end] {
        for (int i = t; std::chrono::steady_clock::now() < end; ++i) one(i);
      });
    for (auto& th : threads) th.join();
  }

  int good_answered() const { return good_; }
  std::vector<std::string> failures() {
    std::lock_guard<std::mutex> lock(mu_);
    return failures_;
  }

 private:
  static constexpr const char* kAuth = "Authorization: Bearer soak-key\r\n";

  void fail(const std::string& what) {
    std::lock_guard<std::mutex> lock(mu_);
    if (failures_.size() < 20) failures_.push_back(what);
  }

  std::string request(const json& body, const std::string& headers = kAuth) {
    std::string b = body.dump();
    return "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers +
           "Content-Type: application/json\r\nContent-Length: " + std::to_string(b.size()) + "\r\n\r\n" + b;
  }

  void good(RawClient& raw, size_t k, bool stream) {
    json body = chat_body(user_text(prompts_[k]), 6);
    body["model"] = "soak";
    body["stream"] = stream;
    raw.send_raw(request(body));
    RawClient::Response r = raw.read_response(120);
    std::string text;
    if (stream) {
      for (const auto& e : sse_events(r.body))
        if (e.is_object() && e.contains("choices") && !e["choices"].empty() &&
            e["choices"][0]["delta"].contains("content"))
          text += e["choices"][0]["delta"]["content"].get<std::string>();
    } else if (r.j.is_object() && r.j.contains("choices")) {
      text = r.j["choices"][0]["message"]["content"];
    }
    if (r.status == 200 && text == answers_[k])
      ++good_;
    else
      fail("good request (stream=" + std::to_string(stream) + "): status " + std::to_string(r.status) + " text '" +
           text + "' want '" + answers_[k] + "' " + r.body.substr(0, 200));
  }

  void expect(RawClient& raw, int status, const std::string& what) {
    RawClient::Response r = raw.read_response(60);
    if (r.status != status) fail(what + ": status " + std::to_string(r.status) + " " + r.body.substr(0, 200));
  }

  void one(int i) {
    RawClient raw(port_);
    const size_t k = size_t(i) % prompts_.size();
    switch (i % 8) {
      case 0: good(raw, k, false); break;
      case 1: good(raw, k, true); break;
      case 2:  // bad JSON, then a good request on the same connection
        raw.send_raw("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + std::string(kAuth) +
                     "Content-Length: 9\r\n\r\n{\"model\":");
        expect(raw, 400, "bad JSON");
        good(raw, k, false);
        break;
      case 3: {  // a wrong key with a body that holds a request, then a good request
        std::string smuggled = "GET /v1/models HTTP/1.1\r\nHost: x\r\n" + std::string(kAuth) + "\r\n";
        raw.send_raw(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\n"
            "Content-Length: " +
            std::to_string(smuggled.size()) + "\r\n\r\n" + smuggled);
        expect(raw, 401, "wrong key");
        good(raw, k, true);
        break;
      }
      case 4: {  // a slow client: half a head, then silence until the server gives up
        raw.send_raw("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Le");
        RawClient::Response r = raw.read_response(30);
        if (r.status != 408 && r.status != -1) fail("slow client: status " + std::to_string(r.status));
        break;
      }
      case 5: {  // a client that leaves mid-stream
        json body = chat_body(user_text("Count."), 2000);
        body["model"] = "soak";
        body["ignore_eos"] = true;
        body["stream"] = true;
        raw.send_raw(request(body));
        raw.read_until("\"content\":\"", 60);
        raw.close();
        break;
      }
      case 6: {  // an image over the pixel limit
        json content =
            json::array({{{"type", "image_url"}, {"image_url", {{"url", data_url(fixture_image("wide_252x50.png"))}}}},
                         {{"type", "text"}, {"text", "What?"}}});
        json body = {{"model", "soak"}, {"messages", {{{"role", "user"}, {"content", content}}}}, {"max_tokens", 2}};
        raw.send_raw(request(body));
        expect(raw, 400, "oversized image");
        break;
      }
      case 7:  // a body over the limit
        raw.send_raw("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + std::string(kAuth) +
                     "Content-Length: " + std::to_string(64 << 20) + "\r\n\r\n" + std::string(1 << 16, ' '));
        expect(raw, 413, "oversized body");
        break;
    }
  }

  int port_;
  std::vector<std::string> prompts_, answers_;
  std::atomic<int> good_{0};
  std::mutex mu_;
  std::vector<std::string> failures_;
};

TEST(ServerSoak, MixedTrafficLeavesNoTrace) {
  SKIP_WITHOUT_FIXTURES();
  const std::vector<std::string> prompts = {"One", "Two words", "A third prompt"};
  std::vector<std::string> answers;
  GenerationParams p;
  p.max_tokens = 6;
  for (const auto& pr : prompts)
    answers.push_back(tiny_model().generate(tiny_model().prepare(UserInput::from_prompt(pr)), p).text);

  ServeProcess serve({"--model",
                      tiny_model_dir(),
                      "--host",
                      "127.0.0.1",
                      "--port",
                      "0",
                      "--alias",
                      "soak",
                      "--api-key",
                      "soak-key",
                      "--parallel",
                      "2",
                      "--queue",
                      "16",
                      "--timeout",
                      "3",
                      "--max-body-mb",
                      "2",
                      "--max-image-pixels",
                      "10000"});
  const int port = serve.port();
  ASSERT_GT(port, 0) << serve.log();
  MixedTraffic traffic(port, prompts, answers);
  auto settle = [&](const Usage& baseline) {
    // Idle: no slot busy, and kept-alive connections closed (the idle limit is 3 s here).
    Usage u = usage_of(serve.pid());
    for (int i = 0; i < 100 && u.fds > baseline.fds; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      u = usage_of(serve.pid());
    }
    return u;
  };
  traffic.run(6, 15);  // warm-up: every kind of request, every code path, the allocator's pools
  std::this_thread::sleep_for(std::chrono::seconds(4));
  const Usage warm = settle(Usage{0, 0, 1 << 30});
  traffic.run(6, 45);
  std::this_thread::sleep_for(std::chrono::seconds(4));
  const Usage after = settle(warm);

  for (const auto& f : traffic.failures()) ADD_FAILURE() << f;
  EXPECT_GT(traffic.good_answered(), 20);
  EXPECT_LE(after.threads, warm.threads) << "threads grew";
  EXPECT_LE(after.fds, warm.fds) << "open files grew";
  EXPECT_LE(after.rss_kb, warm.rss_kb * 11 / 10) << "RSS grew from " << warm.rss_kb << " kB to " << after.rss_kb;
  RecordProperty("good_requests", traffic.good_answered());
  RecordProperty("rss_kb_warm", int(warm.rss_kb));
  RecordProperty("rss_kb_after", int(after.rss_kb));
  // Still answering.
  httplib::Client c("127.0.0.1", port);
  auto res = c.Get("/health");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

#endif

}  // namespace
}  // namespace vlm::server::testing
