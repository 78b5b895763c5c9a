/* Exercises the C API end to end: error codes and messages, input building, streaming, cancellation,
 * stop strings. argv[1] = the shared fixtures folder. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "vlm/vlm.h"

static int failures = 0;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                              \
    }                                                                          \
  } while (0)

typedef struct {
  char text[4096];
  size_t len;
  int calls;
  int stop_after; /* 0 = never */
} stream_state;

static int on_text(const char* text, size_t len, int32_t token_id, void* user_data) {
  stream_state* s = (stream_state*)user_data;
  (void)token_id;
  if (s->len + len < sizeof s->text) {
    memcpy(s->text + s->len, text, len);
    s->len += len;
    s->text[s->len] = '\0';
  }
  s->calls++;
  return s->stop_after == 0 || s->calls < s->stop_after;
}

static vlm_input* caption_input(const char* image) {
  vlm_input* in = vlm_input_new();
  CHECK(in != NULL);
  CHECK(vlm_input_add_message(in, "user") == VLM_OK);
  CHECK(vlm_input_add_image_file(in, image) == VLM_OK);
  CHECK(vlm_input_add_text(in, "Describe the image.") == VLM_OK);
  return in;
}

static unsigned char* read_file(const char* path, size_t* size) {
  FILE* f = fopen(path, "rb");
  unsigned char* data;
  long n;
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  n = ftell(f);
  fseek(f, 0, SEEK_SET);
  data = (unsigned char*)malloc((size_t)n);
  if (data && fread(data, 1, (size_t)n, f) != (size_t)n) {
    free(data);
    data = NULL;
  }
  fclose(f);
  *size = (size_t)n;
  return data;
}

int main(int argc, char** argv) {
  const char* caption = "A purple circle above a red square.";
  char model_dir[1024], image[1024];
  struct stat st;
  vlm_model* model = NULL;
  vlm_input* in;
  vlm_result* r = NULL;
  vlm_generation_params p;
  stream_state s;
  const char* stops[1];

  /* Errors without a model. */
  CHECK(vlm_version() != NULL && strlen(vlm_version()) > 0);
  CHECK(vlm_model_load("/nonexistent/model/dir", &model) == VLM_ERR_NOT_FOUND);
  CHECK(model == NULL);
  CHECK(strstr(vlm_last_error(), "vlm download") != NULL);
  CHECK(vlm_model_load(NULL, &model) == VLM_ERR_INVALID_ARGUMENT);
  CHECK(vlm_model_load("x", NULL) == VLM_ERR_INVALID_ARGUMENT);
  CHECK(strcmp(vlm_status_string(VLM_ERR_CONTEXT_OVERFLOW), "prompt exceeds the model's context") == 0);
  CHECK(vlm_generate(NULL, NULL, NULL, NULL, NULL, &r) == VLM_ERR_INVALID_ARGUMENT);
  CHECK(vlm_input_add_text(NULL, "x") == VLM_ERR_INVALID_ARGUMENT);
  vlm_result_free(NULL);
  vlm_input_free(NULL);
  vlm_model_free(NULL);

  if (argc < 2 || stat(argv[1], &st) != 0) {
    printf("shared fixtures absent: model tests skipped (%d failures)\n", failures);
    return failures ? 1 : 77;
  }
  snprintf(model_dir, sizeof model_dir, "%s/demo/qwen2-vl-shapes-4bit", argv[1]);
  snprintf(image, sizeof image, "%s/demo/images/shapes_02.png", argv[1]);

  {
    vlm_load_options bad = {2, "int4"};
    CHECK(vlm_model_load_with_options(model_dir, &bad, &model) == VLM_ERR_INVALID_ARGUMENT);
    CHECK(model == NULL);
  }
  vlm_load_options options = {2, "exact"};
  if (vlm_model_load_with_options(model_dir, &options, &model) != VLM_OK) {
    fprintf(stderr, "load failed: %s\n", vlm_last_error());
    return 1;
  }
  CHECK(strcmp(vlm_model_type(model), "qwen2_vl") == 0);
  CHECK(vlm_model_context_length(model) == 32768);

  /* Greedy caption, streamed. */
  in = caption_input(image);
  p = vlm_generation_params_default();
  p.max_tokens = 20;
  memset(&s, 0, sizeof s);
  CHECK(vlm_generate(model, in, &p, on_text, &s, &r) == VLM_OK);
  if (r) {
    CHECK(strcmp(vlm_result_text(r), caption) == 0);
    CHECK(strcmp(s.text, caption) == 0);
    CHECK(strcmp(vlm_result_finish_reason(r), "stop") == 0);
    CHECK(vlm_result_n_tokens(r) == 9);
    CHECK(vlm_result_tokens(r)[vlm_result_n_tokens(r) - 1] == 151645);
    CHECK(vlm_result_stats(r).prompt_tokens == 41);
    CHECK(vlm_result_stats(r).generated_tokens == 9);
    CHECK(vlm_result_stats(r).peak_memory_bytes > 0);
    vlm_result_free(r);
    r = NULL;
  }

  /* The callback cancels after its second call. */
  memset(&s, 0, sizeof s);
  s.stop_after = 2;
  CHECK(vlm_generate(model, in, &p, on_text, &s, &r) == VLM_OK);
  if (r) {
    CHECK(strcmp(vlm_result_finish_reason(r), "cancelled") == 0);
    CHECK(vlm_result_n_tokens(r) == 2);
    vlm_result_free(r);
    r = NULL;
  }

  /* A stop string spanning tokens. */
  stops[0] = "ove a r";
  p.stop = stops;
  p.n_stop = 1;
  CHECK(vlm_generate(model, in, &p, NULL, NULL, &r) == VLM_OK);
  if (r) {
    CHECK(strcmp(vlm_result_text(r), "A purple circle ab") == 0);
    CHECK(strcmp(vlm_result_finish_reason(r), "stop") == 0);
    vlm_result_free(r);
    r = NULL;
  }
  vlm_input_free(in);

  /* The same picture as encoded bytes. */
  {
    size_t size = 0;
    unsigned char* data = read_file(image, &size);
    CHECK(data != NULL);
    in = vlm_input_new();
    CHECK(vlm_input_add_message(in, "user") == VLM_OK);
    CHECK(vlm_input_add_image_bytes(in, data, size) == VLM_OK);
    CHECK(vlm_input_add_text(in, "Describe the image.") == VLM_OK);
    CHECK(vlm_generate(model, in, NULL, NULL, NULL, &r) == VLM_OK);
    if (r) {
      CHECK(strcmp(vlm_result_text(r), caption) == 0);
      vlm_result_free(r);
      r = NULL;
    }
    vlm_input_free(in);
    free(data);
  }

  /* Bad inputs. */
  in = vlm_input_new();
  CHECK(vlm_input_add_image_file(in, "/no/such.png") == VLM_ERR_NOT_FOUND);
  CHECK(strstr(vlm_last_error(), "/no/such.png") != NULL);
  CHECK(vlm_input_add_image_bytes(in, (const uint8_t*)"junk", 4) == VLM_OK);
  CHECK(vlm_generate(model, in, NULL, NULL, NULL, &r) == VLM_ERR_INPUT);
  CHECK(r == NULL);
  CHECK(strlen(vlm_last_error()) > 0);
  CHECK(vlm_input_set_resize(in, 10, 0) == VLM_ERR_INVALID_ARGUMENT);
  vlm_input_free(in);

  /* A session: the second turn reuses the first one's cache and answers as the whole conversation
   * does without a cache. */
  {
    vlm_session* session = NULL;
    vlm_input* turn;
    char second[4096] = "";
    CHECK(vlm_session_new(NULL, &session) == VLM_ERR_INVALID_ARGUMENT);
    CHECK(vlm_session_new(model, &session) == VLM_OK);
    in = caption_input(image);
    p = vlm_generation_params_default();
    p.max_tokens = 20;
    CHECK(vlm_session_send(session, in, &p, NULL, NULL, &r) == VLM_OK);
    if (r) {
      CHECK(strcmp(vlm_result_text(r), caption) == 0);
      CHECK(vlm_result_stats(r).cached_tokens == 0);
      vlm_result_free(r);
      r = NULL;
    }
    CHECK(vlm_session_cached_tokens(session) == 41 + 9 - 1); /* the final EOS is never run */
    turn = vlm_input_new();
    CHECK(vlm_input_add_message(turn, "user") == VLM_OK);
    CHECK(vlm_input_add_text(turn, "Describe the image.") == VLM_OK);
    CHECK(vlm_session_send(session, turn, &p, NULL, NULL, &r) == VLM_OK);
    if (r) {
      CHECK(vlm_result_stats(r).cached_tokens >= 41);
      snprintf(second, sizeof second, "%s", vlm_result_text(r));
      vlm_result_free(r);
      r = NULL;
    }
    CHECK(vlm_input_add_message(in, "assistant") == VLM_OK);
    CHECK(vlm_input_add_text(in, caption) == VLM_OK);
    CHECK(vlm_input_add_message(in, "user") == VLM_OK);
    CHECK(vlm_input_add_text(in, "Describe the image.") == VLM_OK);
    CHECK(vlm_generate(model, in, &p, NULL, NULL, &r) == VLM_OK);
    if (r) {
      CHECK(strcmp(vlm_result_text(r), second) == 0);
      CHECK(vlm_result_stats(r).cached_tokens == 0);
      vlm_result_free(r);
      r = NULL;
    }
    CHECK(vlm_session_send(session, in, &p, NULL, NULL, &r) == VLM_ERR_INVALID_ARGUMENT); /* 3 messages */
    vlm_session_reset(session);
    CHECK(vlm_session_cached_tokens(session) == 0);
    vlm_session_free(session);
    vlm_session_free(NULL);
    vlm_input_free(turn);
    vlm_input_free(in);
  }

  vlm_model_free(model);

  /* LoRA: an adapter set per generation (expected ids from shared/fixtures/lora/expected/peft-qv.json). */
  {
    char tiny[4096], adapter[4096];
    snprintf(tiny, sizeof tiny, "%s/fixtures/qwen2_vl/tiny-bf16", argv[1]);
    snprintf(adapter, sizeof adapter, "%s/fixtures/lora/peft-qv", argv[1]);
    vlm_model* m = NULL;
    int32_t id = -1;
    if (vlm_model_load_with_options(tiny, &options, &m) == VLM_OK) {
      CHECK(vlm_model_load_adapter(m, "/no/such/adapter", &id) == VLM_ERR_LOAD);
      CHECK(strstr(vlm_last_error(), "/no/such/adapter") != NULL);
      CHECK(vlm_model_load_adapter(m, adapter, &id) == VLM_OK);
      CHECK(id == 0);
      in = vlm_input_new();
      CHECK(vlm_input_add_message(in, "user") == VLM_OK);
      CHECK(vlm_input_add_text(in, "Write a haiku about the sea.") == VLM_OK);
      vlm_generation_params lp = vlm_generation_params_default();
      lp.max_tokens = 4;
      const int32_t ids[1] = {0};
      const float scales[1] = {1.0f};
      lp.adapter_ids = ids;
      lp.adapter_scales = scales;
      lp.n_adapters = 1;
      const int32_t want[4] = {106486, 54582, 20811, 147131}, base[4] = {66994, 118917, 118917, 118917};
      CHECK(vlm_generate(m, in, &lp, NULL, NULL, &r) == VLM_OK);
      if (r) {
        CHECK(vlm_result_n_tokens(r) == 4 && memcmp(vlm_result_tokens(r), want, sizeof want) == 0);
        vlm_result_free(r);
        r = NULL;
      }
      lp.n_adapters = 0;
      CHECK(vlm_generate(m, in, &lp, NULL, NULL, &r) == VLM_OK);
      if (r) {
        CHECK(vlm_result_n_tokens(r) == 4 && memcmp(vlm_result_tokens(r), base, sizeof base) == 0);
        vlm_result_free(r);
        r = NULL;
      }
      const int32_t bad[1] = {7};
      lp.adapter_ids = bad;
      lp.n_adapters = 1;
      CHECK(vlm_generate(m, in, &lp, NULL, NULL, &r) == VLM_ERR_RUNTIME);
      CHECK(strstr(vlm_last_error(), "adapter id 7") != NULL);
      vlm_input_free(in);
      vlm_model_free(m);
    }
  }
  if (failures)
    fprintf(stderr, "%d check(s) failed\n", failures);
  else
    printf("C API: all checks passed\n");
  return failures ? 1 : 0;
}
