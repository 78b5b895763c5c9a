// POST /v1/chat/completions: read and validate the body, wait for a slot, prepare the input, then
// generate into a JSON answer or a server-sent-event stream, stopping when the client goes away.
#include <string>

#include "generate/generator.h"
#include "server/chat_response.h"
#include "server/connection_probe.h"
#include "server/server_impl.h"

namespace vlm::server {

struct ChatJob {
  ChatRequest request;
  PreparedInput prepared;
  CompletionMeta meta;
  std::shared_ptr<Scheduler::Lease> lease;
  std::shared_ptr<ConnectionProbe> probe;
};

void Server::Impl::handle_chat(const httplib::Request& req, httplib::Response& res,
                               const httplib::ContentReader& reader) {
  ++requests;
  try {
    check_auth(req);
    if (stopping) throw ApiError(503, "The server is shutting down.", "", "server_shutting_down");
    std::string body;
    bool too_large = false;
    const size_t limit = size_t(options.max_body_bytes);
    reader([&](const char* data, size_t n) {
      // Keep reading past the limit (discarding) so the client gets to see the 413.
      if (too_large || body.size() + n > limit) {
        too_large = true;
        body.clear();
      } else {
        body.append(data, n);
      }
      return true;
    });
    if (too_large)
      throw ApiError(413, "The request body is larger than the limit of " + std::to_string(limit) + " bytes.", "",
                     "request_too_large");

    auto job = std::make_shared<ChatJob>();
    job->request =
        parse_chat_request(body, options.media, options.defaults, [this](const std::string& m) { check_model(m); });
    body.clear();
    job->probe = std::make_shared<ConnectionProbe>(req.local_addr, req.local_port, req.remote_addr, req.remote_port);
    std::unique_ptr<Scheduler::Lease> lease = scheduler.acquire([&] { return job->probe->closed(); });
    if (!lease) {
      ++disconnected;
      log(req, 499, "client left while queued");
      return;
    }
    job->lease = std::move(lease);
    {
      Scheduler::Turn turn(&scheduler);
      try {
        job->prepared = model.prepare(job->request.input);
      } catch (const std::exception& e) {
        throw bad_request(std::string("Invalid input: ") + e.what(), "messages", "invalid_input");
      }
    }
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
    job->meta = new_completion_meta(options.model_names[0]);

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
    {
      Scheduler::Turn turn(&scheduler);
      r = model.generate(job->prepared, params, [&](std::string_view, int32_t) {
        if (cancel_all || job->probe->closed()) return false;
        turn.yield();
        return true;
      });
      if (params.logprobs) logprobs = logprobs_json(r.logprobs, model.text());
    }
    tokens_generated += int64_t(r.token_ids.size());
    if (r.finish_reason == "cancelled") {
      if (!cancel_all) {
        ++disconnected;
        log(req, 499,
            "client disconnected; generation stopped after " + std::to_string(r.token_ids.size()) + " tokens");
        return;
      }
      throw ApiError(503, "The server is shutting down; the generation was cancelled.", "", "server_shutting_down");
    }
    res.set_content(dump_json(completion_json(job->meta, r, logprobs)), "application/json");
    ++completed;
    log(req, 200, std::to_string(r.token_ids.size()) + " tokens");
  } catch (const ApiError& e) {
    ++failed;
    send_error(res, e);
    log(req, e.status(), e.what());
  } catch (const ContextOverflowError& e) {
    ++failed;
    send_error(res, bad_request(e.what(), "messages", "context_length_exceeded"));
    log(req, 400, e.what());
  } catch (const std::exception& e) {
    ++failed;
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
    Scheduler::Turn turn(&scheduler);
    r = model.generate(job.prepared, params, [&](std::string_view text, int32_t) {
      if (cancel_all || job.probe->closed()) return false;
      if (text.empty()) {
        turn.yield();
        return true;
      }
      std::string event = sse_event(chunk_json(job.meta, {{"content", std::string(text)}}, "", usage));
      return turn.released([&] { return write(event); });
    });
    if (params.logprobs) logprobs = logprobs_json(r.logprobs, model.text());
  } catch (const std::exception& e) {
    ++failed;
    write(sse_event(ApiError(500, e.what()).to_json()));
    write("data: [DONE]\n\n");
    return;
  }
  tokens_generated += int64_t(r.token_ids.size());
  if (r.finish_reason == "cancelled") {
    if (cancel_all && ok && !job.probe->closed()) {
      ++failed;
      write(sse_event(
          ApiError(503, "The server is shutting down; the generation was cancelled.", "", "server_shutting_down")
              .to_json()));
      write("data: [DONE]\n\n");
    } else {
      ++disconnected;
    }
    return;
  }
  // Per-token log-probabilities are known once generation ends, so they travel in the final chunk.
  write(sse_event(chunk_json(job.meta, json::object(), openai_finish_reason(r.finish_reason), usage, logprobs)));
  if (usage)
    write(sse_event(usage_chunk_json(job.meta, usage_json(r.stats.prompt_tokens, int64_t(r.token_ids.size())))));
  write("data: [DONE]\n\n");
  if (ok)
    ++completed;
  else
    ++disconnected;
}

}  // namespace vlm::server
