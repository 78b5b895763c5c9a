#include "io/hub.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/file.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <thread>

#include "core/error.h"
#include "core/sha256.h"
#include "io/http.h"
#include "io/json_file.h"

namespace vlm {
namespace fs = std::filesystem;
namespace {

void hash_file_into(const std::string& path, Sha256& sha) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read ", path);
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    sha.update(buf.data(), static_cast<size_t>(in.gcount()));
  }
}

// ---- small helpers ----
std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

bool truthy(std::string v) {
  for (char& c : v) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return v == "1" || v == "ON" || v == "YES" || v == "TRUE";
}

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

bool is_hex(const std::string& s, size_t len) {
  return s.size() == len && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}
bool is_commit_hash(const std::string& s) {
  return is_hex(s, 40);
}

// Characters allowed in hub names; anything else (or "..") could escape the cache folder.
bool safe_name(const std::string& s) {
  if (s.empty() || s == "." || s == ".." || s.find("..") != std::string::npos) return false;
  for (unsigned char c : s)
    if (!std::isalnum(c) && c != '-' && c != '_' && c != '.') return false;
  return true;
}

void check_repo_id(const std::string& repo_id) {
  size_t slash = repo_id.find('/');
  if (slash == std::string::npos || repo_id.find('/', slash + 1) != std::string::npos ||
      !safe_name(repo_id.substr(0, slash)) || !safe_name(repo_id.substr(slash + 1)))
    fail("invalid Hugging Face model id '", repo_id, "' (expected \"org/name\")");
}

// Repo file names come from the hub and from index files: refuse absolute paths and "..".
void check_filename(const std::string& repo_id, const std::string& filename) {
  bool ok = !filename.empty() && filename[0] != '/' && filename.find('\\') == std::string::npos;
  for (const auto& part : fs::path(filename)) ok = ok && part != ".." && part != "." && !part.empty();
  if (!ok) fail(repo_id, ": unsafe file name '", filename, "'");
}

// Revisions name refs/<revision>: allow branch-like names ("main", "refs/pr/1") but never "..".
void check_revision(const std::string& rev) {
  bool ok = !rev.empty() && rev[0] != '/' && rev.find("..") == std::string::npos;
  for (unsigned char c : rev) ok = ok && (std::isalnum(c) || std::strchr("-_./", c));
  if (!ok) fail("invalid hub revision '", rev, "'");
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  if (!in) return "";
  std::stringstream ss;
  ss << in.rdbuf();
  return trim(ss.str());
}

// Write-then-rename so that a concurrent reader never sees a half-written file.
void write_text_atomic(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  fs::path tmp = p;
  tmp += ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    if (!out) fail("cannot write ", tmp.string());
  }
  fs::rename(tmp, p);
}

// "W/\"abc\"" -> "abc".
std::string normalize_etag(std::string e) {
  if (e.rfind("W/", 0) == 0) e = e.substr(2);
  if (e.size() >= 2 && e.front() == '"' && e.back() == '"') e = e.substr(1, e.size() - 2);
  return e;
}

// Exclusive advisory lock, compatible in spirit with huggingface_hub's .locks folder: two processes
// downloading the same blob wait for each other instead of corrupting one .incomplete file.
class FileLock {
 public:
  explicit FileLock(const fs::path& p) {
    fs::create_directories(p.parent_path());
    fd_ = ::open(p.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
    if (fd_ < 0) fail("cannot create lock file ", p.string(), ": ", std::strerror(errno));
    while (::flock(fd_, LOCK_EX) != 0 && errno == EINTR) {
    }
  }
  ~FileLock() { ::close(fd_); }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_ = -1;
};

class ProgressBar {
 public:
  ProgressBar(bool enabled, std::string name, int64_t total)
      : on_(enabled && ::isatty(STDERR_FILENO) && (total < 0 || total >= kMinSize)),
        name_(std::move(name)),
        total_(total) {}
  ~ProgressBar() {
    if (on_ && drawn_) std::fputc('\n', stderr);
  }
  void update(int64_t done, bool force = false) {
    if (!on_) return;
    auto now = std::chrono::steady_clock::now();
    if (!force && drawn_ && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    drawn_ = true;
    double secs = std::chrono::duration<double>(now - start_).count();
    double rate = secs > 0 ? (done - first_) / secs / 1e6 : 0;
    if (total_ > 0) {
      int pct = static_cast<int>(100.0 * done / total_);
      int bars = pct * 30 / 100;
      std::fprintf(stderr, "\r%-40.40s %3d%% [%-30s] %.1f/%.1f MB %.1f MB/s ", name_.c_str(), pct,
                   std::string(bars, '#').c_str(), done / 1e6, total_ / 1e6, rate);
    } else {
      std::fprintf(stderr, "\r%-40.40s %.1f MB %.1f MB/s ", name_.c_str(), done / 1e6, rate);
    }
    std::fflush(stderr);
  }
  void set_start(int64_t done) {
    first_ = done;
    start_ = std::chrono::steady_clock::now();
  }

 private:
  static constexpr int64_t kMinSize = 1 << 20;  // small JSON files would only add noise
  bool on_;
  std::string name_;
  int64_t total_;
  int64_t first_ = 0;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now(), last_;
};

struct FileMeta {
  std::string commit, etag, location;
  int64_t size = -1;
};

std::string resolve_url(const std::string& repo_id, const std::string& revision, const std::string& filename,
                        const HubOptions& opts) {
  std::string ep = opts.endpoint;
  while (!ep.empty() && ep.back() == '/') ep.pop_back();
  return ep + "/" + repo_id + "/resolve/" + http::url_quote(revision, false) + "/" + http::url_quote(filename, true);
}

// Throws the clear error for a failed hub response, or returns false for an optional file that is absent.
[[noreturn]] void fail_status(const http::Response& r, const std::string& repo_id, const std::string& filename,
                              const std::string& revision) {
  std::string code = r.header("x-error-code"), msg = r.header("x-error-message");
  std::string detail = msg.empty() ? "" : " (hub says: " + msg + ")";
  if (r.status == 401 || r.status == 403)
    fail("HTTP ", r.status, " for ", r.url, ": model '", repo_id,
         "' is gated or private (or does not exist); accept its terms on the hub and set HF_TOKEN to a token with "
         "access",
         detail);
  if (r.status == 404) {
    if (code == "RepoNotFound") fail("HTTP 404 for ", r.url, ": model repository '", repo_id, "' not found", detail);
    if (code == "RevisionNotFound")
      fail("HTTP 404 for ", r.url, ": revision '", revision, "' of '", repo_id, "' not found", detail);
    fail("HTTP 404 for ", r.url, ": file '", filename, "' not found in '", repo_id, "' at revision '", revision, "'",
         detail);
  }
  fail("HTTP ", r.status, " for ", r.url, detail);
}

// HEAD of a resolve URL. Redirects are followed only while the hub's metadata headers are absent (a renamed
// repo); the redirect to the LFS CDN already carries X-Linked-Etag and X-Repo-Commit.
http::Response head_resolve(const std::string& url, const HubOptions& opts) {
  http::Request req;
  req.url = url;
  req.head = true;
  req.follow_redirects = false;
  req.bearer_token = opts.token;
  req.headers = {{"Accept-Encoding", "identity"}};
  for (int hop = 0; hop < 5; ++hop) {
    http::Response r = http::perform(req);
    bool redirect = r.status >= 300 && r.status < 400 && !r.location.empty();
    if (!redirect || !r.header("x-repo-commit").empty() ||
        http::origin_of(r.location) != http::origin_of(opts.endpoint))
      return r;
    req.url = r.location;
  }
  fail("too many redirects resolving ", url);
}

// Downloads `url` into blob (via blob.incomplete), resuming a partial file with a Range request and retrying
// dropped transfers; verifies size and, for LFS etags, the sha256.
void download_blob(const std::string& url, const fs::path& blob, const FileMeta& meta, const std::string& repo_id,
                   const std::string& filename, const HubOptions& opts) {
  const std::string what = repo_id + "/" + filename;
  const fs::path part = fs::path(blob.string() + ".incomplete");
  const bool check_sha = is_hex(meta.etag, 64);
  constexpr int kAttempts = 5;
  ProgressBar bar(opts.progress, what, meta.size);
  for (int attempt = 1;; ++attempt) {
    std::error_code ec;
    int64_t offset = fs::exists(part, ec) ? static_cast<int64_t>(fs::file_size(part, ec)) : 0;
    if (ec || (meta.size >= 0 && offset > meta.size)) offset = 0;
    Sha256 sha;
    bool done_before = meta.size >= 0 && offset == meta.size && offset > 0;
    if (offset > 0 && check_sha) hash_file_into(part.string(), sha);
    bar.set_start(offset);

    if (!done_before) {
      http::Request req;
      req.url = url;
      req.bearer_token = opts.token;
      req.headers = {{"Accept-Encoding", "identity"}};
      if (offset > 0) req.headers.emplace_back("Range", "bytes=" + std::to_string(offset) + "-");
      std::FILE* out = nullptr;
      int64_t written = offset;
      auto sink = [&](const http::Response& r, const char* data, size_t n) {
        if (!out) {
          bool append = r.status == 206;
          if (append && r.header("content-range").rfind("bytes " + std::to_string(offset) + "-", 0) != 0)
            fail("download of ", r.url, ": server resumed at the wrong offset (", r.header("content-range"), ")");
          if (!append) written = 0, sha.reset();  // 200: the server sends the whole file, start over
          out = std::fopen(part.c_str(), append ? "ab" : "wb");
          if (!out) fail("cannot write ", part.string(), ": ", std::strerror(errno));
        }
        if (std::fwrite(data, 1, n, out) != n) fail("cannot write ", part.string(), ": ", std::strerror(errno));
        if (check_sha) sha.update(data, n);
        written += static_cast<int64_t>(n);
        bar.update(written);
      };
      http::Response r;
      try {
        r = http::perform(req, sink);
      } catch (const http::NetworkError& e) {
        if (out) std::fclose(out);
        if (attempt >= kAttempts) fail(e.what(), " (gave up after ", kAttempts, " attempts; rerun to resume)");
        std::this_thread::sleep_for(std::chrono::milliseconds(100 * attempt));
        continue;
      } catch (...) {
        if (out) std::fclose(out);
        throw;
      }
      bool closed_ok = !out || std::fclose(out) == 0;
      if (!closed_ok) fail("cannot write ", part.string(), ": ", std::strerror(errno));
      if (r.status == 416 && offset > 0) {  // our partial file is stale or complete: start over
        fs::remove(part, ec);
        if (attempt >= kAttempts) fail("download of ", url, ": server keeps refusing the resume range");
        continue;
      }
      if (r.status < 200 || r.status >= 300) fail_status(r, repo_id, filename, opts.revision);
      if (!out) {  // empty body: an empty file, or a 206 that added nothing
        if (r.status == 200) std::ofstream(part, std::ios::trunc | std::ios::binary);
      }
    }
    int64_t got = fs::exists(part) ? static_cast<int64_t>(fs::file_size(part)) : 0;
    if (meta.size >= 0 && got != meta.size) {
      fs::remove(part, ec);
      fail("size mismatch for ", what, ": expected ", meta.size, " bytes, got ", got, " from ", url);
    }
    if (check_sha) {
      std::string digest = sha.hex();
      if (digest != meta.etag) {
        fs::remove(part, ec);
        fail("checksum mismatch for ", what, ": sha256 ", digest, " but the hub says ", meta.etag, " (", url,
             "); the corrupt download was deleted, retry");
      }
    }
    bar.update(got, true);
    fs::rename(part, blob);
    return;
  }
}

// Snapshot pointer -> blob, as a relative symlink like huggingface_hub; a copy where symlinks fail.
void link_snapshot(const fs::path& pointer, const fs::path& blob) {
  fs::create_directories(pointer.parent_path());
  fs::path tmp = pointer;
  tmp += ".tmp." + std::to_string(::getpid());
  std::error_code ec;
  fs::remove(tmp, ec);
  fs::create_symlink(fs::relative(blob, pointer.parent_path()), tmp, ec);
  if (ec) fs::copy_file(blob, tmp, fs::copy_options::overwrite_existing);
  fs::rename(tmp, pointer);
}

// The cached copy for `revision` (a commit, or a ref recorded in refs/), or "" with `why` set.
std::string cached_file(const fs::path& repo_dir, const std::string& revision, const std::string& filename,
                        bool* known_absent, std::string* why) {
  *known_absent = false;
  std::string commit = is_commit_hash(revision) ? revision : read_text(repo_dir / "refs" / revision);
  if (commit.empty()) {
    *why = "revision '" + revision + "' was never downloaded (no " + (repo_dir / "refs" / revision).string() + ")";
    return "";
  }
  fs::path p = repo_dir / "snapshots" / commit / filename;
  if (fs::exists(p)) return p.string();
  *known_absent = fs::exists(repo_dir / ".no_exist" / commit / filename);
  *why = "no " + p.string();
  return "";
}

}  // namespace

HubOptions HubOptions::from_env() {
  HubOptions o;
  std::string endpoint = env("HF_ENDPOINT");
  if (!endpoint.empty()) o.endpoint = endpoint;
  while (o.endpoint.size() > 1 && o.endpoint.back() == '/') o.endpoint.pop_back();

  std::string home = env("HF_HOME");
  if (home.empty()) {
    std::string base = env("XDG_CACHE_HOME");
    if (base.empty()) {
      std::string user_home = env("HOME");
      if (user_home.empty()) {
        const passwd* pw = ::getpwuid(::getuid());
        user_home = pw && pw->pw_dir ? pw->pw_dir : ".";
      }
      base = user_home + "/.cache";
    }
    home = base + "/huggingface";
  }
  o.cache_dir = env("HF_HUB_CACHE");
  if (o.cache_dir.empty()) o.cache_dir = env("HUGGINGFACE_HUB_CACHE");
  if (o.cache_dir.empty()) o.cache_dir = home + "/hub";

  o.token = env("HF_TOKEN");
  if (o.token.empty()) o.token = env("HUGGING_FACE_HUB_TOKEN");
  if (o.token.empty()) {
    std::string token_path = env("HF_TOKEN_PATH");
    o.token = read_text(token_path.empty() ? home + "/token" : token_path);
  }
  o.offline = truthy(env("HF_HUB_OFFLINE"));
  if (truthy(env("HF_HUB_DISABLE_PROGRESS_BARS"))) o.progress = false;
  return o;
}

const std::vector<std::string>& hub_model_json_files() {
  static const std::vector<std::string> files = {
      "config.json",        "generation_config.json", "preprocessor_config.json", "processor_config.json",
      "tokenizer.json",     "tokenizer_config.json",  "special_tokens_map.json",  "added_tokens.json",
      "chat_template.json", "chat_template.jinja"};
  return files;
}

std::string hub_repo_cache_dir(const std::string& repo_id, const HubOptions& opts) {
  check_repo_id(repo_id);
  if (opts.cache_dir.empty()) fail("hub cache folder not set (HF_HUB_CACHE / HF_HOME)");
  std::string name = repo_id;
  name.replace(name.find('/'), 1, "--");
  return (fs::path(opts.cache_dir) / ("models--" + name)).string();
}

bool looks_like_repo_id(const std::string& s) {
  size_t slash = s.find('/');
  if (slash == std::string::npos || s.find('/', slash + 1) != std::string::npos) return false;
  if (!safe_name(s.substr(0, slash)) || !safe_name(s.substr(slash + 1))) return false;
  std::error_code ec;
  return !fs::exists(s, ec);
}

std::string sha256_file_hex(const std::string& path) {
  Sha256 sha;
  hash_file_into(path, sha);
  return sha.hex();
}

std::string download_file(const std::string& repo_id, const std::string& filename, const HubOptions& opts,
                          bool optional) {
  const fs::path repo_dir = hub_repo_cache_dir(repo_id, opts);
  check_filename(repo_id, filename);
  check_revision(opts.revision);
  const std::string what = repo_id + "/" + filename;

  bool absent = false;
  std::string why;
  if (opts.offline) {
    std::string p = cached_file(repo_dir, opts.revision, filename, &absent, &why);
    if (!p.empty() || optional) return p;
    fail("offline mode (HF_HUB_OFFLINE=1): ", what, " (revision '", opts.revision, "') is not in the hub cache: ", why,
         "; run once without HF_HUB_OFFLINE to download it");
  }
  // A commit hash names immutable content: what the cache has needs no network round-trip.
  if (is_commit_hash(opts.revision)) {
    std::string p = cached_file(repo_dir, opts.revision, filename, &absent, &why);
    if (!p.empty()) return p;
    if (absent && optional) return "";
  }

  const std::string url = resolve_url(repo_id, opts.revision, filename, opts);
  http::Response head;
  try {
    head = head_resolve(url, opts);
  } catch (const http::NetworkError& e) {
    std::string p = cached_file(repo_dir, opts.revision, filename, &absent, &why);
    if (!p.empty() || (absent && optional)) {
      if (!p.empty()) std::fprintf(stderr, "warning: %s; using the cached %s\n", e.what(), what.c_str());
      return p;
    }
    fail(e.what(), " (and ", what, " is not in the hub cache; set HF_HUB_OFFLINE=1 to use only the cache)");
  }

  FileMeta meta;
  meta.commit = head.header("x-repo-commit");
  if (head.status == 404 && optional && head.header("x-error-code") != "RepoNotFound" &&
      head.header("x-error-code") != "RevisionNotFound") {
    // Remember the absence, as huggingface_hub does, so that later runs need not ask again.
    if (is_commit_hash(meta.commit)) write_text_atomic(repo_dir / ".no_exist" / meta.commit / filename, "");
    return "";
  }
  bool ok = (head.status >= 200 && head.status < 300) || (head.status >= 300 && head.status < 400);
  if (!ok) fail_status(head, repo_id, filename, opts.revision);

  meta.etag = normalize_etag(head.header("x-linked-etag"));
  if (meta.etag.empty()) meta.etag = normalize_etag(head.header("etag"));
  std::string size = head.header("x-linked-size");
  if (size.empty()) size = head.header("content-length");
  if (!size.empty()) meta.size = std::atoll(size.c_str());
  if (meta.commit.empty() || meta.etag.empty())
    fail(url, ": response lacks X-Repo-Commit or ETag headers; is ", opts.endpoint, " a Hugging Face hub?");
  if (!safe_name(meta.commit) || !safe_name(meta.etag))
    fail(url, ": unexpected commit/etag '", meta.commit, "' / '", meta.etag, "'");

  if (opts.revision != meta.commit && read_text(repo_dir / "refs" / opts.revision) != meta.commit)
    write_text_atomic(repo_dir / "refs" / opts.revision, meta.commit);

  const fs::path pointer = repo_dir / "snapshots" / meta.commit / filename;
  const fs::path blob = repo_dir / "blobs" / meta.etag;
  if (fs::exists(pointer) && fs::exists(blob)) return pointer.string();
  if (!fs::exists(blob)) {
    fs::create_directories(blob.parent_path());
    FileLock lock(fs::path(opts.cache_dir) / ".locks" / repo_dir.filename() / (meta.etag + ".lock"));
    if (!fs::exists(blob)) download_blob(url, blob, meta, repo_id, filename, opts);
  }
  link_snapshot(pointer, blob);
  return pointer.string();
}

std::string resolve_model(const std::string& repo_id, const HubOptions& opts) {
  check_repo_id(repo_id);
  // config.json pins the commit; every other file is then fetched from that same commit even if the branch
  // moves meanwhile (and a commit already in the cache needs no further network round-trips).
  const fs::path config = download_file(repo_id, "config.json", opts, false);
  const fs::path snapshot = config.parent_path();
  HubOptions pinned = opts;
  pinned.revision = snapshot.filename().string();
  for (const auto& f : hub_model_json_files())
    if (f != "config.json") download_file(repo_id, f, pinned, true);

  std::string index = download_file(repo_id, "model.safetensors.index.json", pinned, true);
  if (!index.empty()) {
    json j = read_json_file(index);
    auto map = j.find("weight_map");
    if (map == j.end() || !map->is_object()) fail(index, ": missing 'weight_map' object");
    std::set<std::string> shards;
    for (const auto& [name, file] : map->items()) {
      if (!file.is_string()) fail(index, ": weight_map entry '", name, "' is not a file name");
      shards.insert(file.get<std::string>());
    }
    for (const auto& shard : shards) download_file(repo_id, shard, pinned, false);
  } else if (download_file(repo_id, "model.safetensors", pinned, true).empty()) {
    fail("model '", repo_id, "' (revision '", opts.revision,
         "') has neither model.safetensors nor model.safetensors.index.json",
         opts.offline ? " in the hub cache (offline mode, HF_HUB_OFFLINE=1)" : "");
  }
  return snapshot.string();
}

std::string resolve_adapter(const std::string& repo_id, const HubOptions& opts) {
  check_repo_id(repo_id);
  const fs::path config = download_file(repo_id, "adapter_config.json", opts, false);
  HubOptions pinned = opts;
  pinned.revision = config.parent_path().filename().string();
  const bool mlx = !download_file(repo_id, "adapters.safetensors", pinned, true).empty();
  const bool peft = !download_file(repo_id, "adapter_model.safetensors", pinned, true).empty();
  if (!mlx && !peft)
    fail("adapter '", repo_id, "' (revision '", opts.revision,
         "') has neither adapters.safetensors (MLX) nor adapter_model.safetensors (PEFT)",
         opts.offline ? " in the hub cache (offline mode, HF_HUB_OFFLINE=1)" : "");
  return config.parent_path().string();
}

}  // namespace vlm
