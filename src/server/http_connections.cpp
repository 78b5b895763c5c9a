#include "server/http_connections.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "server/api_error.h"
#include "server/chat_response.h"

namespace vlm::server {

namespace {

using Clock = std::chrono::steady_clock;

Clock::duration seconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(uint8_t(a[i])) != std::tolower(uint8_t(b[i]))) return false;
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool is_token_char(char ch) {
  const auto c = uint8_t(ch);
  if (c <= 32 || c >= 127) return false;
  return std::string_view("\"(),/:;<=>?@[\\]{}").find(ch) == std::string_view::npos;
}

// A comma-separated header value contains `token` (case-insensitive), as in "Connection: keep-alive, Upgrade".
bool list_contains(std::string_view value, std::string_view token) {
  while (!value.empty()) {
    size_t comma = value.find(',');
    if (iequals(trim(value.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

RequestHead head_error(int status, std::string message) {
  RequestHead h;
  h.status = RequestHead::Status::kError;
  h.error_status = status;
  h.error_message = std::move(message);
  return h;
}

const char* reason_phrase(int status) {
  switch (status) {
    case 400: return "Bad Request";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
  }
}

std::string error_code(int status) {
  switch (status) {
    case 408: return "request_timeout";
    case 413: return "request_too_large";
    case 414: return "uri_too_long";
    case 431: return "headers_too_large";
    case 501: return "method_not_implemented";
    case 503: return "server_overloaded";
    default: return "invalid_http_request";
  }
}

}  // namespace

RequestHead parse_request_head(std::string_view buf, int64_t max_head_bytes) {
  // The request line is bounded like cpp-httplib's (it answers longer ones itself, less strictly).
  constexpr size_t kMaxRequestLine = 8192;
  size_t pos = 0;
  while (pos < buf.size() && (buf[pos] == '\r' || buf[pos] == '\n')) ++pos;  // empty lines before a request
  if (pos >= 64) return head_error(400, "too many empty lines before the request line");
  std::vector<std::string_view> lines;
  size_t line_start = pos;
  bool complete = false;
  while (true) {
    size_t nl = buf.find('\n', line_start);
    if (nl == std::string_view::npos) break;
    std::string_view line = buf.substr(line_start, nl - line_start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    line_start = nl + 1;
    if (line.empty()) {
      complete = true;
      break;
    }
    if (lines.empty() && line.size() > kMaxRequestLine) return head_error(414, "the request line is too long");
    lines.push_back(line);
    if (int64_t(line_start) > max_head_bytes) break;
  }
  if (!complete) {
    if (int64_t(buf.size()) > max_head_bytes)
      return head_error(431, "the request head is larger than " + std::to_string(max_head_bytes) + " bytes");
    if (lines.empty() && buf.size() - pos > kMaxRequestLine) return head_error(414, "the request line is too long");
    return {};
  }
  if (int64_t(line_start) > max_head_bytes)
    return head_error(431, "the request head is larger than " + std::to_string(max_head_bytes) + " bytes");

  RequestHead h;
  h.head_bytes = line_start;
  // Request line: METHOD SP target SP HTTP/x.y, single spaces.
  std::string_view rl = lines[0];
  size_t sp1 = rl.find(' '), sp2 = sp1 == std::string_view::npos ? sp1 : rl.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || rl.find(' ', sp2 + 1) != std::string_view::npos)
    return head_error(400, "malformed request line");
  h.method = std::string(rl.substr(0, sp1));
  h.target = std::string(rl.substr(sp1 + 1, sp2 - sp1 - 1));
  h.version = std::string(rl.substr(sp2 + 1));
  if (h.method.empty() || !std::all_of(h.method.begin(), h.method.end(), is_token_char) || h.target.empty())
    return head_error(400, "malformed request line");
  for (char c : h.target)
    if (uint8_t(c) <= 32 || uint8_t(c) == 127) return head_error(400, "malformed request target");
  if (h.version != "HTTP/1.1" && h.version != "HTTP/1.0") {
    if (h.version.rfind("HTTP/", 0) == 0) return head_error(505, "only HTTP/1.0 and HTTP/1.1 are supported");
    return head_error(400, "malformed request line");
  }
  h.keep_alive = h.version == "HTTP/1.1";
  // The methods cpp-httplib knows (it would answer others with a bare 400).
  static const char* const kMethods[] = {"GET",     "HEAD",  "POST",  "PUT",    "DELETE",
                                         "OPTIONS", "PATCH", "TRACE", "CONNECT"};
  if (std::none_of(std::begin(kMethods), std::end(kMethods), [&](const char* m) { return h.method == m; }))
    return head_error(501, "the method " + h.method + " is not implemented");

  h.normalized.reserve(line_start + 32);
  h.normalized.append(rl).append("\r\n");
  bool have_length = false;
  for (size_t i = 1; i < lines.size(); ++i) {
    std::string_view line = lines[i];
    if (line.front() == ' ' || line.front() == '\t') return head_error(400, "obsolete header line folding");
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return head_error(400, "malformed header line");
    std::string_view name = line.substr(0, colon);
    if (!std::all_of(name.begin(), name.end(), is_token_char)) return head_error(400, "malformed header name");
    std::string_view value = trim(line.substr(colon + 1));
    for (char c : value)
      if (c == '\0' || c == '\r') return head_error(400, "malformed header value");
    if (iequals(name, "Content-Length")) {
      if (value.empty() || value.size() > 18 || !std::all_of(value.begin(), value.end(), ::isdigit))
        return head_error(400, "malformed Content-Length");
      int64_t n = std::stoll(std::string(value));
      if (have_length && n != h.content_length) return head_error(400, "conflicting Content-Length headers");
      have_length = true;
      h.content_length = n;
      continue;
    }
    if (iequals(name, "Transfer-Encoding")) {
      if (!iequals(value, "chunked") || h.chunked)
        return head_error(501, "only 'Transfer-Encoding: chunked' is supported for request bodies");
      h.chunked = true;
      continue;
    }
    if (iequals(name, "Expect")) {
      if (!iequals(value, "100-continue")) return head_error(417, "only 'Expect: 100-continue' is supported");
      h.expect_continue = true;
      continue;
    }
    if (iequals(name, "Connection")) {
      if (list_contains(value, "close")) h.keep_alive = false;
      if (list_contains(value, "keep-alive") && h.version == "HTTP/1.0") h.keep_alive = true;
    }
    h.normalized.append(name).append(": ").append(value).append("\r\n");
  }
  if (h.chunked && have_length) return head_error(400, "both Content-Length and Transfer-Encoding given");
  if (h.chunked && h.version == "HTTP/1.0") return head_error(400, "chunked bodies need HTTP/1.1");
  h.status = RequestHead::Status::kComplete;
  return h;
}

ChunkedBodyDecoder::Status ChunkedBodyDecoder::feed(std::string_view in, size_t& pos, std::string& body) {
  constexpr size_t kMaxLine = 4096;  // chunk-size line with extensions, or one trailer line
  while (state_ != State::kDone) {
    if (state_ == State::kData) {
      size_t n = std::min<size_t>(size_t(remaining_), in.size() - pos);
      body.append(in.substr(pos, n));
      pos += n;
      remaining_ -= int64_t(n);
      if (remaining_ > 0) return Status::kNeedMore;
      state_ = State::kDataEnd;
      continue;
    }
    size_t nl = in.find('\n', pos);
    if (nl == std::string_view::npos) return in.size() - pos > kMaxLine ? Status::kError : Status::kNeedMore;
    std::string_view line = in.substr(pos, nl - pos);
    if (line.size() > kMaxLine) return Status::kError;
    pos = nl + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    switch (state_) {
      case State::kSize: {
        std::string_view digits = trim(line.substr(0, line.find(';')));
        if (digits.empty() || digits.size() > 15) return Status::kError;
        int64_t size = 0;
        for (char c : digits) {
          int v = std::isdigit(uint8_t(c)) ? c - '0'
                  : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                  : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                           : -1;
          if (v < 0) return Status::kError;
          size = size * 16 + v;
        }
        if (int64_t(body.size()) + size > max_body_bytes_) return Status::kTooLarge;
        remaining_ = size;
        state_ = size == 0 ? State::kTrailer : State::kData;
        break;
      }
      case State::kDataEnd:
        if (!line.empty()) return Status::kError;
        state_ = State::kSize;
        break;
      case State::kTrailer:
        if (line.empty()) state_ = State::kDone;
        break;
      default: break;
    }
  }
  return Status::kComplete;
}

// ---------------------------------------------------------------------------------------------------------
// Connections and the reactor.

struct Connection {
  enum class State { kReading, kWaitingForBudget, kAnswering, kLingering };
  int fd = -1;
  State state = State::kReading;
  std::string remote_addr, local_addr;
  int remote_port = 0, local_port = 0;
  std::string in;     // bytes received and not yet framed (the head being read, pipelined requests)
  size_t in_pos = 0;  // framed up to here
  Clock::time_point deadline;
  bool request_started = false;  // a byte of the current request arrived (its time limit runs)
  int requests_served = 0;

  // The request being read or answered.
  RequestHead head;
  bool head_complete = false;
  std::string body;
  std::unique_ptr<ChunkedBodyDecoder> chunked;
  std::shared_ptr<void> reservation;  // the body's share of the memory budget
  int64_t reserved_bytes = 0;

  // While answering (worker thread).
  size_t stream_pos = 0;  // of head.normalized, then of body
  bool body_taken = false;
  int64_t response_bytes = 0;  // written to the socket
  bool write_failed = false;
  bool probed_with_continue = false;
  Clock::duration write_timeout{};

  void reset_request() {
    head = RequestHead{};
    head_complete = false;
    std::string().swap(body);
    chunked.reset();
    reservation.reset();
    reserved_bytes = 0;
    stream_pos = 0;
    body_taken = false;
    response_bytes = 0;
    write_failed = false;
    probed_with_continue = false;
    request_started = false;
  }
};

namespace {

thread_local ActiveRequest* t_active_request = nullptr;

// Writes all of `data` to a non-blocking socket, waiting for room at most `timeout` at a time.
bool write_all(int fd, const char* data, size_t size, Clock::duration timeout) {
  while (size > 0) {
    ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n > 0) {
      data += n;
      size -= size_t(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{fd, POLLOUT, 0};
      int ms = int(std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count());
      int r = ::poll(&p, 1, std::max(ms, 1));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0 || (p.revents & (POLLERR | POLLHUP | POLLNVAL))) return false;
      continue;
    }
    return false;
  }
  return true;
}

// The complete request as cpp-httplib reads it: the normalized head, then the body (unless a handler took
// it). Responses go straight to the socket.
class BufferedRequestStream : public httplib::Stream {
 public:
  explicit BufferedRequestStream(Connection& c) : c_(c) {}
  bool is_readable() const override { return true; }
  bool is_writable() const override {
    pollfd p{c_.fd, POLLOUT, 0};
    int ms = int(std::chrono::duration_cast<std::chrono::milliseconds>(c_.write_timeout).count());
    return !c_.write_failed && ::poll(&p, 1, ms) > 0 && !(p.revents & (POLLERR | POLLHUP | POLLNVAL));
  }
  ssize_t read(char* ptr, size_t size) override {
    const std::string& head = c_.head.normalized;
    if (c_.stream_pos < head.size()) {
      size_t n = std::min(size, head.size() - c_.stream_pos);
      std::copy_n(head.data() + c_.stream_pos, n, ptr);
      c_.stream_pos += n;
      return ssize_t(n);
    }
    if (c_.body_taken) return 0;
    size_t at = c_.stream_pos - head.size();
    size_t n = std::min(size, c_.body.size() - std::min(at, c_.body.size()));
    std::copy_n(c_.body.data() + at, n, ptr);
    c_.stream_pos += n;
    return ssize_t(n);
  }
  ssize_t write(const char* ptr, size_t size) override {
    if (c_.write_failed || !write_all(c_.fd, ptr, size, c_.write_timeout)) {
      c_.write_failed = true;
      return -1;
    }
    c_.response_bytes += int64_t(size);
    return ssize_t(size);
  }
  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    ip = c_.remote_addr;
    port = c_.remote_port;
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    ip = c_.local_addr;
    port = c_.local_port;
  }
  socket_t socket() const override { return c_.fd; }

 private:
  Connection& c_;
};

void describe(const sockaddr_storage& a, std::string& addr, int& port) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (a.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&a);
    inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
    port = ntohs(in->sin_port);
  } else if (a.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&a);
    inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
    port = ntohs(in6->sin6_port);
  }
  addr = buf;
}

// Binds like cpp-httplib but without SO_REUSEPORT, which would let a second server share the port.
void exclusive_socket_options(socket_t sock) {
  int yes = 1;
  setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);  // restarts while old connections linger
}

// Tasks run on the thread that enqueues them: cpp-httplib's only task is "serve this accepted socket",
// which here just hands the socket to the reactor.
class InlineTaskQueue : public httplib::TaskQueue {
 public:
  void enqueue(std::function<void()> fn) override { fn(); }
  void shutdown() override {}
};

}  // namespace

ActiveRequest::ActiveRequest(Connection& c) : c_(c) {
  t_active_request = this;
}
ActiveRequest::~ActiveRequest() {
  t_active_request = nullptr;
}
ActiveRequest* ActiveRequest::current() {
  return t_active_request;
}

RequestBody ActiveRequest::take_body() {
  if (c_.body_taken) return {};
  c_.body_taken = true;
  return RequestBody(std::move(c_.body), std::move(c_.reservation));
}

bool ActiveRequest::client_gone() {
  if (c_.write_failed) return true;
  pollfd p{c_.fd, POLLRDHUP, 0};
  if (::poll(&p, 1, 0) <= 0) return false;
  if (p.revents & (POLLERR | POLLHUP | POLLNVAL)) return true;
  if (!(p.revents & POLLRDHUP)) return false;
  // The peer will send nothing more: closed, or only half-closed. Before any response byte an interim
  // response can ask; after that the response's own writes do (a closed peer resets the connection).
  if (c_.response_bytes == 0 && !c_.probed_with_continue && c_.head.version == "HTTP/1.1") {
    c_.probed_with_continue = true;
    static const char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
    if (::send(c_.fd, kContinue, sizeof kContinue - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) return true;
  }
  return false;
}

struct ReactorHttpServer::Reactor {
  ReactorHttpServer& server;
  ConnectionLimits limits;
  int wake_fd = -1;

  std::mutex mutex;  // guards the queues and counters below
  std::deque<int> accepted;
  std::deque<std::unique_ptr<Connection>> ready;     // complete requests for the workers
  std::deque<std::unique_ptr<Connection>> answered;  // back from the workers
  std::condition_variable ready_cv;
  int answering = 0;
  int64_t budget_used = 0;
  bool stopping = false;
  std::atomic<int> open{0};

  std::unordered_map<int, std::unique_ptr<Connection>> connections;  // reactor thread only
  std::thread reactor_thread;
  std::vector<std::thread> workers;
  std::once_flag stop_once;

  Reactor(ReactorHttpServer& s, ConnectionLimits l) : server(s), limits(std::move(l)) {
    if (limits.body_memory_budget <= 0) limits.body_memory_budget = 2 * limits.max_body_bytes;
    limits.body_memory_budget = std::max(limits.body_memory_budget, limits.max_body_bytes);
    wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd < 0) throw std::runtime_error("vlm serve: eventfd failed");
    reactor_thread = std::thread([this] { run(); });
    for (int i = 0; i < std::max(1, limits.workers); ++i) workers.emplace_back([this] { work(); });
  }

  void wake() {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_fd, &one, sizeof one);
  }

  // A share of the body budget, returned (and the reactor woken) when the last holder lets go.
  struct BudgetShare {
    Reactor* reactor;
    int64_t bytes;
    BudgetShare(Reactor* r, int64_t n) : reactor(r), bytes(n) {}
    BudgetShare(const BudgetShare&) = delete;
    BudgetShare& operator=(const BudgetShare&) = delete;
    ~BudgetShare() {
      {
        std::lock_guard<std::mutex> lock(reactor->mutex);
        reactor->budget_used -= bytes;
      }
      reactor->wake();
    }
  };
  std::shared_ptr<void> reserve(int64_t bytes) {
    std::lock_guard<std::mutex> lock(mutex);
    if (budget_used + bytes > limits.body_memory_budget) return nullptr;
    budget_used += bytes;
    return std::make_shared<BudgetShare>(this, bytes);
  }

  void close_connection(int fd) {
    connections.erase(fd);
    ::close(fd);
    --open;
  }

  // An error answered here, with "Connection: close"; the connection lingers to let the client read it.
  void fail_request(Connection& c, int status, const std::string& message) {
    std::string body = dump_json(ApiError(status, message, "", error_code(status)).to_json());
    std::string r = "HTTP/1.1 " + std::to_string(status) + " " + reason_phrase(status) + "\r\n";
    for (const auto& [k, v] : limits.extra_headers) r += k + ": " + v + "\r\n";
    r += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\nConnection: close\r\n\r\n" + body;
    ::send(c.fd, r.data(), r.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    linger(c);
  }

  // Stops sending and discards what the client still sends for a moment, so that closing does not reset
  // the connection (which could destroy the response before the client read it).
  void linger(Connection& c) {
    ::shutdown(c.fd, SHUT_WR);
    c.reset_request();
    c.state = Connection::State::kLingering;
    c.deadline = Clock::now() + seconds(std::min(2.0, limits.request_timeout_s));
  }

  void start_waiting(Connection& c) {
    c.state = Connection::State::kReading;
    c.deadline = Clock::now() + seconds(c.requests_served == 0 ? limits.request_timeout_s : limits.keep_alive_idle_s);
  }

  void adopt(int fd) {
    int flags = fcntl(fd, F_GETFL, 0);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    auto c = std::make_unique<Connection>();
    c->fd = fd;
    c->write_timeout = seconds(limits.request_timeout_s);
    sockaddr_storage a{};
    socklen_t len = sizeof a;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) describe(a, c->remote_addr, c->remote_port);
    len = sizeof a;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) describe(a, c->local_addr, c->local_port);
    start_waiting(*c);
    ++open;
    Connection& ref = *c;
    connections[fd] = std::move(c);
    if (open > limits.max_connections) make_room(ref);
  }

  // Over the connection limit: drop the connection that has waited longest without completing a request
  // (a slow or idle client), so new clients keep getting in; if every connection is busy, refuse the new one.
  void make_room(Connection& newcomer) {
    Connection* victim = nullptr;
    for (auto& [fd, c] : connections)
      if (c.get() != &newcomer && c->state != Connection::State::kAnswering &&
          (!victim || c->deadline < victim->deadline))
        victim = c.get();
    if (victim) {
      close_connection(victim->fd);
    } else {
      fail_request(newcomer, 503, "The server has too many open connections; retry later.");
    }
  }

  void dispatch(Connection& c) {
    c.state = Connection::State::kAnswering;
    std::unique_ptr<Connection> owned = std::move(connections[c.fd]);
    connections.erase(c.fd);
    std::lock_guard<std::mutex> lock(mutex);
    ++answering;
    ready.push_back(std::move(owned));
    ready_cv.notify_one();
  }

  // Frames as much of the buffered input as possible; dispatches a complete request.
  void advance(Connection& c) {
    if (c.state != Connection::State::kReading && c.state != Connection::State::kWaitingForBudget) return;
    std::string_view in = std::string_view(c.in).substr(c.in_pos);
    if (!c.head_complete) {
      if (!in.empty() && !c.request_started) {
        c.request_started = true;
        c.deadline = Clock::now() + seconds(limits.request_timeout_s);
      }
      RequestHead h = parse_request_head(in, limits.max_head_bytes);
      if (h.status == RequestHead::Status::kNeedMore) return;
      if (h.status == RequestHead::Status::kError) return fail_request(c, h.error_status, h.error_message);
      c.in_pos += h.head_bytes;
      c.head = std::move(h);
      c.head_complete = true;
      if (c.head.content_length > limits.max_body_bytes)
        return fail_request(
            c, 413,
            "The request body is larger than the limit of " + std::to_string(limits.max_body_bytes) + " bytes.");
      if (c.head.chunked) c.chunked = std::make_unique<ChunkedBodyDecoder>(limits.max_body_bytes);
    }
    const bool has_body = c.head.chunked || c.head.content_length > 0;
    if (has_body && !c.reservation) {
      // Chunked bodies do not say their size: they reserve the most they may grow to.
      int64_t want = c.head.chunked ? limits.max_body_bytes : c.head.content_length;
      c.reservation = reserve(want);
      if (!c.reservation) {
        c.state = Connection::State::kWaitingForBudget;  // not read until memory is returned
        return;
      }
      c.reserved_bytes = want;
      c.state = Connection::State::kReading;
      if (!c.head.chunked) c.body.reserve(size_t(want));
      if (c.head.expect_continue) {
        static const char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
        ::send(c.fd, kContinue, sizeof kContinue - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
      }
    }
    in = std::string_view(c.in).substr(c.in_pos);
    if (c.head.chunked) {
      size_t pos = 0;
      auto st = c.chunked->feed(in, pos, c.body);
      c.in_pos += pos;
      if (st == ChunkedBodyDecoder::Status::kError) return fail_request(c, 400, "malformed chunked request body");
      if (st == ChunkedBodyDecoder::Status::kTooLarge)
        return fail_request(
            c, 413,
            "The request body is larger than the limit of " + std::to_string(limits.max_body_bytes) + " bytes.");
      if (st == ChunkedBodyDecoder::Status::kNeedMore) return compact(c);
      c.head.normalized += "Content-Length: " + std::to_string(c.body.size()) + "\r\n";
    } else {
      size_t n = std::min(in.size(), size_t(c.head.content_length) - c.body.size());
      c.body.append(in.substr(0, n));
      c.in_pos += n;
      if (int64_t(c.body.size()) < c.head.content_length) return compact(c);
      if (has_body) c.head.normalized += "Content-Length: " + std::to_string(c.body.size()) + "\r\n";
    }
    c.head.normalized += "\r\n";
    compact(c);
    dispatch(c);
  }

  void compact(Connection& c) {
    if (c.in_pos == c.in.size()) {
      c.in.clear();
      c.in_pos = 0;
    } else if (c.in_pos > (64 << 10)) {
      c.in.erase(0, c.in_pos);
      c.in_pos = 0;
    }
  }

  void on_readable(Connection& c) {
    char buf[64 << 10];
    for (int rounds = 0; rounds < 16; ++rounds) {
      ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
      if (n > 0) {
        if (c.state == Connection::State::kLingering) continue;
        c.in.append(buf, size_t(n));
        advance(c);
        if (c.state != Connection::State::kReading) return;  // dispatched, failed or waiting for budget
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      // EOF or error. A complete request was dispatched already; anything partial is abandoned.
      close_connection(c.fd);
      return;
    }
  }

  void on_answered(std::unique_ptr<Connection> owned, bool keep) {
    Connection& c = *owned;
    const int fd = c.fd;
    connections[fd] = std::move(owned);
    ++c.requests_served;
    if (!keep || stopping) return close_connection(fd);
    c.reset_request();
    start_waiting(c);
    advance(c);  // a pipelined request may be buffered already
  }

  void run() {
    std::vector<pollfd> fds;
    std::vector<int> order;
    while (true) {
      {
        std::unique_lock<std::mutex> lock(mutex);
        std::deque<int> incoming;
        incoming.swap(accepted);
        std::deque<std::unique_ptr<Connection>> back;
        back.swap(answered);
        const bool stop_now = stopping;
        lock.unlock();
        for (int fd : incoming) {
          if (stop_now) {
            ::close(fd);
            continue;
          }
          adopt(fd);
        }
        for (auto& c : back) {
          // Read everything from c before moving it: argument evaluation order is unspecified.
          const bool keep = c->state == Connection::State::kAnswering && c->head.keep_alive && !c->write_failed;
          on_answered(std::move(c), keep);
        }
        if (stop_now) {
          std::vector<int> all;
          for (auto& [fd, c] : connections) all.push_back(fd);
          for (int fd : all) close_connection(fd);
          std::lock_guard<std::mutex> relock(mutex);
          if (answering == 0 && answered.empty()) return;
        }
      }
      // Time limits.
      auto now = Clock::now();
      std::vector<int> expired;
      auto next = now + std::chrono::seconds(1);
      for (auto& [fd, c] : connections) {
        if (c->deadline <= now)
          expired.push_back(fd);
        else
          next = std::min(next, c->deadline);
      }
      for (int fd : expired) {
        Connection& c = *connections[fd];
        if (c.state == Connection::State::kLingering || !c.request_started)
          close_connection(fd);  // idle: no request to answer
        else
          fail_request(
              c, 408,
              "The request was not received within " + std::to_string(int(limits.request_timeout_s)) + " seconds.");
      }
      // Connections waiting for the budget retry when memory was returned (the eventfd woke us).
      for (auto& [fd, c] : connections)
        if (c->state == Connection::State::kWaitingForBudget) advance(*c);

      fds.clear();
      order.clear();
      fds.push_back({wake_fd, POLLIN, 0});
      for (auto& [fd, c] : connections) {
        if (c->state == Connection::State::kWaitingForBudget) continue;
        fds.push_back({fd, POLLIN, 0});
        order.push_back(fd);
      }
      int ms = int(std::chrono::duration_cast<std::chrono::milliseconds>(next - now).count()) + 1;
      int r = ::poll(fds.data(), fds.size(), ms);
      if (r < 0 && errno != EINTR) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      if (r <= 0) continue;
      if (fds[0].revents) {
        uint64_t v;
        while (::read(wake_fd, &v, sizeof v) > 0) {
        }
      }
      for (size_t i = 1; i < fds.size(); ++i) {
        if (!fds[i].revents) continue;
        auto it = connections.find(order[i - 1]);
        if (it == connections.end()) continue;  // closed meanwhile (make_room)
        on_readable(*it->second);
      }
    }
  }

  void work() {
    while (true) {
      std::unique_ptr<Connection> c;
      {
        std::unique_lock<std::mutex> lock(mutex);
        ready_cv.wait(lock, [&] { return !ready.empty() || (stopping && answering == 0); });
        if (ready.empty()) return;
        c = std::move(ready.front());
        ready.pop_front();
      }
      bool keep = server.answer(*c);
      if (!keep) c->head.keep_alive = false;
      std::lock_guard<std::mutex> lock(mutex);
      --answering;
      answered.push_back(std::move(c));
      wake();
      if (stopping && answering == 0) ready_cv.notify_all();
    }
  }

  void stop() {
    std::call_once(stop_once, [this] {
      {
        std::lock_guard<std::mutex> lock(mutex);
        stopping = true;
      }
      wake();
      reactor_thread.join();
      {
        std::lock_guard<std::mutex> lock(mutex);
        ready_cv.notify_all();
      }
      for (auto& t : workers) t.join();
      ::close(wake_fd);
    });
  }
};

ReactorHttpServer::ReactorHttpServer(ConnectionLimits limits) {
  new_task_queue = [] { return new InlineTaskQueue; };
  set_socket_options(exclusive_socket_options);
  reactor_ = std::make_unique<Reactor>(*this, std::move(limits));
}

ReactorHttpServer::~ReactorHttpServer() {
  stop_connections();
}

void ReactorHttpServer::stop_connections() {
  reactor_->stop();
}

int ReactorHttpServer::open_connections() const {
  return reactor_->open.load();
}

bool ReactorHttpServer::process_and_close_socket(socket_t sock) {
  {
    std::lock_guard<std::mutex> lock(reactor_->mutex);
    reactor_->accepted.push_back(sock);
  }
  reactor_->wake();
  return true;
}

bool ReactorHttpServer::answer(Connection& c) {
  BufferedRequestStream stream(c);
  ActiveRequest active(c);
  bool stopping;
  {
    std::lock_guard<std::mutex> lock(reactor_->mutex);
    stopping = reactor_->stopping;
  }
  const bool last =
      stopping || !c.head.keep_alive || c.requests_served + 1 >= reactor_->limits.max_requests_per_connection;
  bool connection_closed = false;
  bool ok = process_request(stream, last, connection_closed, nullptr);
  return ok && !last && !connection_closed && !c.write_failed;
}

}  // namespace vlm::server
