// What one request may cost before work starts (issue #19 item 4), log-probabilities (item 7) and
// PaliGemma's single-turn prompts (item 9).
#include "server/chat_response.h"
#include "server_test_util.h"

namespace vlm::server::testing {
namespace {

json image_part(const std::string& url) {
  return {{"type", "image_url"}, {"image_url", {{"url", url}}}};
}

json with_parts(const std::vector<json>& parts, int max_tokens = 2) {
  json content = json::array();
  for (const auto& p : parts) content.push_back(p);
  return chat_body(json::array({{{"role", "user"}, {"content", content}}}), max_tokens);
}

TEST(ServerRequestCost, ImagesShareOnePixelBudgetPerRequest) {
  SKIP_WITHOUT_FIXTURES();
  ServerOptions opts;
  opts.media.max_request_pixels = 3000;  // small_40x30 is 1200 pixels: two fit, three do not
  TestServer srv(opts);
  auto c = srv.client();
  const json img = image_part(data_url(fixture_image("small_40x30.png")));
  const json text = {{"type", "text"}, {"text", "What?"}};
  EXPECT_EQ(post(c, with_parts({img, img, text})).status, 200);
  HttpResult r = post(c, with_parts({img, img, img, text}));
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(r.j["error"]["code"], "image_too_large") << r.body;
  EXPECT_EQ(r.j["error"]["param"], "messages[0].content[2].image_url") << r.body;
  EXPECT_NE(r.j["error"]["message"].get<std::string>().find("budget of 3000 pixels"), std::string::npos) << r.body;
}

TEST(ServerRequestCost, HugeTextIsRefusedBeforeTokenizing) {
  SKIP_WITHOUT_FIXTURES();
  ServerOptions opts;
  opts.ctx_size = 256;
  TestServer srv(opts);
  auto c = srv.client();
  // 8 MB of text cannot fit 256 tokens: refused from its size, without tokenizing it.
  HttpResult r = post(c, chat_body(user_text(std::string(8 << 20, 'a')), 2));
  EXPECT_EQ(r.status, 400) << r.body.substr(0, 300);
  EXPECT_EQ(r.j["error"]["code"], "context_length_exceeded");
  EXPECT_NE(r.j["error"]["message"].get<std::string>().find("bytes of text"), std::string::npos) << r.body;
  // Text that may fit still goes through the tokenizer (and is refused by the exact count if too long).
  r = post(c, chat_body(user_text(std::string(2000, 'x')), 2));
  EXPECT_EQ(r.j["error"]["code"], "context_length_exceeded") << r.body;
  EXPECT_EQ(r.j["error"]["message"].get<std::string>().find("bytes of text"), std::string::npos) << r.body;
  EXPECT_EQ(post(c, chat_body(user_text("hi"), 2)).status, 200);
}

TEST(ServerRequestCost, LogprobsOfIdsWithoutATokenReadAsEmpty) {
  SKIP_WITHOUT_FIXTURES();
  // The fixture's embedding has 151936 rows, more than the tokenizer has tokens (padding).
  const int32_t padding_id = int32_t(tiny_model().info().vocab_size - 1);
  TokenLogprob lp;
  lp.id = padding_id;
  lp.logprob = -1.5f;
  lp.top = {{padding_id, "", -1.5f}, {int32_t(1) << 30, "", -2.0f}, {9707, "", -3.0f}};
  json j = logprobs_json({lp}, tiny_model().text());
  ASSERT_EQ(j["content"].size(), 1u);
  EXPECT_EQ(j["content"][0]["token"], "");
  EXPECT_EQ(j["content"][0]["bytes"], json::array());
  EXPECT_EQ(j["content"][0]["top_logprobs"][1]["token"], "");
  EXPECT_EQ(j["content"][0]["top_logprobs"][2]["token"], tiny_model().text().decode({9707}));
}

// The bytes of the log-probability entries, concatenated.
std::string logprob_bytes(const json& content, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i)
    for (const auto& b : content[i]["bytes"]) out += char(b.get<int>());
  return out;
}

TEST(ServerRequestCost, LogprobsCoverTheContentTokensOnly) {
  SKIP_WITHOUT_FIXTURES();
  TestServer srv;
  auto c = srv.client();
  json body = chat_body(user_text("Hello there"), 12);
  HttpResult full = post(c, body);
  ASSERT_EQ(full.status, 200) << full.body;
  const std::string text = full.j["choices"][0]["message"]["content"];
  if (text.size() < 4) GTEST_SKIP() << "the fixture's greedy text is too short to cut: '" << text << "'";
  // A stop string from the middle (one whole UTF-8 character): the tokens that completed it are not content.
  size_t at = text.size() / 2;
  while (at > 0 && (uint8_t(text[at]) & 0xC0) == 0x80) --at;
  size_t len = 1;
  while (at + len < text.size() && (uint8_t(text[at + len]) & 0xC0) == 0x80) ++len;
  const std::string stop = text.substr(at, len);
  for (bool stream : {false, true}) {
    body["stop"] = json::array({stop});
    body["logprobs"] = true;
    body["stream"] = stream;
    HttpResult r = post(c, body);
    ASSERT_EQ(r.status, 200) << r.body;
    std::string content;
    json lp;
    if (stream) {
      for (const auto& e : sse_events(r.body)) {
        if (!e.is_object() || e["choices"].empty()) continue;
        const json& ch = e["choices"][0];
        if (ch["delta"].contains("content")) content += ch["delta"]["content"].get<std::string>();
        if (ch["logprobs"].is_object()) lp = ch["logprobs"]["content"];
      }
    } else {
      content = r.j["choices"][0]["message"]["content"];
      lp = r.j["choices"][0]["logprobs"]["content"];
    }
    ASSERT_EQ(content, text.substr(0, text.find(stop))) << "stream=" << stream;
    ASSERT_TRUE(lp.is_array()) << r.body;
    if (content.empty()) {
      EXPECT_TRUE(lp.empty()) << "stream=" << stream;
      continue;
    }
    ASSERT_FALSE(lp.empty());
    // The entries spell the content (the last may run into the stop string), and no entry is left over.
    EXPECT_EQ(logprob_bytes(lp, lp.size()).substr(0, content.size()), content) << "stream=" << stream;
    EXPECT_LT(logprob_bytes(lp, lp.size() - 1).size(), content.size()) << "stream=" << stream;
  }
}

TEST(ServerRequestCost, PaliGemmaRefusesWhatItWouldIgnore) {
  const std::string dir = shared_dir() + "/fixtures/paligemma/tiny-bf16";
  const std::string image = shared_dir() + "/fixtures/paligemma/images/answer_la_small.png";
  if (!fs::exists(dir) || !fs::exists(image)) GTEST_SKIP() << "fixtures absent: " << dir;
  ModelContext model = ModelContext::load(dir);
  TestServer srv({}, &model);
  auto c = srv.client();
  const json user = {{"role", "user"},
                     {"content", json::array({image_part(data_url(image)), {{"type", "text"}, {"text", "caption"}}})}};
  HttpResult ok = post(c, chat_body(json::array({user}), 2));
  EXPECT_EQ(ok.status, 200) << ok.body;
  struct Case {
    std::string name;
    json messages;
    std::string param;
  };
  std::vector<Case> cases = {
      {"system message", json::array({{{"role", "system"}, {"content", "Answer in French."}}, user}), "messages[0]"},
      {"earlier turns",
       json::array({user, {{"role", "assistant"}, {"content", "a cat"}}, {{"role", "user"}, {"content", "and?"}}}),
       "messages[0]"},
      {"ends with an assistant turn", json::array({user, {{"role", "assistant"}, {"content", "a"}}}), "messages[1]"},
  };
  for (const auto& cs : cases) {
    HttpResult r = post(c, chat_body(cs.messages, 2));
    EXPECT_EQ(r.status, 400) << cs.name << ": " << r.body;
    EXPECT_EQ(r.j["error"]["code"], "unsupported_message") << cs.name;
    EXPECT_EQ(r.j["error"]["param"], cs.param) << cs.name;
    EXPECT_NE(r.j["error"]["message"].get<std::string>().find("ignored"), std::string::npos) << cs.name;
  }
}

}  // namespace
}  // namespace vlm::server::testing
