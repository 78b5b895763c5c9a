// The server's prompt cache: a follow-up request carrying the conversation reuses its KV rows and
// answers as uncached generation does; concurrent conversations never share a cached sequence; the
// cache stays within its byte budget.
#include <atomic>
#include <mutex>

#include "server_test_util.h"

namespace vlm::server::testing {
namespace {

json user_image(const std::string& text, const std::string& image) {
  return {{"role", "user"},
          {"content", json::array({{{"type", "image_url"}, {"image_url", {{"url", data_url(image)}}}},
                                   {{"type", "text"}, {"text", text}}})}};
}

json user(const std::string& text) {
  return {{"role", "user"}, {"content", text}};
}

json assistant(const std::string& text) {
  return {{"role", "assistant"}, {"content", text}};
}

// The oracle: a fresh generation (no cache) of the same messages.
GenerationResult direct(const json& messages, int max_tokens) {
  GenerationParams p;
  p.max_tokens = max_tokens;
  return tiny_model().generate(UserInput::from_messages_json(messages.dump()), p);
}

int64_t cached_tokens(const HttpResult& r) {
  return r.j["usage"]["prompt_tokens_details"]["cached_tokens"].get<int64_t>();
}

TEST(ServerPromptCache, FollowUpReusesTheConversationAndAnswersAsUncached) {
  SKIP_WITHOUT_FIXTURES();
  ServerOptions uncached_opts;
  uncached_opts.cache_bytes = 0;
  TestServer cached, uncached(uncached_opts);
  auto c = cached.client(), u = uncached.client();

  json messages = json::array({user_image("Describe the image.", fixture_image("tie_70x98.png"))});
  HttpResult first = post(c, chat_body(messages, 10));
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_EQ(cached_tokens(first), 0);
  const int64_t first_prompt = first.j["usage"]["prompt_tokens"];
  const std::string answer = first.j["choices"][0]["message"]["content"];
  EXPECT_EQ(answer, direct(messages, 10).text);

  messages.push_back(assistant(answer));
  messages.push_back(user("And what else is there?"));
  HttpResult second = post(c, chat_body(messages, 10)), plain = post(u, chat_body(messages, 10));
  ASSERT_EQ(second.status, 200) << second.body;
  ASSERT_EQ(plain.status, 200) << plain.body;
  EXPECT_GE(cached_tokens(second), first_prompt);
  EXPECT_EQ(cached_tokens(plain), 0);
  EXPECT_EQ(second.j["choices"][0]["message"]["content"], plain.j["choices"][0]["message"]["content"]);
  EXPECT_EQ(second.j["choices"][0]["message"]["content"], direct(messages, 10).text);
  EXPECT_EQ(second.j["usage"]["prompt_tokens"], plain.j["usage"]["prompt_tokens"]);

  // The same image with another question shares the prompt up to the question; another image
  // only up to that image (its content differs, its token ids do not).
  json other = json::array({user_image("Describe the image.", fixture_image("small_40x30.png"))});
  HttpResult third = post(c, chat_body(other, 10));
  ASSERT_EQ(third.status, 200) << third.body;
  EXPECT_LT(cached_tokens(third), 20);
  EXPECT_EQ(third.j["choices"][0]["message"]["content"], direct(other, 10).text);
}

TEST(ServerPromptCache, ConcurrentConversationsNeverSeeEachOther) {
  SKIP_WITHOUT_FIXTURES();
  // Two conversations that differ only in their image's content (same size, so the same token
  // ids): a cache matched on ids alone would mix them up.
  const std::vector<std::string> images = {fixture_image("tie_70x98.png"), fixture_image("tall_60x200.png"),
                                           fixture_image("small_40x30.png"), fixture_image("wide_252x50.png")};
  const std::vector<std::string> questions = {"Describe the image.", "What colour is it?", "Anything else?"};
  std::vector<std::vector<json>> turns(images.size());
  std::vector<std::vector<std::string>> want(images.size());
  for (size_t k = 0; k < images.size(); ++k) {
    json messages = json::array();
    for (size_t q = 0; q < questions.size(); ++q) {
      messages.push_back(q == 0 ? user_image(questions[q], images[k]) : user(questions[q]));
      turns[k].push_back(messages);
      want[k].push_back(direct(messages, 6).text);
      messages.push_back(assistant(want[k].back()));
    }
  }
  ServerOptions opts;
  opts.parallel = 2;
  TestServer srv(opts);
  std::mutex mu;
  std::vector<std::string> failures;
  std::atomic<int> reused{0};
  std::vector<std::thread> threads;
  for (size_t k = 0; k < images.size(); ++k) {
    threads.emplace_back([&, k] {
      auto c = srv.client();
      for (int round = 0; round < 2; ++round)
        for (size_t q = 0; q < questions.size(); ++q) {
          HttpResult r = post(c, chat_body(turns[k][q], 6));
          const std::string text = r.status == 200 ? r.j["choices"][0]["message"]["content"].get<std::string>() : "";
          if (r.status == 200 && cached_tokens(r) > 0) ++reused;
          if (r.status != 200 || text != want[k][q]) {
            std::lock_guard<std::mutex> lock(mu);
            failures.push_back("conversation " + std::to_string(k) + " turn " + std::to_string(q) + ": status " +
                               std::to_string(r.status) + " '" + text + "', want '" + want[k][q] + "'");
          }
        }
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& f : failures) ADD_FAILURE() << f;
  EXPECT_GT(reused.load(), int(images.size() * questions.size()));
  EXPECT_EQ(srv.server().counters().peak_active, 2);
}

TEST(ServerPromptCache, StaysWithinItsBudget) {
  SKIP_WITHOUT_FIXTURES();
  GenerationParams p;
  p.max_tokens = 4;
  // One tiny-model sequence holds a few hundred KiB of KV rows: room for about two of them.
  PromptCache probe(tiny_model(), size_t(1) << 30);
  probe.generate(tiny_model().prepare(UserInput::from_prompt("Hello")), p);
  const size_t one = probe.bytes();
  ASSERT_GT(one, 0u);
  EXPECT_EQ(probe.entries(), 1u);

  PromptCache cache(tiny_model(), 2 * one + one / 2);
  const std::vector<std::string> prompts = {"One", "Two", "Three", "Four", "One"};
  for (const std::string& text : prompts) {
    const PreparedInput in = tiny_model().prepare(UserInput::from_prompt(text));
    EXPECT_EQ(cache.generate(in, p).text, tiny_model().generate(in, p).text) << text;
    EXPECT_LE(cache.bytes(), 2 * one + one / 2);
    EXPECT_LE(cache.entries(), 2u);
  }
  PromptCache none(tiny_model(), one / 2);  // no sequence fits: nothing is kept
  none.generate(tiny_model().prepare(UserInput::from_prompt("Hello")), p);
  EXPECT_EQ(none.entries(), 0u);
  EXPECT_EQ(none.bytes(), 0u);

  // The server reports what its cache holds, within --cache-mb.
  ServerOptions opts;
  opts.cache_bytes = int64_t(one);
  TestServer srv(opts);
  auto c = srv.client();
  for (const char* text : {"One", "Two"}) ASSERT_EQ(post(c, chat_body(user_text(text), 4)).status, 200);
  auto m = c.Get("/metrics");
  ASSERT_TRUE(m);
  const std::string key = "\nvlm_prompt_cache_bytes ";
  const size_t at = m->body.find(key);
  ASSERT_NE(at, std::string::npos) << m->body;
  const double held = std::stod(m->body.substr(at + key.size()));
  EXPECT_GT(held, 0);
  EXPECT_LE(held, double(one));
}

}  // namespace
}  // namespace vlm::server::testing
