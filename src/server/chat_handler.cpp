// POST /v1/chat/completions: read and validate the body, wait for a slot, prepare the input, then
// generate into a JSON answer or a server-sent-event stream, stopping when the client goes away.
// The slots' generations decode together (continuous batching in PromptCache).
#include <algorithm>
#include <chrono>
#include <optional>
#include <string>

#include "generate/generator.h"
#include "server/chat_response.h"
#include "server/server_impl.h"

namespace vlm::server {

struct ChatJob {
  ChatRequest request;
  PreparedInput prepared;
  CompletionMeta meta;
  std::shared_ptr<Scheduler::Lease> lease;
  ActiveRequest* connection = nullptr;  // valid while the request is answered (stream included)
  std::chrono::steady_clock::time_point arrived = std::chrono::steady_clock::now();
  std::optional<std::chrono::steady_clock::time_point> first_token;  // set by the generation callback
};

namespace {

// For the time-to-first-token histogram: called from the generation callback.
void note_token(ChatJob& job) {
  if (!job.first_token) job.first_token = std::chrono::steady_clock::now();
}

}  // namespace

void Server::Impl::record_generation(const ChatJob& job, const GenerationResult& r) {
  const int64_t generated = int64_t(r.token_ids.size());
  tokens_generated += generated;
  metrics.count_tokens(r.stats.prompt_tokens, generated);
  if (job.first_token)
    metrics.observe_time_to_first_token(std::chrono::duration<double>(*job.first_token - job.arrived).count());
  if (generated > 1) metrics.observe_time_per_output_token(r.stats.generation_ms / 1000.0 / double(generated - 1));
}

// Cheap checks on a parsed request, before it queues or any image is decoded.
void Server::Impl::check_request_fits(const ChatRequest& request) const {
  // No token stands for more than max_token_bytes of text; the factor leaves room for normalizers that
  // shrink text (NFKC composition, stripping) so that a request that fits is never refused here.
  constexpr int64_t kNormalizationMargin = 4;
  const int64_t fewest_tokens = request.text_bytes / (max_token_bytes * kNormalizationMargin);
  if (ctx_size > 0 && fewest_tokens >= ctx_size)
    throw bad_request("This model's maximum context length is " + std::to_string(ctx_size) +
                          " tokens. However, your messages have " + std::to_string(request.text_bytes) +
                          " bytes of text, which is at least " + std::to_string(fewest_tokens) +
                          " tokens. Please reduce the length of the messages.",
                      "messages", "context_length_exceeded");
  // PaliGemma has no chat template: its prompt is one user turn (HF's processor and mlx-vlm take a single
  // prompt too). Anything else would be dropped without a word, so it is refused, saying what.
  if (model.info().model_type == "paligemma") {
    const auto& messages = request.input.messages;
    size_t prompt = messages.size();  // the last user turn: the one PaliGemma would use
    for (size_t i = 0; i < messages.size(); ++i)
      if (messages[i].role == "user") prompt = i;
    for (size_t i = 0; i < messages.size(); ++i) {
      if (i == prompt) continue;
      throw bad_request(
          "PaliGemma takes a single user message (one image and a prompt), without chat history; "
          "messages[" +
              std::to_string(i) + "] (role '" + messages[i].role +
              "') would be ignored. Send only the user message, with any instructions in its text.",
          "messages[" + std::to_string(i) + "]", "unsupported_message");
    }
  }
}

std::string Server::Impl::select_adapters(ChatRequest& request) const {
  std::vector<AdapterRef>& chosen = request.params.adapters;
  const size_t loaded = model.adapters().size();
  for (size_t i = 0; i < chosen.size(); ++i)
    if (size_t(chosen[i].id) >= loaded)
      throw bad_request("lora[" + std::to_string(i) + "].id " + std::to_string(chosen[i].id) + " is not loaded (" +
                            std::to_string(loaded) + " adapters; see --adapter).",
                        "lora[" + std::to_string(i) + "].id", "invalid_value");
  for (const auto& [name, id] : options.adapters)
    if (name == request.model) {
      if (std::none_of(chosen.begin(), chosen.end(), [id = id](const AdapterRef& a) { return a.id == id; }))
        chosen.push_back({id, 1.0f});
      return name;
    }
  return options.model_names[0];
}

void Server::Impl::handle_chat(const httplib::Request& req, httplib::Response& res) {
  ++requests;
  try {
    check_auth(req);
    if (stopping) throw ApiError(503, "The server is shutting down.", "", "server_shutting_down");
    auto job = std::make_shared<ChatJob>();
    job->connection = ActiveRequest::current();
    if (!job->connection) throw ApiError(500, "internal error: the request came without its connection");
    // The reservation of the body's memory is kept until the images (the bulk of a large body) are decoded,
    // so that bodies waiting in the queue count against the reactor's budget.
    RequestBody body = job->connection->take_body();
    job->request = parse_chat_request(std::move(body.bytes()), options.media, options.defaults,
                                      [this](const std::string& m) { check_model(m); });
    check_request_fits(job->request);
    const std::string reported_model = select_adapters(job->request);
    ActiveRequest* connection = job->connection;
    std::unique_ptr<Scheduler::Lease> lease = scheduler.acquire([connection] { return connection->client_gone(); });
    if (!lease) {
      ++disconnected;
      metrics.count_request(499);
      log(req, 499, "client left while queued");
      return;
    }
    job->lease = std::move(lease);
    // Images are fetched and decoded only now, so at most --parallel requests hold decoded pixels at once.
    load_request_images(job->request, options.media);
    body.release();
    try {
      job->prepared = model.prepare(job->request.input);
    } catch (const std::exception& e) {
      throw bad_request(std::string("Invalid input: ") + e.what(), "messages", "invalid_input");
    }
    job->request.input = UserInput{};  // the decoded images are in the prepared input now
    GenerationParams& params = job->request.params;
    const int64_t n_prompt = int64_t(job->prepared.ids().size());
    if (ctx_size > 0) {
      if (n_prompt >= ctx_size)
        throw bad_request("This model's maximum context length is " + std::to_string(ctx_size) +
                              " tokens. However, your messages resulted in " + std::to_string(n_prompt) +
                              " tokens. Please reduce the length of the messages or images.",
                          "messages", "context_length_exceeded");
      const int64_t room = ctx_size - n_prompt;
      if (job->request.max_tokens_given && params.max_tokens > room)
        throw bad_request("This model's maximum context length is " + std::to_string(ctx_size) +
                              " tokens. However, you requested " + std::to_string(n_prompt + params.max_tokens) +
                              " tokens (" + std::to_string(n_prompt) + " in the messages, " +
                              std::to_string(params.max_tokens) + " in the completion).",
                          "max_tokens", "context_length_exceeded");
      params.max_tokens = int(std::min<int64_t>(params.max_tokens, room));
    }
    job->meta = new_completion_meta(reported_model);

    if (job->request.stream) {
      res.set_header("Cache-Control", "no-cache");
      res.set_header("X-Accel-Buffering", "no");
      res.set_chunked_content_provider("text/event-stream", [this, job](size_t, httplib::DataSink& sink) {
        stream_completion(*job, sink);
        job->lease.reset();  // the slot is free as soon as the stream is written
        sink.done();
        return true;
      });
      log(req, 200, "stream");
      return;
    }

    GenerationResult r;
    json logprobs = nullptr;
    // The prompt cache batches this generation's decode steps with the other slots' (continuous batching).
    r = prompt_cache.generate(job->prepared, params, [&](std::string_view, int32_t) {
      note_token(*job);
      return !(cancel_all || job->connection->client_gone());
    });
    if (params.logprobs) logprobs = logprobs_json(content_logprobs(r, model.text()), model.text());
    record_generation(*job, r);
    if (r.finish_reason == "cancelled") {
      if (!cancel_all) {
        ++disconnected;
        metrics.count_request(499);
        log(req, 499,
            "client disconnected; generation stopped after " + std::to_string(r.token_ids.size()) + " tokens");
        return;
      }
      throw ApiError(503, "The server is shutting down; the generation was cancelled.", "", "server_shutting_down");
    }
    res.set_content(dump_json(completion_json(job->meta, r, logprobs)), "application/json");
    ++completed;
    metrics.count_request(200);
    log(req, 200, std::to_string(r.token_ids.size()) + " tokens");
  } catch (const ApiError& e) {
    ++failed;
    metrics.count_request(e.status());
    send_error(res, e);
    log(req, e.status(), e.what());
  } catch (const ContextOverflowError& e) {
    ++failed;
    metrics.count_request(400);
    send_error(res, bad_request(e.what(), "messages", "context_length_exceeded"));
    log(req, 400, e.what());
  } catch (const std::exception& e) {
    ++failed;
    metrics.count_request(500);
    send_error(res, ApiError(500, e.what()));
    log(req, 500, e.what());
  }
}

void Server::Impl::stream_completion(ChatJob& job, httplib::DataSink& sink) {
  const bool usage = job.request.include_usage;
  const GenerationParams& params = job.request.params;
  bool ok = true;
  auto write = [&](const std::string& s) {
    if (ok) ok = sink.write(s.data(), s.size());
    return ok;
  };
  write(sse_event(chunk_json(job.meta, {{"role", "assistant"}, {"content", ""}}, "", usage)));
  GenerationResult r;
  json logprobs = nullptr;
  try {
    // Decode steps are batched with the other slots'; a slow client delays only its own stream (the
    // others' steps wait for this one's at most StepBatcher's gathering time).
    r = prompt_cache.generate(job.prepared, params, [&](std::string_view text, int32_t) {
      note_token(job);
      if (cancel_all || job.connection->client_gone()) return false;
      if (text.empty()) return true;
      return write(sse_event(chunk_json(job.meta, {{"content", std::string(text)}}, "", usage)));
    });
    if (params.logprobs) logprobs = logprobs_json(content_logprobs(r, model.text()), model.text());
  } catch (const std::exception& e) {
    ++failed;
    metrics.count_request(500);  // the status line said 200; the error travels in the stream
    write(sse_event(ApiError(500, e.what()).to_json()));
    write("data: [DONE]\n\n");
    return;
  }
  record_generation(job, r);
  if (r.finish_reason == "cancelled") {
    if (cancel_all && ok && !job.connection->client_gone()) {
      ++failed;
      metrics.count_request(503);
      write(sse_event(
          ApiError(503, "The server is shutting down; the generation was cancelled.", "", "server_shutting_down")
              .to_json()));
      write("data: [DONE]\n\n");
    } else {
      ++disconnected;
      metrics.count_request(499);
    }
    return;
  }
  // Per-token log-probabilities are known once generation ends, so they travel in the final chunk.
  write(sse_event(chunk_json(job.meta, json::object(), openai_finish_reason(r.finish_reason), usage, logprobs)));
  if (usage)
    write(sse_event(usage_chunk_json(
        job.meta, usage_json(r.stats.prompt_tokens, int64_t(r.token_ids.size()), r.stats.cached_tokens))));
  write("data: [DONE]\n\n");
  if (ok) {
    ++completed;
    metrics.count_request(200);
  } else {
    ++disconnected;
    metrics.count_request(499);
  }
}

}  // namespace vlm::server
