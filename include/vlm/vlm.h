/* vlm.cpp C API: opaque handles, status codes and a streaming callback.
 *
 *   vlm_model* model = NULL;
 *   if (vlm_model_load("path/or/org-name", &model) != VLM_OK) fprintf(stderr, "%s\n", vlm_last_error());
 *   vlm_input* in = vlm_input_new();
 *   vlm_input_add_message(in, "user");
 *   vlm_input_add_image_file(in, "cat.png");
 *   vlm_input_add_text(in, "Describe the image.");
 *   vlm_generation_params p = vlm_generation_params_default();
 *   vlm_result* r = NULL;
 *   vlm_generate(model, in, &p, on_text, user_data, &r);
 *   puts(vlm_result_text(r));
 *   vlm_result_free(r); vlm_input_free(in); vlm_model_free(model);
 *
 * Every function returning vlm_status records a message for vlm_last_error() (per thread) on failure.
 * No function throws or aborts on bad input.
 */
#ifndef VLM_H
#define VLM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum vlm_status {
  VLM_OK = 0,
  VLM_ERR_INVALID_ARGUMENT = 1, /* NULL handle, bad parameter value */
  VLM_ERR_NOT_FOUND = 2,        /* model directory / id or input file missing */
  VLM_ERR_LOAD = 3,             /* model files unreadable or unsupported */
  VLM_ERR_INPUT = 4,            /* an image/video/message could not be prepared */
  VLM_ERR_CONTEXT_OVERFLOW = 5, /* the prompt does not fit the model's context */
  VLM_ERR_RUNTIME = 6           /* anything else */
} vlm_status;

typedef struct vlm_model vlm_model;
typedef struct vlm_input vlm_input;
typedef struct vlm_result vlm_result;
typedef struct vlm_session vlm_session;

typedef struct vlm_generation_params {
  int32_t max_tokens;
  float temperature; /* <= 0: greedy */
  float top_p;
  int32_t top_k;
  float min_p;
  float repetition_penalty;
  int32_t repetition_context_size;
  int32_t has_seed; /* 0: seeded from the OS */
  uint64_t seed;
  const char* const* stop; /* n_stop stop strings */
  size_t n_stop;
  int32_t ignore_eos;
  /* LoRA adapters of this generation: n_adapters ids from vlm_model_load_adapter, each with a scale
   * (adapter_scales may be NULL: 1 each). */
  const int32_t* adapter_ids;
  const float* adapter_scales;
  size_t n_adapters;
} vlm_generation_params;

typedef struct vlm_stats {
  int64_t prompt_tokens;
  double prompt_tps;
  int64_t generated_tokens;
  double generation_tps;
  double image_encode_ms;
  int64_t peak_memory_bytes;
  int64_t cached_tokens;         /* prompt tokens taken from the prompt cache */
  double time_to_first_token_ms; /* from the call to the first sampled token */
} vlm_stats;

/* Receives newly final text (not NUL-terminated; `len` bytes) and the token that produced it
 * (-1 for the final flush). Return 0 to stop generation ("cancelled"), non-zero to go on. */
typedef int (*vlm_stream_callback)(const char* text, size_t len, int32_t token_id, void* user_data);

const char* vlm_version(void);
const char* vlm_status_string(vlm_status status);
/* Message of the last failed call on this thread ("" when none). Valid until the next failing call. */
const char* vlm_last_error(void);

/* `id_or_dir`: a model directory or a Hugging Face id (downloaded unless HF_HUB_OFFLINE=1). */
vlm_status vlm_model_load(const char* id_or_dir, vlm_model** out_model);
void vlm_model_free(vlm_model* model);
const char* vlm_model_type(const vlm_model* model);
int64_t vlm_model_context_length(const vlm_model* model);
/* Load options: compute threads (0: VLM_THREADS, else physical cores) and precision ("exact",
 * "fast", or NULL/"" for VLM_PRECISION, else fast). Each model keeps its own settings. */
typedef struct {
  int32_t threads;
  const char* precision;
} vlm_load_options;
vlm_status vlm_model_load_with_options(const char* id_or_dir, const vlm_load_options* options, vlm_model** out_model);

/* Loads a LoRA adapter (directory or Hugging Face id; MLX or PEFT format) for `model`; *out_id is
 * its id for vlm_generation_params.adapter_ids. Load adapters before generating from several threads. */
vlm_status vlm_model_load_adapter(vlm_model* model, const char* id_or_dir, int32_t* out_id);

vlm_input* vlm_input_new(void);
void vlm_input_free(vlm_input* input);
/* Starts a new message; the add_* calls below append parts to the latest message. */
vlm_status vlm_input_add_message(vlm_input* input, const char* role);
vlm_status vlm_input_add_text(vlm_input* input, const char* text);
vlm_status vlm_input_add_image_file(vlm_input* input, const char* path);
vlm_status vlm_input_add_image_bytes(vlm_input* input, const uint8_t* data, size_t size);
vlm_status vlm_input_add_image_rgb(vlm_input* input, const uint8_t* rgb, int32_t width, int32_t height);
vlm_status vlm_input_add_video_file(vlm_input* input, const char* path);
vlm_status vlm_input_set_resize(vlm_input* input, int32_t width, int32_t height);

vlm_generation_params vlm_generation_params_default(void);

/* `params` may be NULL (defaults); `callback` may be NULL. On success *out_result must be freed. */
vlm_status vlm_generate(vlm_model* model, const vlm_input* input, const vlm_generation_params* params,
                        vlm_stream_callback callback, void* user_data, vlm_result** out_result);
/* A conversation that keeps its KV cache between turns (prompt cache): each turn prefills only
 * the tokens the cache lacks. One thread at a time per session. */
vlm_status vlm_session_new(vlm_model* model, vlm_session** out_session);
void vlm_session_free(vlm_session* session);
void vlm_session_reset(vlm_session* session); /* forgets the history and the cache */
int64_t vlm_session_cached_tokens(const vlm_session* session);
/* Appends `turn` (exactly one message, e.g. a user message with images and text) to the
 * conversation, answers it and appends the answer. Same contract as vlm_generate. */
vlm_status vlm_session_send(vlm_session* session, const vlm_input* turn, const vlm_generation_params* params,
                            vlm_stream_callback callback, void* user_data, vlm_result** out_result);
const char* vlm_result_text(const vlm_result* result);
const char* vlm_result_finish_reason(const vlm_result* result); /* "stop", "length", "cancelled" */
size_t vlm_result_n_tokens(const vlm_result* result);
const int32_t* vlm_result_tokens(const vlm_result* result);
vlm_stats vlm_result_stats(const vlm_result* result);
void vlm_result_free(vlm_result* result);

#ifdef __cplusplus
}
#endif

#endif /* VLM_H */
