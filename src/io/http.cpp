#include "io/http.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <exception>
#include <memory>
#include <mutex>

namespace vlm::http {
namespace {

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};

// One handle per thread, reset between requests, so that keep-alive connections (and TLS sessions) to the
// hub are reused across the dozen small requests of one model resolution.
CURL* thread_handle() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  thread_local std::unique_ptr<CURL, CurlDeleter> handle(curl_easy_init());
  if (!handle) fail("http: curl_easy_init failed");
  curl_easy_reset(handle.get());
  return handle.get();
}

struct HopState {
  Response* resp;
  const BodySink* sink;
  std::exception_ptr error;
};

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* st = static_cast<HopState*>(user);
  std::string line(data, size * n);
  if (line.rfind("HTTP/", 0) == 0) {
    // A new status line (e.g. after "100 Continue"): only the last response's headers count.
    st->resp->headers.clear();
    size_t sp = line.find(' ');
    st->resp->status = sp == std::string::npos ? 0 : std::atol(line.c_str() + sp + 1);
    return size * n;
  }
  size_t colon = line.find(':');
  if (colon != std::string::npos) st->resp->headers[lower(trim(line.substr(0, colon)))] = trim(line.substr(colon + 1));
  return size * n;
}

size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto* st = static_cast<HopState*>(user);
  const size_t bytes = size * n;
  const long status = st->resp->status;
  if (status >= 200 && status < 300) {
    if (!st->sink || !*st->sink) return bytes;
    try {
      (*st->sink)(*st->resp, data, bytes);
    } catch (...) {
      st->error = std::current_exception();
      return 0;  // makes curl abort with CURLE_WRITE_ERROR
    }
    return bytes;
  }
  constexpr size_t kMaxErrorBody = 4096;
  if (st->resp->error_body.size() < kMaxErrorBody)
    st->resp->error_body.append(data, std::min(bytes, kMaxErrorBody - st->resp->error_body.size()));
  return bytes;
}

Response perform_hop(const Request& req, const std::string& url, bool send_auth, const BodySink& sink) {
  CURL* c = thread_handle();
  Response resp;
  resp.url = url;
  HopState st{&resp, &sink, nullptr};

  struct curl_slist* list = nullptr;
  for (const auto& [k, v] : req.headers) list = curl_slist_append(list, (k + ": " + v).c_str());
  if (send_auth && !req.bearer_token.empty())
    list = curl_slist_append(list, ("Authorization: Bearer " + req.bearer_token).c_str());
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> guard(list, curl_slist_free_all);

  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "vlm.cpp/0.1");
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, req.connect_timeout_s);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, req.stall_timeout_s);
  if (req.head) curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  if (list) curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &st);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &st);

  CURLcode rc = curl_easy_perform(c);
  if (st.error) std::rethrow_exception(st.error);
  if (rc != CURLE_OK) {
    std::string msg = errbuf[0] ? std::string(errbuf) : std::string(curl_easy_strerror(rc));
    throw NetworkError("network error for " + url + ": " + msg, static_cast<int>(rc));
  }
  long code = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  resp.status = code;
  if (code >= 300 && code < 400) {
    char* target = nullptr;
    curl_easy_getinfo(c, CURLINFO_REDIRECT_URL, &target);
    if (target) resp.location = target;
  }
  return resp;
}

}  // namespace

std::string Response::header(const std::string& name) const {
  auto it = headers.find(lower(name));
  return it == headers.end() ? std::string() : it->second;
}

std::string origin_of(const std::string& url) {
  size_t sep = url.find("://");
  if (sep == std::string::npos) return "";
  std::string scheme = lower(url.substr(0, sep));
  size_t start = sep + 3;
  size_t end = url.find_first_of("/?#", start);
  std::string authority = lower(url.substr(start, end == std::string::npos ? std::string::npos : end - start));
  size_t at = authority.rfind('@');
  if (at != std::string::npos) authority = authority.substr(at + 1);
  // A port follows the last ':' unless that colon is inside an IPv6 literal "[...]".
  size_t colon = authority.rfind(':');
  bool has_port = colon != std::string::npos && authority.find(']', colon) == std::string::npos;
  if (!has_port) authority += scheme == "https" ? ":443" : scheme == "http" ? ":80" : "";
  return scheme + "://" + authority;
}

std::string url_quote(const std::string& s, bool keep_slash) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/')) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

Response perform(const Request& req, const BodySink& sink) {
  const std::string origin = origin_of(req.url);
  std::string url = req.url;
  for (int hop = 0;; ++hop) {
    Response resp = perform_hop(req, url, origin_of(url) == origin, sink);
    bool redirect = resp.status >= 300 && resp.status < 400 && !resp.location.empty();
    if (!redirect || !req.follow_redirects) return resp;
    if (hop >= req.max_redirects) fail("http: too many redirects starting from ", req.url);
    std::string scheme = lower(resp.location.substr(0, resp.location.find(':')));
    if (scheme != "http" && scheme != "https") fail("http: refusing redirect from ", url, " to ", resp.location);
    url = resp.location;
  }
}

}  // namespace vlm::http
