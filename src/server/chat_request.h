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
};

struct ChatRequest {
  std::string model;
  UserInput input;
  GenerationParams params;
  bool max_tokens_given = false;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
};

// Throws ApiError (400) on malformed JSON, wrong types, missing fields and refused or undecodable images.
// `check_model` runs before any image is fetched or decoded (an unknown model fails fast).
ChatRequest parse_chat_request(const std::string& body, const MediaLimits& limits, const RequestDefaults& defaults,
                               const std::function<void(const std::string&)>& check_model = nullptr);

}  // namespace vlm::server
