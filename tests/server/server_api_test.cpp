// The happy paths of the OpenAI-compatible API against direct generation with the same parameters.
#include <atomic>
#include <mutex>

#include "server_test_util.h"

namespace vlm::server::testing {
namespace {

// Direct generation (the oracle): same model, same messages, same parameters.
GenerationResult direct(const std::string& text, const std::string& image, const GenerationParams& params) {
  UserInput in;
  UserInput::Message m;
  m.role = "user";
  if (!image.empty()) m.content.push_back(UserInput::Part::image_path(image));
  m.content.push_back(UserInput::Part::text_part(text));
  in.messages.push_back(m);
  return tiny_model().generate(in, params);
}

json image_messages(const std::string& text, const std::string& image) {
  json content = json::array(
      {{{"type", "image_url"}, {"image_url", {{"url", data_url(image)}}}}, {{"type", "text"}, {"text", text}}});
  return json::array({{{"role", "user"}, {"content", content}}});
}

TEST(ServerApi, NonStreamingMatchesDirectGenerate) {
  SKIP_WITHOUT_FIXTURES();
  GenerationParams greedy;
  greedy.max_tokens = 12;
  GenerationResult want_text = direct("Tell me a story.", "", greedy);
  GenerationResult want_image = direct("Describe the image.", fixture_image("tie_70x98.png"), greedy);
  GenerationParams sampled = greedy;
  sampled.sampling.temperature = 0.9f;
  sampled.sampling.top_p = 0.95f;
  sampled.sampling.seed = 1234;
  GenerationResult want_sampled = direct("Tell me a story.", "", sampled);

  TestServer srv;
  auto c = srv.client();
  HttpResult r = post(c, chat_body(user_text("Tell me a story."), 12));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.j["object"], "chat.completion");
  EXPECT_EQ(r.j["model"], "tiny");
  EXPECT_EQ(r.j["choices"].size(), 1u);
  EXPECT_EQ(r.j["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(r.j["choices"][0]["message"]["content"], want_text.text);
  EXPECT_EQ(r.j["choices"][0]["finish_reason"], want_text.finish_reason);
  EXPECT_EQ(r.j["usage"]["prompt_tokens"], want_text.stats.prompt_tokens);
  EXPECT_EQ(r.j["usage"]["completion_tokens"], int64_t(want_text.token_ids.size()));
  EXPECT_EQ(r.j["usage"]["total_tokens"], want_text.stats.prompt_tokens + int64_t(want_text.token_ids.size()));

  json body = chat_body(image_messages("Describe the image.", fixture_image("tie_70x98.png")), 12);
  r = post(c, body);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.j["choices"][0]["message"]["content"], want_image.text);
  EXPECT_EQ(r.j["usage"]["prompt_tokens"], want_image.stats.prompt_tokens);

  body = chat_body(user_text("Tell me a story."));
  body.erase("max_tokens");
  body["max_completion_tokens"] = 12;
  body["temperature"] = 0.9;
  body["top_p"] = 0.95;
  body["seed"] = 1234;
  r = post(c, body);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.j["choices"][0]["message"]["content"], want_sampled.text);
}

TEST(ServerApi, StreamingMatchesDirectGenerateAndEndsWithDone) {
  SKIP_WITHOUT_FIXTURES();
  GenerationParams p;
  p.max_tokens = 16;
  GenerationResult want = direct("Describe the image.", fixture_image("small_40x30.png"), p);
  TestServer srv;
  auto c = srv.client();
  for (bool include_usage : {false, true}) {
    json body = chat_body(image_messages("Describe the image.", fixture_image("small_40x30.png")), 16);
    body["stream"] = true;
    if (include_usage) body["stream_options"] = {{"include_usage", true}};
    HttpResult r = post(c, body);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_NE(r.headers.find("Content-Type")->second.find("text/event-stream"), std::string::npos);
    std::vector<json> ev = sse_events(r.body);
    ASSERT_GE(ev.size(), 3u);
    EXPECT_EQ(ev.back(), "[DONE]");
    EXPECT_EQ(ev[0]["choices"][0]["delta"]["role"], "assistant");
    std::string text;
    std::string finish;
    json usage = nullptr;
    for (size_t i = 0; i + 1 < ev.size(); ++i) {
      EXPECT_EQ(ev[i]["object"], "chat.completion.chunk");
      EXPECT_EQ(ev[i]["id"], ev[0]["id"]);
      EXPECT_EQ(ev[i].contains("usage"), include_usage);
      if (ev[i]["choices"].empty()) {
        usage = ev[i]["usage"];
        EXPECT_EQ(i + 2, ev.size()) << "the usage chunk comes last";
        continue;
      }
      const json& ch = ev[i]["choices"][0];
      if (ch["delta"].contains("content")) text += ch["delta"]["content"].get<std::string>();
      if (!ch["finish_reason"].is_null()) finish = ch["finish_reason"];
    }
    EXPECT_EQ(text, want.text);
    EXPECT_EQ(finish, want.finish_reason);
    if (include_usage) {
      ASSERT_TRUE(usage.is_object());
      EXPECT_EQ(usage["prompt_tokens"], want.stats.prompt_tokens);
      EXPECT_EQ(usage["completion_tokens"], int64_t(want.token_ids.size()));
    } else {
      EXPECT_TRUE(usage.is_null());
    }
  }
}

TEST(ServerApi, StopStringsAndLogprobs) {
  SKIP_WITHOUT_FIXTURES();
  GenerationParams p;
  p.max_tokens = 6;
  p.logprobs = true;
  p.top_logprobs = 3;
  GenerationResult want = direct("Hello there", "", p);
  ASSERT_FALSE(want.logprobs.empty());
  TestServer srv;
  auto c = srv.client();
  json body = chat_body(user_text("Hello there"), 6);
  body["logprobs"] = true;
  body["top_logprobs"] = 3;
  HttpResult r = post(c, body);
  ASSERT_EQ(r.status, 200) << r.body;
  const json& lp = r.j["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(lp.size(), want.logprobs.size());
  for (size_t i = 0; i < lp.size(); ++i) {
    EXPECT_NEAR(lp[i]["logprob"].get<double>(), want.logprobs[i].logprob, 1e-4);
    EXPECT_EQ(lp[i]["token"], tiny_model().text().decode({want.logprobs[i].id}));
    ASSERT_EQ(lp[i]["top_logprobs"].size(), 3u);
    EXPECT_GE(lp[i]["top_logprobs"][0]["logprob"].get<double>(), lp[i]["top_logprobs"][2]["logprob"].get<double>());
  }

  // A stop string cut from the greedy text: the answer ends before it.
  GenerationParams g;
  g.max_tokens = 12;
  std::string full = direct("Hello there", "", g).text;
  if (full.size() >= 4) {
    // One whole UTF-8 character from the middle (a random model's text need not be ASCII).
    size_t at = full.size() / 2;
    while (at > 0 && (uint8_t(full[at]) & 0xC0) == 0x80) --at;
    size_t len = 1;
    while (at + len < full.size() && (uint8_t(full[at + len]) & 0xC0) == 0x80) ++len;
    std::string stop = full.substr(at, len);
    body = chat_body(user_text("Hello there"), 12);
    body["stop"] = json::array({stop});
    r = post(c, body);
    ASSERT_EQ(r.status, 200) << r.body;
    std::string got = r.j["choices"][0]["message"]["content"];
    EXPECT_EQ(got, full.substr(0, full.find(stop)));
    EXPECT_EQ(r.j["choices"][0]["finish_reason"], "stop");
  }
}

TEST(ServerApi, ConcurrentClientsAllGetCompleteCorrectAnswers) {
  SKIP_WITHOUT_FIXTURES();
  const std::vector<std::string> prompts = {"One", "Two words", "A third prompt", "Four: the last"};
  std::vector<std::string> want;
  GenerationParams p;
  p.max_tokens = 6;
  for (const auto& pr : prompts) want.push_back(direct(pr, "", p).text);

  ServerOptions opts;
  opts.parallel = 2;
  TestServer srv(opts);
  constexpr int kClients = 8, kRequests = 5;
  std::atomic<int> good{0};
  std::mutex mu;
  std::vector<std::string> failures;
  std::vector<std::thread> threads;
  for (int t = 0; t < kClients; ++t) {
    threads.emplace_back([&, t] {
      auto c = srv.client();
      for (int i = 0; i < kRequests; ++i) {
        size_t k = size_t(t + i) % prompts.size();
        json body = chat_body(user_text(prompts[k]), 6);
        body["stream"] = (t % 2 == 1);
        HttpResult r = post(c, body);
        std::string text;
        if (r.status == 200 && body["stream"]) {
          auto ev = sse_events(r.body);
          for (const auto& e : ev)
            if (e.is_object() && !e["choices"].empty() && e["choices"][0]["delta"].contains("content"))
              text += e["choices"][0]["delta"]["content"].get<std::string>();
          if (ev.empty() || ev.back() != "[DONE]") text = "<no [DONE]>";
        } else if (r.status == 200) {
          text = r.j["choices"][0]["message"]["content"];
        }
        if (r.status == 200 && text == want[k]) {
          ++good;
        } else {
          std::lock_guard<std::mutex> lock(mu);
          failures.push_back("client " + std::to_string(t) + " request " + std::to_string(i) + ": status " +
                             std::to_string(r.status) + " text '" + text + "' want '" + want[k] + "'");
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (const auto& f : failures) ADD_FAILURE() << f;
  EXPECT_EQ(good, kClients * kRequests);
  ServerCounters n = srv.server().counters();
  EXPECT_EQ(n.requests, kClients * kRequests);
  EXPECT_EQ(n.completed, kClients * kRequests);
  EXPECT_EQ(n.failed, 0);
  EXPECT_EQ(n.peak_active, 2) << "both slots should have been busy at once";
  EXPECT_EQ(n.active, 0);
}

// Continuous batching: four streams at once on four slots decode in shared steps (the batch counters
// of /metrics say so) and each gets the answer it gets alone.
TEST(ServerApi, ConcurrentStreamsDecodeInSharedStepsAndGetTheirOwnAnswers) {
  SKIP_WITHOUT_FIXTURES();
  const std::vector<std::string> prompts = {"One", "Two words", "A third prompt", "Four: the last"};
  GenerationParams p;
  p.max_tokens = 16;
  p.ignore_eos = true;
  std::vector<std::string> want;
  for (const auto& pr : prompts) want.push_back(direct(pr, "", p).text);

  ServerOptions opts;
  opts.parallel = 4;
  TestServer srv(opts);
  std::vector<std::string> got(prompts.size());
  std::vector<std::thread> threads;
  for (size_t k = 0; k < prompts.size(); ++k)
    threads.emplace_back([&, k] {
      auto c = srv.client();
      json body = chat_body(user_text(prompts[k]), 16);
      body["stream"] = true;
      body["ignore_eos"] = true;
      HttpResult r = post(c, body);
      for (const auto& e : sse_events(r.body))
        if (e.is_object() && !e["choices"].empty() && e["choices"][0]["delta"].contains("content"))
          got[k] += e["choices"][0]["delta"]["content"].get<std::string>();
    });
  for (auto& t : threads) t.join();
  for (size_t k = 0; k < prompts.size(); ++k) EXPECT_EQ(got[k], want[k]) << prompts[k];

  auto c = srv.client();
  auto res = c.Get("/metrics");
  ASSERT_TRUE(res);
  auto value = [&](const std::string& name) {
    const size_t at = res->body.find("\n" + name + " ");
    return at == std::string::npos ? -1.0 : std::stod(res->body.substr(at + name.size() + 2));
  };
  EXPECT_EQ(value("vlm_decode_batch_tokens_total"), 4 * 15);
  EXPECT_LT(value("vlm_decode_batches_total"), 4 * 15) << "the streams never shared a step";
  EXPECT_GE(value("vlm_decode_batch_size_max"), 2);
}

TEST(ServerApi, ModelsHealthAndCors) {
  SKIP_WITHOUT_FIXTURES();
  {
    TestServer srv;
    auto c = srv.client();
    auto res = c.Get("/v1/models");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 200);
    json j = json::parse(res->body);
    EXPECT_EQ(j["object"], "list");
    ASSERT_EQ(j["data"].size(), 1u);
    EXPECT_EQ(j["data"][0]["id"], "tiny");
    EXPECT_EQ(j["data"][0]["object"], "model");
    res = c.Get("/health");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 200);
    EXPECT_EQ(json::parse(res->body)["status"], "ok");
    EXPECT_FALSE(res->has_header("Access-Control-Allow-Origin")) << "CORS is off unless asked for";
    res = c.Options("/v1/chat/completions");  // answered (Allow), but no CORS grant
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 204);
    EXPECT_FALSE(res->has_header("Access-Control-Allow-Origin"));
  }
  ServerOptions opts;
  opts.cors_origin = "http://localhost:3000";
  TestServer srv(opts);
  auto c = srv.client();
  auto res = c.Get("/v1/models");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->get_header_value("Access-Control-Allow-Origin"), "http://localhost:3000");
  res = c.Options("/v1/chat/completions");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 204);
  EXPECT_NE(res->get_header_value("Access-Control-Allow-Headers").find("Authorization"), std::string::npos);
}

}  // namespace
}  // namespace vlm::server::testing

namespace vlm::server::testing {
namespace {

// A long prompt prefills in chunks and yields the compute turn between them: a short request on
// the other slot, sent after the long one started, is answered before the long one is.
TEST(ServerApi, LongPromptDoesNotStallTheOtherSlot) {
  SKIP_WITHOUT_FIXTURES();
  ServerOptions opts;
  opts.parallel = 2;
  TestServer srv(opts);
  // ~24k tokens (~47 prefill chunks of 512); sanitizer builds run ~20x slower, so fewer there.
#if defined(__SANITIZE_ADDRESS__)
  constexpr int kWords = 4000;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  constexpr int kWords = 4000;
#else
  constexpr int kWords = 24000;
#endif
#else
  constexpr int kWords = 24000;
#endif
  std::string long_text;
  for (int i = 0; i < kWords; ++i) long_text += "word ";
  std::atomic<bool> long_done{false};
  std::atomic<bool> short_before_long{false};
  std::thread long_request([&] {
    auto c = srv.client();
    c.set_read_timeout(600);  // the long prefill may take a while on a slow or sanitized build
    HttpResult r = post(c, chat_body(user_text(long_text), 1));
    EXPECT_EQ(r.status, 200) << r.body.substr(0, 300);
    long_done = true;
  });
  ASSERT_TRUE(srv.wait_for([](const ServerCounters& s) { return s.active >= 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the long prefill is under way
  {
    auto c = srv.client();
    HttpResult r = post(c, chat_body(user_text("Hi"), 2));
    EXPECT_EQ(r.status, 200);
    short_before_long = !long_done.load();
  }
  long_request.join();
  EXPECT_TRUE(short_before_long) << "the short request waited for the whole long prefill";
}

}  // namespace
}  // namespace vlm::server::testing
