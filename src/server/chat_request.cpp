#include "server/chat_request.h"

#include <cmath>

#include "io/json_file.h"
#include "server/api_error.h"

namespace vlm::server {

namespace {

const char* type_name(const json& v) {
  if (v.is_string()) return "a string";
  if (v.is_boolean()) return "a boolean";
  if (v.is_number()) return "a number";
  if (v.is_array()) return "an array";
  if (v.is_object()) return "an object";
  return "null";
}

[[noreturn]] void wrong_type(const std::string& param, const char* expected, const json& v) {
  throw bad_request("Invalid type for '" + param + "': expected " + expected + ", but got " + type_name(v) + ".", param,
                    "invalid_type");
}

// Absent and null are the same to OpenAI's clients (they drop NOT_GIVEN, some send null).
const json* field(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it == obj.end() || it->is_null() ? nullptr : &*it;
}

double number(const json& v, const std::string& param, double lo, double hi) {
  if (!v.is_number()) wrong_type(param, "a number", v);
  double x = v.get<double>();
  if (!std::isfinite(x) || x < lo || x > hi)
    throw bad_request("Invalid value for '" + param + "': " + v.dump() + " is not in [" + json(lo).dump() + ", " +
                          json(hi).dump() + "].",
                      param, "invalid_value");
  return x;
}

int64_t integer(const json& v, const std::string& param, int64_t lo, int64_t hi) {
  if (!v.is_number_integer()) wrong_type(param, "an integer", v);
  if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX))
    throw bad_request("Invalid value for '" + param + "': out of range.", param, "invalid_value");
  int64_t x = v.get<int64_t>();
  if (x < lo || x > hi)
    throw bad_request("Invalid value for '" + param + "': " + std::to_string(x) + " is not in [" + std::to_string(lo) +
                          ", " + std::to_string(hi) + "].",
                      param, "invalid_value");
  return x;
}

bool boolean(const json& v, const std::string& param) {
  if (!v.is_boolean()) wrong_type(param, "a boolean", v);
  return v.get<bool>();
}

std::string string(const json& v, const std::string& param) {
  if (!v.is_string()) wrong_type(param, "a string", v);
  return v.get<std::string>();
}

UserInput::Message parse_message(json& m, const std::string& where, size_t index, const MediaLimits& limits,
                                 ChatRequest& request) {
  if (!m.is_object()) wrong_type(where, "an object", m);
  const json* role = field(m, "role");
  if (!role) throw bad_request("Missing required parameter: '" + where + ".role'.", where + ".role", "missing");
  UserInput::Message msg;
  msg.role = string(*role, where + ".role");
  if (msg.role == "developer") msg.role = "system";  // OpenAI's newer name for the system turn
  if (msg.role != "system" && msg.role != "user" && msg.role != "assistant")
    throw bad_request(
        "Invalid value for '" + where + ".role': '" + msg.role + "' (supported: system, developer, user, assistant).",
        where + ".role", "invalid_value");
  const json* content = field(m, "content");
  if (!content) {
    if (msg.role != "assistant")
      throw bad_request("Missing required parameter: '" + where + ".content'.", where + ".content", "missing");
    return msg;
  }
  if (content->is_string()) {
    request.text_bytes += int64_t(content->get_ref<const std::string&>().size());
    msg.content.push_back(UserInput::Part::text_part(std::move(m["content"].get_ref<std::string&>())));
    return msg;
  }
  if (!content->is_array()) wrong_type(where + ".content", "a string or an array of content parts", *content);
  for (size_t k = 0; k < content->size(); ++k) {
    json& part = m["content"][k];
    std::string pw = where + ".content[" + std::to_string(k) + "]";
    if (!part.is_object()) wrong_type(pw, "an object", part);
    const json* type = field(part, "type");
    if (!type) throw bad_request("Missing required parameter: '" + pw + ".type'.", pw + ".type", "missing");
    std::string t = string(*type, pw + ".type");
    if (t == "text") {
      const json* text = field(part, "text");
      if (!text) throw bad_request("Missing required parameter: '" + pw + ".text'.", pw + ".text", "missing");
      std::string t = string(*text, pw + ".text");
      request.text_bytes += int64_t(t.size());
      msg.content.push_back(UserInput::Part::text_part(std::move(t)));
    } else if (t == "image_url") {
      const json* iu = field(part, "image_url");
      if (!iu) throw bad_request("Missing required parameter: '" + pw + ".image_url'.", pw + ".image_url", "missing");
      // The URL (a base64 data: URL may be most of the body) is moved out of the document, not copied.
      std::string* url = nullptr;
      if (iu->is_string()) {
        url = &part["image_url"].get_ref<std::string&>();
      } else if (iu->is_object()) {
        const json* u = field(*iu, "url");
        if (!u)
          throw bad_request("Missing required parameter: '" + pw + ".image_url.url'.", pw + ".image_url.url",
                            "missing");
        if (!u->is_string()) wrong_type(pw + ".image_url.url", "a string", *u);
        url = &part["image_url"]["url"].get_ref<std::string&>();
      } else {
        wrong_type(pw + ".image_url", "an object", *iu);
      }
      if (int64_t(request.pending_images.size()) >= limits.max_images)
        throw bad_request("Too many images: at most " + std::to_string(limits.max_images) + " per request.", pw,
                          "too_many_images");
      request.pending_images.push_back({index, msg.content.size(), std::move(*url), pw + ".image_url"});
      msg.content.push_back(UserInput::Part{UserInput::Part::Type::Image, {}, {}, {}});
    } else {
      throw bad_request("Invalid value for '" + pw + ".type': '" + t + "' (supported: text, image_url).", pw + ".type",
                        "invalid_value");
    }
  }
  return msg;
}

std::vector<std::string> parse_stop(const json& v) {
  if (v.is_string()) return {v.get<std::string>()};
  if (!v.is_array()) wrong_type("stop", "a string or an array of strings", v);
  if (v.size() > 4) throw bad_request("Invalid value for 'stop': at most 4 sequences.", "stop", "invalid_value");
  std::vector<std::string> out;
  for (size_t i = 0; i < v.size(); ++i) {
    std::string s = string(v[i], "stop[" + std::to_string(i) + "]");
    if (s.empty()) throw bad_request("Invalid value for 'stop': empty string.", "stop", "invalid_value");
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace

ChatRequest parse_chat_request(std::string body, const MediaLimits& limits, const RequestDefaults& defaults,
                               const std::function<void(const std::string&)>& check_model) {
  json doc;
  try {
    doc = parse_json_limited(body, "request body");
    std::string().swap(body);  // the document holds everything from here on
  } catch (const json::exception& e) {
    throw bad_request(std::string("We could not parse the JSON body of your request: ") + e.what(), "", "invalid_json");
  } catch (const Error& e) {  // nested too deeply
    throw bad_request(std::string("We could not parse the JSON body of your request: ") + e.what(), "", "invalid_json");
  }
  if (!doc.is_object()) throw bad_request("The request body must be a JSON object.", "", "invalid_json");

  ChatRequest r;
  const json* model = field(doc, "model");
  if (!model) throw bad_request("Missing required parameter: 'model'.", "model", "missing");
  r.model = string(*model, "model");
  if (check_model) check_model(r.model);

  r.input.options.prefill_chunk = defaults.prefill_chunk;
  GenerationParams& p = r.params;
  p.max_tokens = defaults.max_tokens;
  p.sampling.temperature = defaults.temperature;
  for (const char* key : {"max_tokens", "max_completion_tokens"})
    if (const json* v = field(doc, key)) {
      p.max_tokens = int(integer(*v, key, 1, 1 << 30));
      r.max_tokens_given = true;
    }
  if (const json* v = field(doc, "temperature")) p.sampling.temperature = float(number(*v, "temperature", 0, 2));
  if (const json* v = field(doc, "top_p")) p.sampling.top_p = float(number(*v, "top_p", 0, 1));
  if (p.sampling.top_p <= 0) p.sampling.top_p = 1e-6f;  // top_p = 0 keeps the single most likely token
  if (const json* v = field(doc, "seed")) {
    if (!v->is_number_integer()) wrong_type("seed", "an integer", *v);
    p.sampling.seed = v->is_number_unsigned() ? v->get<uint64_t>() : uint64_t(v->get<int64_t>());
  }
  // Extensions other OpenAI-compatible servers (vLLM, llama.cpp) accept as well.
  if (const json* v = field(doc, "top_k")) p.sampling.top_k = int(integer(*v, "top_k", 0, 1 << 20));
  if (const json* v = field(doc, "min_p")) p.sampling.min_p = float(number(*v, "min_p", 0, 1));
  if (const json* v = field(doc, "repetition_penalty"))
    p.sampling.repetition_penalty = float(number(*v, "repetition_penalty", 0.01, 10));
  if (const json* v = field(doc, "ignore_eos")) p.ignore_eos = boolean(*v, "ignore_eos");
  if (const json* v = field(doc, "lora")) {  // llama.cpp: [{"id": i, "scale": s}]
    if (!v->is_array()) wrong_type("lora", "an array", *v);
    for (size_t i = 0; i < v->size(); ++i) {
      const json& e = (*v)[i];
      const std::string at = "lora[" + std::to_string(i) + "]";
      if (!e.is_object()) wrong_type(at, "an object", e);
      const json* id = field(e, "id");
      if (!id) throw bad_request("Missing required parameter: '" + at + ".id'.", at + ".id", "missing");
      const json* scale = field(e, "scale");
      p.adapters.push_back(
          {int(integer(*id, at + ".id", 0, 1 << 20)), scale ? float(number(*scale, at + ".scale", -100, 100)) : 1.0f});
    }
  }
  if (const json* v = field(doc, "stop")) p.stop = parse_stop(*v);
  if (const json* v = field(doc, "n"))
    if (integer(*v, "n", 1, 128) != 1)
      throw bad_request("Invalid value for 'n': only n = 1 is supported.", "n", "invalid_value");
  if (const json* v = field(doc, "logprobs")) p.logprobs = boolean(*v, "logprobs");
  if (const json* v = field(doc, "top_logprobs")) {
    p.top_logprobs = int(integer(*v, "top_logprobs", 0, 20));
    if (!p.logprobs && p.top_logprobs > 0)
      throw bad_request("Invalid value for 'top_logprobs': requires 'logprobs' to be true.", "top_logprobs",
                        "invalid_value");
  }
  if (const json* v = field(doc, "stream")) r.stream = boolean(*v, "stream");
  if (const json* v = field(doc, "stream_options")) {
    if (!r.stream)
      throw bad_request("Invalid value for 'stream_options': only allowed when 'stream' is true.", "stream_options",
                        "invalid_value");
    if (!v->is_object()) wrong_type("stream_options", "an object", *v);
    if (const json* u = field(*v, "include_usage")) r.include_usage = boolean(*u, "stream_options.include_usage");
  }

  json* messages = doc.contains("messages") && !doc["messages"].is_null() ? &doc["messages"] : nullptr;
  if (!messages) throw bad_request("Missing required parameter: 'messages'.", "messages", "missing");
  if (!messages->is_array()) wrong_type("messages", "an array", *messages);
  if (messages->empty())
    throw bad_request("Invalid value for 'messages': the list is empty.", "messages", "invalid_value");
  for (size_t i = 0; i < messages->size(); ++i)
    r.input.messages.push_back(parse_message((*messages)[i], "messages[" + std::to_string(i) + "]", i, limits, r));
  return r;
}

void load_request_images(ChatRequest& request, const MediaLimits& limits) {
  int64_t pixels_left = limits.max_request_pixels;
  for (PendingImage& img : request.pending_images) {
    UserInput::Part part = load_image_part(img.url, limits, img.param, pixels_left);
    std::string().swap(img.url);  // the encoded image is not needed once decoded
    pixels_left -= int64_t(part.image.width) * part.image.height;
    request.input.messages[img.message].content[img.part] = std::move(part);
  }
  request.pending_images.clear();
}

}  // namespace vlm::server
