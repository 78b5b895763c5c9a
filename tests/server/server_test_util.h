// Shared pieces of the server tests: the fixture model, an in-process server on a free 127.0.0.1 port,
// HTTP helpers (httplib::Client and raw sockets) and server-sent-event parsing.
#pragma once
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "server/server.h"
#include "vlm/vlm.hpp"

namespace vlm::server::testing {

using nlohmann::json;
namespace fs = std::filesystem;

inline std::string shared_dir() {
  return VLM_SHARED_DIR;
}
inline std::string tiny_model_dir() {
  return shared_dir() + "/fixtures/qwen2_vl/tiny-bf16";
}
inline std::string fixture_image(const std::string& name) {
  return shared_dir() + "/fixtures/qwen2_vl/images/" + name;
}

#define SKIP_WITHOUT_FIXTURES()                                                      \
  do {                                                                               \
    if (!fs::exists(vlm::server::testing::tiny_model_dir()))                         \
      GTEST_SKIP() << "fixtures absent: " << vlm::server::testing::tiny_model_dir(); \
  } while (0)

// Loaded once: every test shares the weights (as the server's slots do).
inline const ModelContext& tiny_model() {
  static ModelContext ctx = ModelContext::load(tiny_model_dir());
  return ctx;
}

inline std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

inline std::string base64(const std::string& bytes) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    uint32_t v = uint8_t(bytes[i]) << 16 | uint8_t(bytes[i + 1]) << 8 | uint8_t(bytes[i + 2]);
    for (int k = 3; k >= 0; --k) out += t[(v >> (6 * k)) & 63];
  }
  if (i + 1 == bytes.size()) {
    uint32_t v = uint8_t(bytes[i]) << 16;
    out += t[v >> 18];
    out += t[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == bytes.size()) {
    uint32_t v = uint8_t(bytes[i]) << 16 | uint8_t(bytes[i + 1]) << 8;
    out += t[v >> 18];
    out += t[(v >> 12) & 63];
    out += t[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

inline std::string data_url(const std::string& path) {
  return "data:image/png;base64," + base64(read_file(path));
}

// A server on its own thread; shut down (gracefully) on destruction.
class TestServer {
 public:
  explicit TestServer(ServerOptions opts = {}, const ModelContext* model = nullptr) {
    opts.host = "127.0.0.1";
    opts.port = 0;
    if (opts.model_names.empty()) opts.model_names = {"tiny"};
    server_ = std::make_unique<Server>(model ? *model : tiny_model(), opts);
    port_ = server_->bind();
    thread_ = std::thread([this] { server_->run(); });
  }
  ~TestServer() {
    server_->shutdown();
    thread_.join();
  }
  Server& server() { return *server_; }
  int port() const { return port_; }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(60);
    c.set_write_timeout(60);
    return c;
  }
  // Polls until pred() or the timeout; returns pred().
  bool wait_for(const std::function<bool(const ServerCounters&)>& pred, double seconds = 10) {
    auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() < end) {
      if (pred(server_->counters())) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return pred(server_->counters());
  }

 private:
  std::unique_ptr<Server> server_;
  std::thread thread_;
  int port_ = 0;
};

inline json user_text(const std::string& text) {
  return json::array({{{"role", "user"}, {"content", text}}});
}

inline json chat_body(const json& messages, int max_tokens = 8) {
  return {{"model", "tiny"}, {"messages", messages}, {"max_tokens", max_tokens}};
}

struct HttpResult {
  int status = -1;
  std::string body;
  json j;  // parsed body (null if not JSON)
  httplib::Headers headers;
};

inline HttpResult post(httplib::Client& c, const std::string& body, const httplib::Headers& headers = {},
                       const std::string& path = "/v1/chat/completions") {
  HttpResult r;
  auto res = c.Post(path.c_str(), headers, body, "application/json");
  if (!res) return r;
  r.status = res->status;
  r.body = res->body;
  r.headers = res->headers;
  r.j = json::parse(r.body, nullptr, false);
  if (r.j.is_discarded()) r.j = nullptr;
  return r;
}

inline HttpResult post(httplib::Client& c, const json& body, const httplib::Headers& headers = {}) {
  return post(c, body.dump(), headers);
}

// The JSON payloads of a server-sent-event stream, "[DONE]" as the string "[DONE]".
inline std::vector<json> sse_events(const std::string& body) {
  std::vector<json> out;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find("\n\n", pos);
    if (end == std::string::npos) end = body.size();
    std::string ev = body.substr(pos, end - pos);
    pos = end + 2;
    if (ev.rfind("data: ", 0) != 0) continue;
    std::string data = ev.substr(6);
    out.push_back(data == "[DONE]" ? json("[DONE]") : json::parse(data));
  }
  return out;
}

// A bare TCP connection to the server, for clients that leave halfway.
class RawClient {
 public:
  explicit RawClient(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~RawClient() { close(); }
  bool ok() const { return fd_ >= 0; }
  void send_post(const std::string& body) {
    std::string req =
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Content-Length: " +
        std::to_string(body.size()) + "\r\n\r\n" + body;
    ASSERT_EQ(::send(fd_, req.data(), req.size(), MSG_NOSIGNAL), ssize_t(req.size()));
  }
  // Reads until `needle` has been received (or the timeout); returns everything read.
  std::string read_until(const std::string& needle, double seconds = 30) {
    timeval tv{0, 100 * 1000};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (received_.find(needle) == std::string::npos && std::chrono::steady_clock::now() < end) {
      char buf[4096];
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n == 0) break;
      if (n > 0) received_.append(buf, size_t(n));
    }
    return received_;
  }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int fd() const { return fd_; }
  // Sends raw bytes (a request, part of one, or several); false when the connection is gone.
  bool send_raw(const std::string& bytes) {
    return ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) == ssize_t(bytes.size());
  }
  // Stops sending (half-close) but keeps reading.
  void shutdown_write() { ::shutdown(fd_, SHUT_WR); }

  struct Response {
    int status = -1;  // -1: the connection ended (or the time ran out) before a whole response
    std::string head, body;
    json j;  // the body parsed (null if not JSON)
  };
  // Reads the next complete response (Content-Length or chunked body; none for HEAD or 1xx/204/304),
  // skipping interim 1xx responses. Waits at most `seconds`.
  Response read_response(double seconds = 30, bool head_request = false) {
    Response r;
    auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    auto fill = [&](size_t want) {  // until received_ holds `want` bytes
      while (received_.size() < want && std::chrono::steady_clock::now() < end) {
        if (!receive_some()) return false;
      }
      return received_.size() >= want;
    };
    while (true) {
      size_t head_end;
      while ((head_end = received_.find("\r\n\r\n")) == std::string::npos) {
        if (std::chrono::steady_clock::now() >= end || !receive_some()) return r;
      }
      std::string head = received_.substr(0, head_end + 4);
      received_.erase(0, head_end + 4);
      int status = std::atoi(head.c_str() + 9);
      if (status >= 100 && status < 200) continue;  // interim response
      r.head = head;
      std::string lower = head;
      for (auto& ch : lower) ch = char(std::tolower(uint8_t(ch)));
      if (head_request || status == 204 || status == 304) {
        r.status = status;
        return r;
      }
      size_t cl = lower.find("content-length:");
      if (cl != std::string::npos) {
        size_t n = size_t(std::atoll(lower.c_str() + cl + 15));
        if (!fill(n)) return r;
        r.body = received_.substr(0, n);
        received_.erase(0, n);
      } else if (lower.find("transfer-encoding: chunked") != std::string::npos) {
        while (true) {
          size_t nl;
          while ((nl = received_.find("\r\n")) == std::string::npos)
            if (std::chrono::steady_clock::now() >= end || !receive_some()) return r;
          size_t n = std::strtoul(received_.c_str(), nullptr, 16);
          if (!fill(nl + 2 + n + 2)) return r;
          r.body += received_.substr(nl + 2, n);
          received_.erase(0, nl + 2 + n + 2);
          if (n == 0) break;
        }
      }
      r.status = status;
      r.j = json::parse(r.body, nullptr, false);
      if (r.j.is_discarded()) r.j = nullptr;
      return r;
    }
  }
  // True when the server closed the connection (EOF or reset) within `seconds`, nothing else arriving.
  bool closed_by_server(double seconds) {
    auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() < end) {
      char buf[4096];
      timeval tv{0, 100 * 1000};
      setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) return true;
      if (n > 0) received_.append(buf, size_t(n));
    }
    return false;
  }

 private:
  bool receive_some() {
    timeval tv{0, 100 * 1000};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[65536];
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n > 0) received_.append(buf, size_t(n));
    if (n == 0) return false;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return false;
    return true;
  }

  int fd_ = -1;
  std::string received_;
};

#ifdef VLM_CLI_PATH
// A `vlm serve` child process with its stderr captured; killed if a test leaves it running.
class ServeProcess {
 public:
  explicit ServeProcess(const std::vector<std::string>& args) {
    int err_pipe[2];
    if (pipe(err_pipe) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(err_pipe[1], 2);
      close(err_pipe[0]);
      std::vector<char*> argv = {const_cast<char*>(VLM_CLI_PATH), const_cast<char*>("serve")};
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(VLM_CLI_PATH, argv.data());
      _exit(127);
    }
    close(err_pipe[1]);
    err_ = err_pipe[0];
    fcntl(err_, F_SETFL, O_NONBLOCK);
  }
  ~ServeProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (err_ >= 0) close(err_);
  }
  // Reads stderr until `needle` appears (or the time runs out); returns whether it did.
  bool wait_for_log(const std::string& needle, double seconds) {
    auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (log_.find(needle) == std::string::npos && std::chrono::steady_clock::now() < end) {
      if (!drain()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return log_.find(needle) != std::string::npos;
  }
  int port() {
    if (!wait_for_log("/v1 with", 60)) return 0;
    return std::atoi(log_.c_str() + log_.find("http://127.0.0.1:") + 17);
  }
  // Waits for the exit; returns the wait status, or -1 if it still runs after `seconds`.
  int wait_exit(double seconds) {
    auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() < end) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        drain();
        return status;
      }
      drain();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -1;
  }
  pid_t pid() const { return pid_; }
  const std::string& log() const { return log_; }

 private:
  bool drain() {
    char buf[4096];
    ssize_t n = read(err_, buf, sizeof buf);
    if (n > 0) log_.append(buf, size_t(n));
    return n > 0;
  }
  pid_t pid_ = -1;
  int err_ = -1;
  std::string log_;
};

#endif

}  // namespace vlm::server::testing
