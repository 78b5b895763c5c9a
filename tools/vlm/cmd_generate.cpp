// `vlm generate`: one prompt (text, images, videos or a JSON chat) -> streamed text or one JSON object.
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "common.h"
#include "media/image.h"
#include "models/paligemma/detection.h"

namespace vlm::cli {

namespace {

Command generate_command() {
  Command c{"generate", "Generate text from a prompt with images/videos, streaming it to stdout.", "", {}};
  c.options = {
      {"model", true, false, "model directory or Hugging Face id (org/name)", "ID|DIR"},
      {"prompt", true, false, "prompt text, or @FILE (default: the model's default prompt)", "TEXT|@FILE"},
      {"image", true, true, "image file", "PATH"},
      {"video", true, true, "video file", "PATH"},
      {"system", true, false, "system message", "TEXT|@FILE"},
      {"messages", true, false, "chat as a JSON list of {role, content} (instead of --prompt/--image)", "FILE.json"},
      {"json", false, false, "print one JSON object {text, token_ids, finish_reason, stats}"},
      {"logprobs", true, false, "with --json: log-probabilities with N top alternatives per token", "N"},
      {"prompt-cache", true, false,
       "reuse the KV cache saved in FILE when its prompt shares a prefix with this one; save this one's there "
       "(created on first use)",
       "FILE"},
      {"draw-boxes", true, false, "write the first image with the answer's <loc> detection boxes drawn", "OUT.png"},
  };
  for (auto& o : sampling_options()) c.options.push_back(o);
  for (auto& o : processing_options()) c.options.push_back(o);
  for (auto& o : runtime_options()) c.options.push_back(o);
  c.options.push_back(adapter_option());
  return c;
}

UserInput build_input(const Args& args, const ModelDefaults& defaults) {
  UserInput in;
  std::string system = args.has("system") ? text_or_file(*args.get("system")) : "";
  if (auto messages = args.get("messages")) {
    if (args.has("prompt") || args.has("image") || args.has("video"))
      throw UsageError("--messages cannot be combined with --prompt, --image or --video");
    std::string base = std::filesystem::path(*messages).parent_path().string();
    in = UserInput::from_messages_json(read_text_file(*messages), base, *messages);
    if (in.messages.empty()) throw UsageError("--messages: " + *messages + " holds no messages");
    if (!system.empty()) in.messages.insert(in.messages.begin(), {"system", {UserInput::Part::text_part(system)}});
  } else {
    std::string prompt = args.has("prompt") ? text_or_file(*args.get("prompt")) : defaults.prompt;
    in = UserInput::from_prompt(prompt, args.all("image"), system);
    auto& content = in.messages.back().content;
    size_t at = content.size() - 1;  // videos after the images, before the text
    for (const auto& v : args.all("video"))
      content.insert(content.begin() + std::ptrdiff_t(at++), UserInput::Part::video_path(v));
  }
  in.options = input_options(args);
  return in;
}

// PaliGemma "detect ..." answers: boxes in the first image's pixel coordinates, drawn onto a copy.
void draw_boxes(const std::string& out_path, const std::string& image_path, const std::string& answer) {
  Image image = load_image(image_path);
  std::vector<Detection> boxes = parse_detections(answer, image.width, image.height);
  write_png(out_path, draw_detections(image, boxes));
  std::fprintf(stderr, "boxes: %zu drawn -> %s\n", boxes.size(), out_path.c_str());
}

}  // namespace

int run_generate(const std::vector<std::string>& argv) {
  Command cmd = generate_command();
  Args args = Args::parse(cmd, argv);
  if (int rc = help_requested(cmd, args); rc >= 0) return rc;
  std::string model = args.require("model");
  ModelDefaults defaults = defaults_for(model);
  GenerationParams params = generation_params(args, defaults);
  bool as_json = args.flag("json");
  if (auto n = args.get_int("logprobs", 0, 100)) {
    params.logprobs = true;
    params.top_logprobs = int(*n);
  }
  UserInput input = build_input(args, defaults);
  auto boxes_out = args.get("draw-boxes");
  if (boxes_out && args.all("image").empty()) throw UsageError("--draw-boxes needs --image");
  LoadOptions lo = load_options(args);

  ModelContext ctx = ModelContext::load(model, lo);
  params.adapters = load_adapters(ctx, args, lo);
  PreparedInput prepared = ctx.prepare(input);
  StreamCallback stream;
  if (!as_json) {
    stream = [](std::string_view text, int32_t) {
      std::fwrite(text.data(), 1, text.size(), stdout);
      std::fflush(stdout);
      return true;
    };
  }
  GenerationResult r;
  if (auto cache_file = args.get("prompt-cache")) {
    ChatSession session(ctx);
    if (std::filesystem::exists(*cache_file)) session.load_cache(*cache_file);
    r = session.generate(prepared, params, stream);
    session.save_cache(*cache_file);
  } else {
    r = ctx.generate(prepared, params, stream);
  }
  if (boxes_out) draw_boxes(*boxes_out, args.all("image").front(), r.text);
  if (as_json) {
    nlohmann::json j = result_json(r, params.logprobs);
    j["stats"]["load_ms"] = ctx.info().load_ms;
    std::printf("%s\n", dump_json(j).c_str());
  } else {
    std::printf("\n");
    std::fflush(stdout);
    std::fprintf(stderr, "load: %.0f ms\n", ctx.info().load_ms);
    print_stats(r.stats);
    std::fprintf(stderr, "finish: %s\n", r.finish_reason.c_str());
  }
  return 0;
}

}  // namespace vlm::cli
