// A small libcurl wrapper for the hub client: one request at a time, redirects followed by hand so that
// credentials never travel to another origin (the hub redirects LFS files to a CDN).
#pragma once
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"

namespace vlm::http {

// Transport failure (DNS, refused connection, dropped transfer, timeout): no HTTP status to act on.
class NetworkError : public Error {
 public:
  NetworkError(const std::string& what, int curl_code) : Error(what), curl_code_(curl_code) {}
  int curl_code() const { return curl_code_; }

 private:
  int curl_code_;
};

struct Request {
  std::string url;
  bool head = false;
  std::vector<std::pair<std::string, std::string>> headers;  // sent on every hop
  std::string bearer_token;  // "Authorization: Bearer ..." only while on the origin of `url`
  bool follow_redirects = true;
  int max_redirects = 10;
  long connect_timeout_s = 15;
  long stall_timeout_s = 60;  // abort when fewer than 1 byte/s arrives for this long
};

struct Response {
  long status = 0;
  std::string url;                             // the URL that gave this response (after redirects)
  std::string location;                        // absolute redirect target of a 3xx, else empty
  std::map<std::string, std::string> headers;  // of the final hop, names lowercased
  std::string error_body;                      // start of the body of a non-2xx response

  // Header value or "" (name is case-insensitive).
  std::string header(const std::string& name) const;
};

// Receives the body of a 2xx response in chunks, with that response's status and headers; may throw (the
// transfer is aborted and the exception rethrown from perform()).
using BodySink = std::function<void(const Response& resp, const char* data, size_t size)>;

// Performs `req`; HTTP error statuses are returned, not thrown. Throws NetworkError on transport failure,
// naming the URL and curl's message.
Response perform(const Request& req, const BodySink& sink = nullptr);

// "scheme://host:port" of an absolute URL (default port filled in), lowercased; "" if not absolute.
std::string origin_of(const std::string& url);

// Percent-encodes everything but unreserved characters; keeps '/' when `keep_slash`.
std::string url_quote(const std::string& s, bool keep_slash);

}  // namespace vlm::http
