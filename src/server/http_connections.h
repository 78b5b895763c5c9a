// Connection handling under the HTTP server. cpp-httplib 0.11 gives every connection a worker thread
// from accept to close and reads request bodies only when a route asks for them, so slow or idle
// clients could hold every worker, and a response sent before the body was read (401, 503, 404, ...)
// left that body on a kept-alive connection to be parsed as the next request. Here one reactor thread
// owns every connection that is not being answered: it reads each request completely (head and body,
// framed by a strict parser of our own, within a time limit and a memory budget), and only then hands
// it to a worker, where cpp-httplib parses the normalized request and runs the routes. A connection is
// therefore always at a request boundary when a response ends, whatever the route or status.
#pragma once
#include <httplib.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace vlm::server {

struct ConnectionLimits {
  // A request's head and body must arrive within this long of its first byte (else 408), and a
  // response write that makes no progress for this long drops the connection.
  double request_timeout_s = 30;
  double keep_alive_idle_s = 5;       // a kept-alive connection with no new request is closed after this
  int64_t max_body_bytes = 64 << 20;  // larger bodies get 413 (by Content-Length, before reading them)
  int64_t max_head_bytes = 64 << 10;  // request line and headers (else 431)
  int64_t body_memory_budget = 0;     // bodies read or held at once, all connections; 0: 2 * max_body_bytes
  int max_connections = 512;          // open at once; beyond it the longest-waiting unfinished request is dropped
  int workers = 16;                   // threads answering complete requests
  int max_requests_per_connection = 1000;
  httplib::Headers extra_headers;  // added to the responses made here (CORS)
};

// The outcome of framing one request head (exposed for tests and the fuzzer).
struct RequestHead {
  enum class Status { kNeedMore, kComplete, kError };
  Status status = Status::kNeedMore;
  size_t head_bytes = 0;  // bytes of the buffer the head took (kComplete)
  std::string method, target, version;
  std::string normalized;  // the head as cpp-httplib gets it: CRLF lines, no framing or Expect headers
  int64_t content_length = 0;
  bool chunked = false;
  bool expect_continue = false;
  bool keep_alive = true;  // as the request asks (HTTP/1.0 without keep-alive, "Connection: close")
  int error_status = 0;    // kError: 400, 414, 417, 431, 501, 505
  std::string error_message;
};

// Frames the request head at the start of `buffer` (leading empty lines skipped, as RFC 9112 allows).
// Strict where a lenient parser would let two parties disagree about where a request ends: obsolete
// line folding, spaces before a colon, conflicting or malformed Content-Length, Transfer-Encoding other
// than chunked, or both framings at once are errors.
RequestHead parse_request_head(std::string_view buffer, int64_t max_head_bytes);

// Decodes a chunked request body incrementally (extensions and trailers are read and dropped).
class ChunkedBodyDecoder {
 public:
  enum class Status { kNeedMore, kComplete, kError, kTooLarge };
  explicit ChunkedBodyDecoder(int64_t max_body_bytes) : max_body_bytes_(max_body_bytes) {}
  // Consumes what it can from `in` starting at `pos` (advanced), appending chunk data to `body`.
  Status feed(std::string_view in, size_t& pos, std::string& body);

 private:
  enum class State { kSize, kData, kDataEnd, kTrailer, kDone };
  State state_ = State::kSize;
  int64_t remaining_ = 0;
  int64_t max_body_bytes_;
};

// A request body handed to a handler, with its share of the body memory budget (returned on destruction).
class RequestBody {
 public:
  RequestBody() = default;
  RequestBody(std::string bytes, std::shared_ptr<void> reservation)
      : bytes_(std::move(bytes)), reservation_(std::move(reservation)) {}
  std::string& bytes() { return bytes_; }
  // Frees the bytes and returns the budget share now (before a long generation, say).
  void release() {
    std::string().swap(bytes_);
    reservation_.reset();
  }

 private:
  std::string bytes_;
  std::shared_ptr<void> reservation_;
};

struct Connection;

// The request a worker thread is answering, for the handler running on that thread.
class ActiveRequest {
 public:
  // The request being answered on this thread; null outside a handler.
  static ActiveRequest* current();

  // Moves the body out (no copy); later calls get an empty body.
  RequestBody take_body();
  // True once the client is gone. A client that only half-closed (shut down its sending side after the
  // request, as it may) is not gone: while no response byte has been written, a "100 Continue" interim
  // response, which HTTP/1.1 clients must accept and skip, tells the two apart (a closed socket answers
  // it with a reset). Cheap: poll(2), and at most one write per request.
  bool client_gone();

  explicit ActiveRequest(Connection& c);
  ~ActiveRequest();
  ActiveRequest(const ActiveRequest&) = delete;
  ActiveRequest& operator=(const ActiveRequest&) = delete;

 private:
  Connection& c_;
};

class ReactorHttpServer : public httplib::Server {
 public:
  explicit ReactorHttpServer(ConnectionLimits limits);
  ~ReactorHttpServer() override;

  // After listen_after_bind() returned: closes waiting connections, lets the workers finish the requests
  // they hold, and joins every thread. Idempotent.
  void stop_connections();
  // Open connections (for tests and counters).
  int open_connections() const;

  struct Reactor;

 private:
  // Called by cpp-httplib for each accepted socket (on the accept thread: the task queue runs tasks inline).
  bool process_and_close_socket(socket_t sock) override;
  // Answers one complete request on a worker thread; returns whether the connection may be kept.
  bool answer(Connection& c);

  std::unique_ptr<Reactor> reactor_;
};

}  // namespace vlm::server
