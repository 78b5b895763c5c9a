// `vlm batch`: offline inference over an OpenAI Batch API input file (one {"custom_id", "method", "url",
// "body"} object per line), written as one result line per request. Made for job schedulers: a shard of
// the file per array task without a coordinator, and resumable after a kill (results are appended one
// whole line at a time; a rerun skips the custom_ids already in the output and repairs a torn last line).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <unordered_map>

#include "common.h"
#include "generate/generator.h"
#include "server/api_error.h"
#include "server/chat_request.h"
#include "server/chat_response.h"

namespace vlm::cli {

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

Command batch_command() {
  Command c{"batch",
            "Run an OpenAI Batch API file (JSONL of /v1/chat/completions requests) offline; resumable, shardable.",
            "",
            {}};
  c.options = {
      {"model", true, false, "model directory or Hugging Face id (org/name)", "ID|DIR"},
      {"input", true, false, "requests, one {custom_id, method, url, body} object per line", "FILE.jsonl"},
      {"output", true, false, "results, appended; custom_ids already there are skipped", "FILE.jsonl"},
      {"parallel", true, false,
       "requests generated at once over the one loaded model, their decode steps batched (default 1)", "N"},
      {"shard", true, false,
       "take the lines whose 0-based index mod N is I (default: JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID)", "I/N"},
      {"shards", true, false, "shard count with JOB_COMPLETION_INDEX when JOB_COMPLETIONS is not set", "N"},
      {"max-requests", true, false, "stop after K requests of this shard (smoke runs)", "K"},
      {"media-root", true, false, "local image paths resolve inside DIR only (default: refused)", "DIR"},
      {"allow-remote-media", false, false, "fetch http(s) image URLs (refused by default)"},
      {"max-tokens", true, false, "completion length when a request gives none (default 512)", "N"},
      {"prefill-chunk", true, false,
       "prompt tokens per engine turn: with --parallel, the others decode between a new prompt's turns "
       "(default 128)",
       "N"},
      {"fsync", false, false, "fsync the output after every result (survives a machine crash, slower)"},
  };
  for (auto& o : runtime_options()) c.options.push_back(o);
  return c;
}

struct Shard {
  int64_t index = 0, count = 1;
};

std::optional<int64_t> env_int(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  long long x = std::strtoll(v, &end, 10);
  if (*end != '\0' || errno == ERANGE || x < 0)
    throw UsageError(std::string("environment variable ") + name + "='" + v + "' is not a non-negative integer");
  return x;
}

// --shard I/N, else the index a job scheduler gives each task of an array (Kubernetes Indexed Job, Slurm
// job array), else the whole file.
Shard resolve_shard(const Args& args) {
  Shard s;
  std::optional<int64_t> shards = args.get_int("shards", 1, int64_t(1) << 40);
  if (auto spec = args.get("shard")) {
    size_t slash = spec->find('/');
    if (slash == std::string::npos) throw UsageError("option '--shard': expected I/N (e.g. 0/4), got '" + *spec + "'");
    s.count = parse_int("shard", spec->substr(slash + 1), 1, int64_t(1) << 40);
    s.index = parse_int("shard", spec->substr(0, slash), 0, s.count - 1);
    if (shards && *shards != s.count) throw UsageError("--shards " + std::to_string(*shards) + " contradicts --shard");
    return s;
  }
  if (auto index = env_int("JOB_COMPLETION_INDEX")) {
    std::optional<int64_t> count = shards ? shards : env_int("JOB_COMPLETIONS");
    if (!count || *count < 1)
      throw UsageError(
          "JOB_COMPLETION_INDEX is set but the shard count is unknown: pass --shards N (the Job's "
          "spec.completions) or set JOB_COMPLETIONS");
    s = {*index, *count};
  } else if (auto task = env_int("SLURM_ARRAY_TASK_ID")) {
    std::optional<int64_t> count = shards ? shards : env_int("SLURM_ARRAY_TASK_COUNT");
    if (!count || *count < 1)
      throw UsageError("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not: pass --shards N");
    // Arrays may start anywhere (--array=1-8): the index is the task's rank from the first id.
    s = {*task - env_int("SLURM_ARRAY_TASK_MIN").value_or(0), *count};
  } else if (shards) {
    throw UsageError("--shards needs a shard index: --shard I/N, JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID");
  }
  if (s.index < 0 || s.index >= s.count)
    throw UsageError("shard index " + std::to_string(s.index) + " is outside 0.." + std::to_string(s.count - 1));
  return s;
}

struct InputLine {
  int64_t number = 0;  // 1-based, for messages
  std::string text;
  std::string custom_id;  // "line-N" when the line has none (see below)
  bool has_custom_id = false;
};

// All non-blank lines of the input, with their custom_ids; a repeated custom_id anywhere in the file is an
// error before any work starts (it would make the output ambiguous and resuming impossible). A line whose
// custom_id cannot be read is still answered (with an error), under the stable id "line-N". Only the
// lines of `shard` keep their text (other shards' images need not sit in memory).
std::vector<InputLine> read_input(const std::string& path, const Shard& shard) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path + ": " + std::strerror(errno));
  std::vector<InputLine> lines;
  std::unordered_map<std::string, int64_t> first_seen;
  std::string text;
  for (int64_t number = 1; std::getline(f, text); ++number) {
    if (!text.empty() && text.back() == '\r') text.pop_back();
    if (text.find_first_not_of(" \t") == std::string::npos) continue;
    InputLine line{number, std::move(text), "line-" + std::to_string(number), false};
    json j = json::parse(line.text, nullptr, false);
    if (!j.is_discarded() && j.is_object() && j.contains("custom_id") && j["custom_id"].is_string()) {
      line.custom_id = j["custom_id"].get<std::string>();
      line.has_custom_id = true;
    }
    auto [it, fresh] = first_seen.emplace(line.custom_id, number);
    if (!fresh)
      throw std::runtime_error(path + ":" + std::to_string(number) + ": custom_id '" + line.custom_id +
                               "' repeats the one of line " + std::to_string(it->second) +
                               " (custom_ids must be unique; lines without one are named line-N)");
    if (int64_t(lines.size()) % shard.count != shard.index) line.text = std::string();
    lines.push_back(std::move(line));
  }
  return lines;
}

// The custom_ids already answered in `path`. A last line without its newline or that is not JSON is what a
// killed run leaves: it is cut off (and redone). Any other broken line is an error: the file is not ours.
std::set<std::string> completed_ids(const std::string& path) {
  std::set<std::string> done;
  std::fstream f(path, std::ios::in | std::ios::binary);
  if (!f) return done;
  std::string content((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  size_t start = 0, good_end = 0;
  int64_t number = 0;
  while (start < content.size()) {
    ++number;
    size_t nl = content.find('\n', start);
    bool complete = nl != std::string::npos;
    std::string text = content.substr(start, complete ? nl - start : std::string::npos);
    json j = json::parse(text, nullptr, false);
    bool valid = !j.is_discarded() && j.is_object() && j.contains("custom_id") && j["custom_id"].is_string();
    bool last = !complete || nl + 1 == content.size();
    if (!valid || !complete) {
      if (!last)
        throw std::runtime_error(path + ":" + std::to_string(number) +
                                 ": not a result line (expected JSON with a custom_id); is this the right --output?");
      break;
    }
    done.insert(j["custom_id"].get<std::string>());
    start = good_end = nl + 1;
  }
  if (good_end < content.size()) {
    std::fprintf(stderr, "vlm batch: %s: dropping a torn last line (%zu bytes) left by an interrupted run\n",
                 path.c_str(), content.size() - good_end);
    std::filesystem::resize_file(path, good_end);
  }
  return done;
}

// Appends whole lines with one write(2) each, so that a kill leaves at most one torn line at the end.
class ResultWriter {
 public:
  ResultWriter(const std::string& path, bool sync) : path_(path), sync_(sync) {
    fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw std::runtime_error("cannot open " + path + " for appending: " + std::strerror(errno));
  }
  ~ResultWriter() { ::close(fd_); }
  ResultWriter(const ResultWriter&) = delete;
  ResultWriter& operator=(const ResultWriter&) = delete;

  void append(const std::string& line) {
    std::lock_guard<std::mutex> lock(mutex_);
    std::string data = line + "\n";
    size_t written = 0;
    while (written < data.size()) {
      ssize_t n = ::write(fd_, data.data() + written, data.size() - written);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw std::runtime_error("cannot write " + path_ + ": " + std::strerror(errno));
      written += size_t(n);
    }
    if (sync_ && ::fsync(fd_) != 0) throw std::runtime_error("cannot fsync " + path_ + ": " + std::strerror(errno));
  }

 private:
  std::string path_;
  bool sync_;
  int fd_ = -1;
  std::mutex mutex_;
};

struct BatchSetup {
  std::string input_path, model_name;
  server::MediaLimits media;
  server::RequestDefaults defaults;
};

// A result line in the Batch API's output shape; `request_id` names the completion for 200s.
json result_line(const InputLine& line, int status, const json& body, const std::string& request_id) {
  std::string suffix = server::new_completion_meta("").id.substr(std::strlen("chatcmpl-"));
  return {
      {"id", "batch_req_" + suffix},
      {"custom_id", line.custom_id},
      {"response",
       {{"status_code", status}, {"request_id", request_id.empty() ? "req_" + suffix : request_id}, {"body", body}}},
      {"error", nullptr}};
}

// A line that is not a request at all (not JSON, wrong url or method): no response, an error.
json line_error(const BatchSetup& setup, const InputLine& line, const std::string& code, const std::string& message) {
  std::string suffix = server::new_completion_meta("").id.substr(std::strlen("chatcmpl-"));
  return {
      {"id", "batch_req_" + suffix},
      {"custom_id", line.custom_id},  // "line-N" when the line has none, so that a rerun skips it too
      {"response", nullptr},
      {"error", {{"code", code}, {"message", setup.input_path + ":" + std::to_string(line.number) + ": " + message}}}};
}

bool starts_with(const std::string& s, const char* prefix) {
  return s.rfind(prefix, 0) == 0;
}

struct Outcome {
  json line;
  int64_t tokens = 0;  // generated
  bool failed = false;
};

// One request, answered the way POST /v1/chat/completions answers it (same parser, limits and body);
// `engine` batches its decode steps with the other workers' (continuous batching).
Outcome run_request(const ModelContext& model, const PromptCache& engine, const BatchSetup& setup,
                    const InputLine& line) {
  json j = json::parse(line.text, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return {line_error(setup, line, "invalid_json", "not a JSON object"), 0, true};
  if (!line.has_custom_id)
    return {line_error(setup, line, "missing_custom_id", "'custom_id' (a string) is required"), 0, true};
  // Not j.value("method", ""): that throws when the field holds another type.
  auto text_field = [&j](const char* name) {
    auto it = j.find(name);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  const std::string method = text_field("method"), url = text_field("url");
  if (method != "POST")
    return {
        line_error(setup, line, "invalid_method", "'method' must be \"POST\", got " + j.value("method", json()).dump()),
        0, true};
  if (url != "/v1/chat/completions")
    return {line_error(setup, line, "invalid_url",
                       "'url' must be \"/v1/chat/completions\" (the only endpoint served), got " +
                           j.value("url", json()).dump()),
            0, true};
  if (!j.contains("body")) return {line_error(setup, line, "missing_body", "'body' is required"), 0, true};
  try {
    server::ChatRequest request = server::parse_chat_request(j["body"].dump(), setup.media, setup.defaults);
    // The server's refusal names its own flag; a batch run says which of ours allows local files.
    if (setup.media.local_media_dir.empty())
      for (const auto& image : request.pending_images)
        if (!starts_with(image.url, "data:") && !starts_with(image.url, "http://") &&
            !starts_with(image.url, "https://"))
          throw server::bad_request("local image paths are refused without --media-root DIR", image.param,
                                    "path_not_allowed");
    server::load_request_images(request, setup.media);
    PreparedInput prepared;
    try {
      prepared = model.prepare(request.input);
    } catch (const std::exception& e) {
      throw server::bad_request(std::string("Invalid input: ") + e.what(), "messages", "invalid_input");
    }
    request.input = UserInput{};  // the decoded images live in the prepared input now
    const int64_t ctx = model.info().context_length, n_prompt = int64_t(prepared.ids().size());
    if (ctx > 0 && n_prompt >= ctx)
      throw server::bad_request("This model's maximum context length is " + std::to_string(ctx) +
                                    " tokens. However, your messages resulted in " + std::to_string(n_prompt) +
                                    " tokens.",
                                "messages", "context_length_exceeded");
    if (ctx > 0) request.params.max_tokens = int(std::min<int64_t>(request.params.max_tokens, ctx - n_prompt));
    GenerationResult r = engine.generate(prepared, request.params);
    json logprobs = nullptr;
    if (request.params.logprobs)
      logprobs = server::logprobs_json(server::content_logprobs(r, model.text()), model.text());
    server::CompletionMeta meta = server::new_completion_meta(setup.model_name);
    return {result_line(line, 200, server::completion_json(meta, r, logprobs), meta.id), int64_t(r.token_ids.size()),
            false};
  } catch (const server::ApiError& e) {
    return {result_line(line, e.status(), e.to_json(), ""), 0, true};
  } catch (const ContextOverflowError& e) {
    return {result_line(line, 400, server::bad_request(e.what(), "messages", "context_length_exceeded").to_json(), ""),
            0, true};
  } catch (const std::exception& e) {
    return {result_line(line, 500, server::ApiError(500, e.what()).to_json(), ""), 0, true};
  }
}

std::string duration_text(double s) {
  char buf[32];
  if (s < 0 || s > 1e7) return "?";
  if (s < 60)
    std::snprintf(buf, sizeof buf, "%.0fs", s);
  else if (s < 3600)
    std::snprintf(buf, sizeof buf, "%dm%02ds", int(s) / 60, int(s) % 60);
  else
    std::snprintf(buf, sizeof buf, "%dh%02dm", int(s) / 3600, int(s) % 3600 / 60);
  return buf;
}

struct Progress {
  std::atomic<int64_t> done{0}, failed{0}, tokens{0};
};

void report_progress(const Progress& p, int64_t total, Clock::time_point start, bool terminal, bool final) {
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  const int64_t done = p.done;
  const double rate = elapsed > 0 ? done / elapsed : 0;
  const double tps = elapsed > 0 ? p.tokens / elapsed : 0;
  const std::string eta = done > 0 ? duration_text((total - done) / rate) : "?";
  char stats[160];
  std::snprintf(stats, sizeof stats, "%lld/%lld requests (%lld failed), %.2f req/s, %.1f tok/s, %s %s",
                static_cast<long long>(done), static_cast<long long>(total), static_cast<long long>(p.failed.load()),
                rate, tps, final ? "elapsed" : "ETA", final ? duration_text(elapsed).c_str() : eta.c_str());
  if (terminal) {
    constexpr int kWidth = 24;
    const int filled = total > 0 ? int(kWidth * done / total) : kWidth;
    std::string bar = std::string(size_t(filled), '#') + std::string(size_t(kWidth - filled), '.');
    std::fprintf(stderr, "\r\033[K[%s] %s%s", bar.c_str(), stats, final ? "\n" : "");
  } else {
    std::fprintf(stderr, "vlm batch: %s\n", stats);
  }
  std::fflush(stderr);
}

}  // namespace

int run_batch(const std::vector<std::string>& argv) {
  Command cmd = batch_command();
  Args args = Args::parse(cmd, argv);
  if (int rc = help_requested(cmd, args); rc >= 0) return rc;
  BatchSetup setup;
  const std::string model_id = args.require("model");
  setup.input_path = args.require("input");
  const std::string output_path = args.require("output");
  const int parallel = int(args.get_int("parallel", 1, 256).value_or(1));
  const int64_t max_requests = args.get_int("max-requests", 0, int64_t(1) << 40).value_or(-1);
  const Shard shard = resolve_shard(args);
  setup.model_name = model_id;
  setup.media.allow_remote = args.flag("allow-remote-media");
  if (auto root = args.get("media-root")) {
    std::error_code ec;
    if (!std::filesystem::is_directory(*root, ec)) throw UsageError("--media-root: no such directory: " + *root);
    setup.media.local_media_dir = *root;
  }
  setup.defaults.max_tokens = int(args.get_int("max-tokens", 1, 1 << 30).value_or(512));
  setup.defaults.prefill_chunk = int(args.get_int("prefill-chunk", 1, 1 << 20).value_or(setup.defaults.prefill_chunk));
  LoadOptions load = load_options(args);
  if (std::filesystem::absolute(setup.input_path) == std::filesystem::absolute(output_path))
    throw UsageError("--output must differ from --input");

  std::vector<InputLine> lines = read_input(setup.input_path, shard);
  const std::set<std::string> done_before = completed_ids(output_path);
  std::vector<const InputLine*> todo;
  int64_t in_shard = 0, answered = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    // Sharding is by position among the non-blank lines, so it does not depend on the ids.
    if (int64_t(i) % shard.count != shard.index) continue;
    ++in_shard;
    if (done_before.count(lines[i].custom_id)) {
      ++answered;
    } else if (max_requests < 0 || int64_t(todo.size()) < max_requests) {
      todo.push_back(&lines[i]);
    }
  }
  std::fprintf(stderr, "vlm batch: shard %lld/%lld: %lld requests, %lld already in %s, %zu to run now\n",
               static_cast<long long>(shard.index), static_cast<long long>(shard.count),
               static_cast<long long>(in_shard), static_cast<long long>(answered), output_path.c_str(), todo.size());
  ResultWriter writer(output_path, args.flag("fsync"));
  if (todo.empty()) return 0;

  ModelContext model = ModelContext::load(model_id, load);
  std::fprintf(stderr, "vlm batch: loaded %s (%s) in %.0f ms; %d request(s) at a time\n", model_id.c_str(),
               model.info().model_type.c_str(), model.info().load_ms, parallel);

  const PromptCache engine(model, 0);  // no prompt cache (the lines share no conversation), batching
  Progress progress;
  std::atomic<size_t> next{0};
  std::atomic<bool> write_failed{false};
  std::exception_ptr fatal;  // an output write that failed: no point going on
  auto worker = [&] {
    for (size_t i; !write_failed && (i = next.fetch_add(1)) < todo.size();) {
      Outcome outcome = run_request(model, engine, setup, *todo[i]);
      try {
        writer.append(dump_json(outcome.line));
      } catch (...) {
        if (!write_failed.exchange(true)) fatal = std::current_exception();
        return;
      }
      progress.tokens += outcome.tokens;
      progress.failed += outcome.failed ? 1 : 0;
      ++progress.done;
    }
  };
  const auto start = Clock::now();
  const bool terminal = ::isatty(STDERR_FILENO);
  std::vector<std::thread> workers;
  for (int w = 0; w < std::min<int>(parallel, int(todo.size())); ++w) workers.emplace_back(worker);
  // The main thread reports progress: a bar redrawn on a terminal, a line every 10 s in a job's log.
  const auto period = terminal ? std::chrono::milliseconds(250) : std::chrono::milliseconds(10000);
  auto last_report = start;
  while (progress.done < int64_t(todo.size()) && !write_failed) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (Clock::now() - last_report >= period) {
      report_progress(progress, int64_t(todo.size()), start, terminal, false);
      last_report = Clock::now();
    }
  }
  for (auto& t : workers) t.join();
  if (fatal) std::rethrow_exception(fatal);
  report_progress(progress, int64_t(todo.size()), start, terminal, true);
  return 0;
}

}  // namespace vlm::cli
