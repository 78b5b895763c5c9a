// The C API of vlm.h over the C++ API: exceptions become status codes plus a per-thread message.
#include <filesystem>
#include <new>
#include <string>

#include "api/internal.h"
#include "generate/generator.h"
#include "io/hub.h"
#include "vlm/vlm.h"

struct vlm_model {
  vlm::ModelContext ctx;
};

struct vlm_input {
  vlm::UserInput input;
};

struct vlm_result {
  vlm::GenerationResult result;
};

struct vlm_session {
  vlm::ChatSession session;
};

namespace {

thread_local std::string g_last_error;

vlm_status set_error(vlm_status status, const std::string& message) {
  g_last_error = message;
  return status;
}

// Runs `fn`, turning exceptions into `status` (context overflow has its own code).
template <typename Fn>
vlm_status guarded(vlm_status status, Fn&& fn) {
  try {
    fn();
    return VLM_OK;
  } catch (const vlm::ContextOverflowError& e) {
    return set_error(VLM_ERR_CONTEXT_OVERFLOW, e.what());
  } catch (const std::bad_alloc&) {
    return set_error(VLM_ERR_RUNTIME, "out of memory");
  } catch (const std::exception& e) {
    return set_error(status, e.what());
  } catch (...) {
    return set_error(VLM_ERR_RUNTIME, "unknown error");
  }
}

vlm_status add_part(vlm_input* input, vlm::UserInput::Part part) {
  if (!input) return set_error(VLM_ERR_INVALID_ARGUMENT, "vlm_input is NULL");
  if (input->input.messages.empty()) input->input.messages.push_back({"user", {}});
  return guarded(VLM_ERR_RUNTIME, [&] { input->input.messages.back().content.push_back(std::move(part)); });
}

}  // namespace

extern "C" {

const char* vlm_version(void) {
  return "0.1.0";
}

const char* vlm_status_string(vlm_status status) {
  switch (status) {
    case VLM_OK: return "ok";
    case VLM_ERR_INVALID_ARGUMENT: return "invalid argument";
    case VLM_ERR_NOT_FOUND: return "not found";
    case VLM_ERR_LOAD: return "model load failed";
    case VLM_ERR_INPUT: return "invalid input";
    case VLM_ERR_CONTEXT_OVERFLOW: return "prompt exceeds the model's context";
    case VLM_ERR_RUNTIME: return "runtime error";
  }
  return "unknown status";
}

const char* vlm_last_error(void) {
  return g_last_error.c_str();
}

vlm_status vlm_model_load(const char* id_or_dir, vlm_model** out_model) {
  return vlm_model_load_with_options(id_or_dir, nullptr, out_model);
}

vlm_status vlm_model_load_with_options(const char* id_or_dir, const vlm_load_options* options, vlm_model** out_model) {
  if (!out_model) return set_error(VLM_ERR_INVALID_ARGUMENT, "vlm_model_load: out_model is NULL");
  *out_model = nullptr;
  if (!id_or_dir || !*id_or_dir) return set_error(VLM_ERR_INVALID_ARGUMENT, "vlm_model_load: no model given");
  vlm::LoadOptions load;
  if (options) {
    if (options->threads < 0) return set_error(VLM_ERR_INVALID_ARGUMENT, "vlm_model_load: threads is negative");
    load.threads = options->threads;
    if (options->precision) load.precision = options->precision;
    if (!load.precision.empty() && load.precision != "exact" && load.precision != "fast")
      return set_error(VLM_ERR_INVALID_ARGUMENT,
                       "vlm_model_load: precision '" + load.precision + "' is not one of: exact, fast");
  }
  std::string dir;
  vlm_status st = guarded(VLM_ERR_NOT_FOUND, [&] { dir = vlm::resolve_model_dir(id_or_dir); });
  if (st != VLM_OK) return st;
  return guarded(VLM_ERR_LOAD, [&] { *out_model = new vlm_model{vlm::ModelContext::load(dir, load)}; });
}

void vlm_model_free(vlm_model* model) {
  delete model;
}

const char* vlm_model_type(const vlm_model* model) {
  return model ? model->ctx.info().model_type.c_str() : "";
}

int64_t vlm_model_context_length(const vlm_model* model) {
  return model ? model->ctx.info().context_length : 0;
}

vlm_status vlm_model_load_adapter(vlm_model* model, const char* id_or_dir, int32_t* out_id) {
  if (!model || !out_id || !id_or_dir || !*id_or_dir)
    return set_error(VLM_ERR_INVALID_ARGUMENT, "vlm_model_load_adapter: model, id_or_dir or out_id is NULL");
  return guarded(VLM_ERR_LOAD, [&] { *out_id = model->ctx.load_adapter(id_or_dir); });
}

vlm_input* vlm_input_new(void) {
  return new (std::nothrow) vlm_input();
}

void vlm_input_free(vlm_input* input) {
  delete input;
}

vlm_status vlm_input_add_message(vlm_input* input, const char* role) {
  if (!input || !role || !*role) return set_error(VLM_ERR_INVALID_ARGUMENT, "vlm_input_add_message: NULL argument");
  return guarded(VLM_ERR_RUNTIME, [&] { input->input.messages.push_back({role, {}}); });
}

vlm_status vlm_input_add_text(vlm_input* input, const char* text) {
  if (!text) return set_error(VLM_ERR_INVALID_ARGUMENT, "vlm_input_add_text: text is NULL");
  return add_part(input, vlm::UserInput::Part::text_part(text));
}

vlm_status vlm_input_add_image_file(vlm_input* input, const char* path) {
  if (!path) return set_error(VLM_ERR_INVALID_ARGUMENT, "vlm_input_add_image_file: path is NULL");
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return set_error(VLM_ERR_NOT_FOUND, std::string("image not found: ") + path);
  return add_part(input, vlm::UserInput::Part::image_path(path));
}

vlm_status vlm_input_add_image_bytes(vlm_input* input, const uint8_t* data, size_t size) {
  if (!data || size == 0) return set_error(VLM_ERR_INVALID_ARGUMENT, "vlm_input_add_image_bytes: no data");
  return add_part(input, vlm::UserInput::Part::image_bytes(std::vector<uint8_t>(data, data + size)));
}

vlm_status vlm_input_add_image_rgb(vlm_input* input, const uint8_t* rgb, int32_t width, int32_t height) {
  if (!rgb || width <= 0 || height <= 0)
    return set_error(VLM_ERR_INVALID_ARGUMENT, "vlm_input_add_image_rgb: no pixels or bad size");
  size_t n = size_t(width) * size_t(height) * 3;
  return add_part(input, vlm::UserInput::Part::image_rgb(width, height, std::vector<uint8_t>(rgb, rgb + n)));
}

vlm_status vlm_input_add_video_file(vlm_input* input, const char* path) {
  if (!path) return set_error(VLM_ERR_INVALID_ARGUMENT, "vlm_input_add_video_file: path is NULL");
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return set_error(VLM_ERR_NOT_FOUND, std::string("video not found: ") + path);
  return add_part(input, vlm::UserInput::Part::video_path(path));
}

vlm_status vlm_input_set_resize(vlm_input* input, int32_t width, int32_t height) {
  if (!input || width < 0 || height < 0 || (width > 0) != (height > 0))
    return set_error(VLM_ERR_INVALID_ARGUMENT, "vlm_input_set_resize: give both sizes > 0 (or both 0)");
  input->input.options.resize_width = width;
  input->input.options.resize_height = height;
  return VLM_OK;
}

vlm_generation_params vlm_generation_params_default(void) {
  vlm::GenerationParams d;
  vlm_generation_params p{};
  p.max_tokens = d.max_tokens;
  p.temperature = d.sampling.temperature;
  p.top_p = d.sampling.top_p;
  p.top_k = d.sampling.top_k;
  p.min_p = d.sampling.min_p;
  p.repetition_penalty = d.sampling.repetition_penalty;
  p.repetition_context_size = d.sampling.repetition_context_size;
  return p;
}

}  // extern "C"

namespace {

vlm_status to_params(const char* fn, const vlm_generation_params* params, vlm::GenerationParams& gp) {
  vlm_generation_params cp = params ? *params : vlm_generation_params_default();
  if (cp.max_tokens < 0 || cp.top_p < 0 || cp.top_p > 1 || cp.min_p < 0 || cp.min_p > 1 || cp.top_k < 0 ||
      cp.repetition_penalty <= 0 || (cp.n_stop > 0 && !cp.stop) || (cp.n_adapters > 0 && !cp.adapter_ids))
    return set_error(VLM_ERR_INVALID_ARGUMENT, std::string(fn) + ": parameter out of range");
  gp.max_tokens = cp.max_tokens;
  gp.sampling.temperature = cp.temperature;
  gp.sampling.top_p = cp.top_p;
  gp.sampling.top_k = cp.top_k;
  gp.sampling.min_p = cp.min_p;
  gp.sampling.repetition_penalty = cp.repetition_penalty;
  gp.sampling.repetition_context_size = cp.repetition_context_size;
  if (cp.has_seed) gp.sampling.seed = cp.seed;
  gp.ignore_eos = cp.ignore_eos != 0;
  for (size_t i = 0; i < cp.n_adapters; ++i)
    gp.adapters.push_back({cp.adapter_ids[i], cp.adapter_scales ? cp.adapter_scales[i] : 1.0f});
  for (size_t i = 0; i < cp.n_stop; ++i)
    if (cp.stop[i]) gp.stop.push_back(cp.stop[i]);
  return VLM_OK;
}

vlm::StreamCallback to_callback(vlm_stream_callback callback, void* user_data) {
  if (!callback) return nullptr;
  return [=](std::string_view text, int32_t id) { return callback(text.data(), text.size(), id, user_data) != 0; };
}

// Runs `generate` into a new result.
template <typename Fn>
vlm_status make_result(vlm_result** out_result, Fn&& generate) {
  auto* r = new (std::nothrow) vlm_result();
  if (!r) return set_error(VLM_ERR_RUNTIME, "out of memory");
  vlm_status st = guarded(VLM_ERR_RUNTIME, [&] { r->result = generate(); });
  if (st != VLM_OK) {
    delete r;
    return st;
  }
  *out_result = r;
  return VLM_OK;
}

}  // namespace

extern "C" {

vlm_status vlm_generate(vlm_model* model, const vlm_input* input, const vlm_generation_params* params,
                        vlm_stream_callback callback, void* user_data, vlm_result** out_result) {
  if (!out_result) return set_error(VLM_ERR_INVALID_ARGUMENT, "vlm_generate: out_result is NULL");
  *out_result = nullptr;
  if (!model || !input) return set_error(VLM_ERR_INVALID_ARGUMENT, "vlm_generate: model or input is NULL");
  vlm::GenerationParams gp;
  if (vlm_status st = to_params("vlm_generate", params, gp); st != VLM_OK) return st;
  vlm::PreparedInput prepared;
  vlm_status st = guarded(VLM_ERR_INPUT, [&] { prepared = model->ctx.prepare(input->input); });
  if (st != VLM_OK) return st;
  const vlm::StreamCallback cb = to_callback(callback, user_data);
  return make_result(out_result, [&] { return model->ctx.generate(prepared, gp, cb); });
}

vlm_status vlm_session_new(vlm_model* model, vlm_session** out_session) {
  if (!out_session) return set_error(VLM_ERR_INVALID_ARGUMENT, "vlm_session_new: out_session is NULL");
  *out_session = nullptr;
  if (!model) return set_error(VLM_ERR_INVALID_ARGUMENT, "vlm_session_new: model is NULL");
  return guarded(VLM_ERR_RUNTIME, [&] { *out_session = new vlm_session{vlm::ChatSession(model->ctx)}; });
}

void vlm_session_free(vlm_session* session) {
  delete session;
}

void vlm_session_reset(vlm_session* session) {
  if (session) session->session.reset();
}

int64_t vlm_session_cached_tokens(const vlm_session* session) {
  return session ? session->session.cached_tokens() : 0;
}

vlm_status vlm_session_send(vlm_session* session, const vlm_input* turn, const vlm_generation_params* params,
                            vlm_stream_callback callback, void* user_data, vlm_result** out_result) {
  if (!out_result) return set_error(VLM_ERR_INVALID_ARGUMENT, "vlm_session_send: out_result is NULL");
  *out_result = nullptr;
  if (!session || !turn) return set_error(VLM_ERR_INVALID_ARGUMENT, "vlm_session_send: session or turn is NULL");
  if (turn->input.messages.size() != 1)
    return set_error(VLM_ERR_INVALID_ARGUMENT, "vlm_session_send: the turn must hold exactly one message, it has " +
                                                   std::to_string(turn->input.messages.size()));
  vlm::GenerationParams gp;
  if (vlm_status st = to_params("vlm_session_send", params, gp); st != VLM_OK) return st;
  session->session.set_options(turn->input.options);
  const vlm::StreamCallback cb = to_callback(callback, user_data);
  return make_result(out_result, [&] { return session->session.send(turn->input.messages[0], gp, cb); });
}

const char* vlm_result_text(const vlm_result* result) {
  return result ? result->result.text.c_str() : "";
}

const char* vlm_result_finish_reason(const vlm_result* result) {
  return result ? result->result.finish_reason.c_str() : "";
}

size_t vlm_result_n_tokens(const vlm_result* result) {
  return result ? result->result.token_ids.size() : 0;
}

const int32_t* vlm_result_tokens(const vlm_result* result) {
  return result && !result->result.token_ids.empty() ? result->result.token_ids.data() : nullptr;
}

vlm_stats vlm_result_stats(const vlm_result* result) {
  vlm_stats s{};
  if (!result) return s;
  const auto& st = result->result.stats;
  s.prompt_tokens = st.prompt_tokens;
  s.prompt_tps = st.prompt_tps;
  s.generated_tokens = st.generated_tokens;
  s.generation_tps = st.generation_tps;
  s.image_encode_ms = st.image_encode_ms;
  s.peak_memory_bytes = st.peak_memory_bytes;
  s.cached_tokens = st.cached_tokens;
  s.time_to_first_token_ms = st.time_to_first_token_ms;
  return s;
}

void vlm_result_free(vlm_result* result) {
  delete result;
}

}  // extern "C"
