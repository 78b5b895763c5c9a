// POST /v1/chat/completions bodies -> model input and generation parameters, validated field by field
// (errors name the offending parameter the way OpenAI does, e.g. "messages[1].content[0].image_url").
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "server/media_source.h"
#include "vlm/vlm.hpp"

namespace vlm::server {

struct RequestDefaults {
  int max_tokens = 512;      // when the request gives neither max_tokens nor max_completion_tokens
  float temperature = 0.0f;  // OpenAI's default is 1; a local server defaults to greedy (--temperature)
  // Prompt tokens per engine turn (--prefill-chunk): a new prompt gives the engine to the others'
  // decode steps this often, so it bounds how long their streams stall (~2 s on 2 cores at 128).
  int prefill_chunk = 128;
};

// An image part whose URL is not fetched or decoded yet (see load_request_images).
struct PendingImage {
  size_t message = 0, part = 0;  // where its placeholder sits in input.messages
  std::string url;
  std::string param;  // "messages[i].content[k].image_url", for errors
};

struct ChatRequest {
  std::string model;
  UserInput input;
  std::vector<PendingImage> pending_images;  // placeholders in `input` until loaded
  int64_t text_bytes = 0;                    // all text parts together (a cheap bound on the prompt length)
  GenerationParams params;
  bool max_tokens_given = false;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
};

// Throws ApiError (400) on malformed JSON, wrong types, missing fields and too many images. Images are
// not fetched or decoded here (see load_request_images), so a request costs little until it gets a slot.
// `body` is consumed: it is freed as soon as it is parsed.
ChatRequest parse_chat_request(std::string body, const MediaLimits& limits, const RequestDefaults& defaults,
                               const std::function<void(const std::string&)>& check_model = nullptr);

// Fetches and decodes the pending images into `request.input`, in order, within the per-image limits and
// the request's total pixel budget (MediaLimits::max_request_pixels). Throws ApiError naming the part.
void load_request_images(ChatRequest& request, const MediaLimits& limits);

}  // namespace vlm::server
