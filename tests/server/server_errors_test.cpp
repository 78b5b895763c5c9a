// Bad input answered with OpenAI-shaped errors and the right status, without disturbing the server.
#include <sys/stat.h>

#include <atomic>

#include "server_test_util.h"

namespace vlm::server::testing {
namespace {

struct BadCase {
  std::string name;
  std::string body;
  int status;
  std::string code;   // "" = not checked
  std::string param;  // "" = not checked
};

json image_part(const std::string& url) {
  return {{"type", "image_url"}, {"image_url", {{"url", url}}}};
}

// (A vector, not a json: nlohmann turns a one-element brace list into the element itself.)
json with_parts(const std::vector<json>& parts, int max_tokens = 4) {
  json content = json::array();
  for (const auto& p : parts) content.push_back(p);
  return chat_body(json::array({{{"role", "user"}, {"content", content}}}), max_tokens);
}

void expect_error(const HttpResult& r, int status, const std::string& code, const std::string& param,
                  const std::string& what) {
  EXPECT_EQ(r.status, status) << what << ": " << r.body;
  ASSERT_TRUE(r.j.is_object() && r.j.contains("error")) << what << ": " << r.body;
  const json& e = r.j["error"];
  EXPECT_TRUE(e["message"].is_string() && !e["message"].get<std::string>().empty()) << what;
  EXPECT_TRUE(e["type"].is_string()) << what;
  EXPECT_TRUE(e.contains("param") && e.contains("code")) << what;
  if (!code.empty()) {
    EXPECT_EQ(e["code"], code) << what << ": " << r.body;
  }
  if (!param.empty()) {
    EXPECT_EQ(e["param"], param) << what << ": " << r.body;
  }
}

TEST(ServerErrors, BadRequestsGetOpenAiErrorsAndTheServerKeepsServing) {
  SKIP_WITHOUT_FIXTURES();
  ServerOptions opts;
  opts.max_body_bytes = 256 << 10;
  opts.media.max_images = 2;
  opts.media.max_image_pixels = 100 * 100;  // wide_252x50 (12600 px) is "oversized"
  opts.ctx_size = 64;
  TestServer srv(opts);
  auto c = srv.client();
  const std::string good_png = data_url(fixture_image("small_40x30.png"));
  const std::string long_text(2000, 'x');
  std::vector<BadCase> cases = {
      {"malformed JSON", "{\"model\": \"tiny\", \"messages\": [", 400, "invalid_json", ""},
      {"not an object", "[1, 2]", 400, "invalid_json", ""},
      {"empty body", "", 400, "invalid_json", ""},
      {"missing model", json{{"messages", user_text("hi")}}.dump(), 400, "missing", "model"},
      {"missing messages", json{{"model", "tiny"}}.dump(), 400, "missing", "messages"},
      {"empty messages", json{{"model", "tiny"}, {"messages", json::array()}}.dump(), 400, "invalid_value", "messages"},
      {"messages not a list", json{{"model", "tiny"}, {"messages", "hi"}}.dump(), 400, "invalid_type", "messages"},
      {"message not an object", json{{"model", "tiny"}, {"messages", {1}}}.dump(), 400, "invalid_type", "messages[0]"},
      {"missing role", json{{"model", "tiny"}, {"messages", {{{"content", "hi"}}}}}.dump(), 400, "missing",
       "messages[0].role"},
      {"bad role", json{{"model", "tiny"}, {"messages", {{{"role", "wizard"}, {"content", "hi"}}}}}.dump(), 400,
       "invalid_value", "messages[0].role"},
      {"content a number", json{{"model", "tiny"}, {"messages", {{{"role", "user"}, {"content", 5}}}}}.dump(), 400,
       "invalid_type", "messages[0].content"},
      {"unknown part type", with_parts({{{"type", "audio"}}}).dump(), 400, "invalid_value",
       "messages[0].content[0].type"},
      {"text part without text", with_parts({{{"type", "text"}}}).dump(), 400, "missing",
       "messages[0].content[0].text"},
      {"model wrong type", json{{"model", 7}, {"messages", user_text("hi")}}.dump(), 400, "invalid_type", "model"},
      {"unknown model", json{{"model", "gpt-4o"}, {"messages", user_text("hi")}}.dump(), 404, "model_not_found",
       "model"},
      {"temperature a string",
       [] {
         json b = chat_body(user_text("hi"));
         b["temperature"] = "hot";
         return b.dump();
       }(),
       400, "invalid_type", "temperature"},
      {"temperature out of range",
       [] {
         json b = chat_body(user_text("hi"));
         b["temperature"] = 7;
         return b.dump();
       }(),
       400, "invalid_value", "temperature"},
      {"max_tokens zero",
       [] {
         json b = chat_body(user_text("hi"));
         b["max_tokens"] = 0;
         return b.dump();
       }(),
       400, "invalid_value", "max_tokens"},
      {"max_tokens a float",
       [] {
         json b = chat_body(user_text("hi"));
         b["max_tokens"] = 2.5;
         return b.dump();
       }(),
       400, "invalid_type", "max_tokens"},
      {"n = 2",
       [] {
         json b = chat_body(user_text("hi"));
         b["n"] = 2;
         return b.dump();
       }(),
       400, "invalid_value", "n"},
      {"stream a string",
       [] {
         json b = chat_body(user_text("hi"));
         b["stream"] = "yes";
         return b.dump();
       }(),
       400, "invalid_type", "stream"},
      {"stop too many",
       [] {
         json b = chat_body(user_text("hi"));
         b["stop"] = {"a", "b", "c", "d", "e"};
         return b.dump();
       }(),
       400, "invalid_value", "stop"},
      {"top_logprobs without logprobs",
       [] {
         json b = chat_body(user_text("hi"));
         b["top_logprobs"] = 2;
         return b.dump();
       }(),
       400, "invalid_value", "top_logprobs"},
      {"bad base64", with_parts({image_part("data:image/png;base64,iVBOR*w0KGgo=")}).dump(), 400, "invalid_base64",
       "messages[0].content[0].image_url"},
      {"base64 bad padding", with_parts({image_part("data:image/png;base64,QUJD=")}).dump(), 400, "invalid_base64", ""},
      {"data URL not base64", with_parts({image_part("data:image/png,hello")}).dump(), 400, "invalid_image_url", ""},
      {"undecodable image", with_parts({image_part("data:image/png;base64," + base64("definitely not a png"))}).dump(),
       400, "invalid_image", "messages[0].content[0].image_url"},
      {"truncated PNG",
       with_parts(
           {image_part("data:image/png;base64," + base64(read_file(fixture_image("small_40x30.png")).substr(0, 60)))})
           .dump(),
       400, "invalid_image", ""},
      {"oversized image (pixels)", with_parts({image_part(data_url(fixture_image("wide_252x50.png")))}).dump(), 400,
       "image_too_large", ""},
      {"too many images", with_parts({image_part(good_png), image_part(good_png), image_part(good_png)}).dump(), 400,
       "too_many_images", ""},
      {"local path refused", with_parts({image_part(fixture_image("small_40x30.png"))}).dump(), 400, "", ""},
      {"file URL refused", with_parts({image_part("file://" + fixture_image("small_40x30.png"))}).dump(), 400, "", ""},
      {"unsupported scheme", with_parts({image_part("ftp://127.0.0.1/x.png")}).dump(), 400, "invalid_image_url", ""},
      {"prompt longer than the context", chat_body(user_text(long_text)).dump(), 400, "context_length_exceeded",
       "messages"},
      {"max_tokens beyond the context", chat_body(user_text("hi"), 500).dump(), 400, "context_length_exceeded",
       "max_tokens"},
      {"deeply nested JSON", std::string(100000, '[') + std::string(100000, ']'), 400, "invalid_json", ""},
      {"invalid UTF-8", "{\"model\": \"tiny\", \"messages\": \"\xff\xfe\"}", 400, "invalid_json", ""},
      {"body over the limit", std::string(300 << 10, ' '), 413, "request_too_large", ""},
  };
  for (const auto& bc : cases) {
    HttpResult r = post(c, bc.body);
    expect_error(r, bc.status, bc.code, bc.param, bc.name);
    // Still serving after each bad request.
    HttpResult ok = post(c, chat_body(user_text("hi"), 2));
    EXPECT_EQ(ok.status, 200) << "after '" << bc.name << "': " << ok.body;
  }
  // A good image and a small default completion still work within the tight context.
  HttpResult ok = post(c, with_parts({image_part(good_png), {{"type", "text"}, {"text", "What?"}}}, 3));
  EXPECT_EQ(ok.status, 200) << ok.body;
  auto res = c.Get("/v1/nope");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  EXPECT_TRUE(json::parse(res->body, nullptr, false).contains("error"));
  EXPECT_EQ(srv.server().counters().active, 0);
}

TEST(ServerErrors, ApiKey) {
  SKIP_WITHOUT_FIXTURES();
  ServerOptions opts;
  opts.api_key = "sk-test-123";
  TestServer srv(opts);
  auto c = srv.client();
  json body = chat_body(user_text("hi"), 2);
  expect_error(post(c, body), 401, "invalid_api_key", "", "no key");
  expect_error(post(c, body, {{"Authorization", "Bearer sk-wrong"}}), 401, "invalid_api_key", "", "wrong key");
  expect_error(post(c, body, {{"Authorization", "sk-test-123"}}), 401, "invalid_api_key", "", "not a bearer");
  EXPECT_EQ(post(c, body, {{"Authorization", "Bearer sk-test-123"}}).status, 200);
  auto res = c.Get("/v1/models");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 401);
  res = c.Get("/v1/models", {{"Authorization", "Bearer sk-test-123"}});
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  res = c.Get("/health");  // probes need no key
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

TEST(ServerErrors, LocalMediaConfinedToItsDirectory) {
  SKIP_WITHOUT_FIXTURES();
  fs::path root = fs::temp_directory_path() / ("vlm_server_media_" + std::to_string(::getpid()));
  fs::remove_all(root);
  fs::create_directories(root / "allowed" / "sub");
  fs::copy_file(fixture_image("small_40x30.png"), root / "allowed" / "sub" / "img.png");
  fs::copy_file(fixture_image("small_40x30.png"), root / "secret.png");
  fs::create_symlink(root / "secret.png", root / "allowed" / "link.png");
  ServerOptions opts;
  opts.media.local_media_dir = (root / "allowed").string();
  TestServer srv(opts);
  auto c = srv.client();
  auto ask = [&](const std::string& url) {
    return post(c, with_parts({image_part(url), {{"type", "text"}, {"text", "What?"}}}, 2));
  };
  EXPECT_EQ(ask((root / "allowed" / "sub" / "img.png").string()).status, 200);
  EXPECT_EQ(ask("sub/img.png").status, 200);  // relative to the media directory
  EXPECT_EQ(ask("file://" + (root / "allowed" / "sub" / "img.png").string()).status, 200);
  expect_error(ask((root / "allowed" / ".." / "secret.png").string()), 403, "path_not_allowed", "", "dot-dot");
  expect_error(ask("../secret.png"), 403, "path_not_allowed", "", "relative escape");
  expect_error(ask("link.png"), 403, "path_not_allowed", "", "symlink escape");
  expect_error(ask((root / "secret.png").string()), 403, "path_not_allowed", "", "absolute outside");
  // Missing, outside and missing-outside read the same (but for the path): no mapping of the file system.
  auto message_without_path = [](const HttpResult& r, const std::string& path) {
    std::string m = r.j["error"]["message"];
    size_t at = m.find(path);
    return at == std::string::npos ? m : m.erase(at, path.size());
  };
  const std::vector<std::string> refused = {"sub/missing.png", (root / "secret.png").string(),
                                            (root / "missing.png").string(), "../missing.png", "sub"};
  std::string first_message;
  for (const auto& path : refused) {
    HttpResult r = ask(path);
    expect_error(r, 403, "path_not_allowed", "", path);
    if (r.j.is_object()) {
      std::string m = message_without_path(r, path);
      if (first_message.empty()) first_message = m;
      EXPECT_EQ(m, first_message) << path;
    }
  }
  fs::remove_all(root);
}

TEST(ServerErrors, RemoteImagesFetchedWithinLimits) {
  SKIP_WITHOUT_FIXTURES();
  // A local HTTP server plays the remote host (127.0.0.1 only).
  httplib::Server media;
  const std::string png = read_file(fixture_image("small_40x30.png"));
  std::atomic<int> media_hits{0};
  media.Get("/img.png", [&](const httplib::Request&, httplib::Response& res) {
    ++media_hits;
    res.set_content(png, "image/png");
  });
  media.Get("/big.png", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(std::string(2 << 20, 'x'), "image/png");
  });
  media.Get("/slow.png", [&](const httplib::Request&, httplib::Response& res) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    res.set_content(png, "image/png");
  });
  int mport = media.bind_to_any_port("127.0.0.1");
  std::thread mt([&] { media.listen_after_bind(); });
  std::string base = "http://127.0.0.1:" + std::to_string(mport);

  ServerOptions opts;
  opts.media.max_image_bytes = 1 << 20;
  opts.media.fetch_timeout_s = 0.5;
  opts.media.allow_private_hosts = true;  // the "remote" host is this machine
  {
    TestServer srv(opts);
    auto c = srv.client();
    auto ask = [&](const std::string& url) {
      return post(c, with_parts({image_part(url), {{"type", "text"}, {"text", "What?"}}}, 2));
    };
    EXPECT_EQ(ask(base + "/img.png").status, 200);
    expect_error(ask(base + "/big.png"), 400, "image_too_large", "", "remote too large");
    expect_error(ask(base + "/missing.png"), 400, "image_fetch_failed", "", "remote 404");
    expect_error(ask(base + "/slow.png"), 400, "image_fetch_failed", "", "remote too slow");
  }
  // By default no private address is fetched, however it is spelled, and every failure reads the same.
  opts.media.allow_private_hosts = false;
  {
    int hits_before = media_hits;
    TestServer srv(opts);
    auto c = srv.client();
    const std::string port = std::to_string(mport);
    std::string refused_message;
    for (const std::string host : {"127.0.0.1", "localhost", "2130706433", "0x7f.1", "017700000001", "127.1",
                                   "[::ffff:127.0.0.1]", "[::1]", "0.0.0.0"}) {
      HttpResult r = post(c, with_parts({image_part("http://" + host + ":" + port + "/img.png")}, 2));
      expect_error(r, 400, "image_fetch_failed", "", host);
      if (r.j.is_object()) {
        if (refused_message.empty()) refused_message = r.j["error"]["message"];
        EXPECT_EQ(r.j["error"]["message"], refused_message) << host;
      }
    }
    EXPECT_EQ(media_hits, hits_before) << "a private address was fetched";
    // A closed port reads like a refused address (no port scanning through the server).
    HttpResult closed = post(c, with_parts({image_part("http://127.0.0.1:1/img.png")}, 2));
    expect_error(closed, 400, "image_fetch_failed", "", "closed port");
    if (closed.j.is_object()) {
      EXPECT_EQ(closed.j["error"]["message"], refused_message);
    }
  }
  opts.media.allow_remote = false;
  {
    TestServer srv(opts);
    auto c = srv.client();
    HttpResult r = post(c, with_parts({image_part(base + "/img.png")}, 2));
    expect_error(r, 400, "", "", "remote disabled");
  }
  media.stop();
  mt.join();
}

TEST(ServerErrors, OnlyPublicAddressesCountAsPublic) {
  auto v4 = [](const char* a) {
    sockaddr_in s{};
    s.sin_family = AF_INET;
    inet_pton(AF_INET, a, &s.sin_addr);
    return is_public_address(reinterpret_cast<sockaddr*>(&s));
  };
  auto v6 = [](const char* a) {
    sockaddr_in6 s{};
    s.sin6_family = AF_INET6;
    EXPECT_EQ(inet_pton(AF_INET6, a, &s.sin6_addr), 1) << a;
    return is_public_address(reinterpret_cast<sockaddr*>(&s));
  };
  for (const char* a : {"127.0.0.1", "127.255.255.254", "0.0.0.0", "10.1.2.3", "172.16.0.1", "172.31.255.255",
                        "192.168.1.1", "169.254.169.254", "100.64.0.1", "100.100.100.200", "224.0.0.1",
                        "239.255.255.250", "255.255.255.255", "240.0.0.1", "192.0.2.1", "198.18.0.1"})
    EXPECT_FALSE(v4(a)) << a;
  for (const char* a : {"8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "93.184.216.34"}) EXPECT_TRUE(v4(a)) << a;
  for (const char* a : {"::", "::1", "fe80::1", "fc00::1", "fd00:ec2::254", "ff02::1", "::ffff:127.0.0.1",
                        "::ffff:10.0.0.1", "::ffff:169.254.169.254", "64:ff9b::7f00:1", "2002:7f00:1::1", "2001:db8::1",
                        "2001::1", "::127.0.0.1", "fec0::1"})
    EXPECT_FALSE(v6(a)) << a;
  for (const char* a : {"2606:4700:4700::1111", "2a00:1450:4001::1", "::ffff:8.8.8.8", "64:ff9b::808:808"})
    EXPECT_TRUE(v6(a)) << a;
}

}  // namespace
}  // namespace vlm::server::testing
