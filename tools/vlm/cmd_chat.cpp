// `vlm chat`: multi-turn chat on stdin/stdout. Lines are user turns; /image PATH attaches an image to
// the next turn, /reset clears the history and the session's prompt cache, /quit (or end of input) leaves.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <iostream>

#include "common.h"

namespace vlm::cli {

namespace {

Command chat_command() {
  Command c{"chat", "Interactive chat: type a message per line; /image PATH, /reset, /quit.", "", {}};
  c.options = {
      {"model", true, false, "model directory or Hugging Face id (org/name)", "ID|DIR"},
      {"system", true, false, "system message (kept across /reset)", "TEXT|@FILE"},
      {"image", true, true, "image attached to the first turn", "PATH"},
      {"verbose", false, false, "print timing statistics after each answer (stderr)"},
  };
  for (auto& o : sampling_options()) c.options.push_back(o);
  for (auto& o : processing_options()) c.options.push_back(o);
  for (auto& o : runtime_options()) c.options.push_back(o);
  c.options.push_back(adapter_option());
  return c;
}

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

}  // namespace

int run_chat(const std::vector<std::string>& argv) {
  Command cmd = chat_command();
  Args args = Args::parse(cmd, argv);
  if (int rc = help_requested(cmd, args); rc >= 0) return rc;
  std::string model = args.require("model");
  GenerationParams params = generation_params(args, defaults_for(model));
  UserInput::Options options = input_options(args);
  std::string system = args.has("system") ? text_or_file(*args.get("system")) : "";
  std::vector<std::string> pending = args.all("image");
  for (const auto& p : pending)
    if (!std::filesystem::exists(p)) throw std::runtime_error("image not found: " + p);
  bool verbose = args.flag("verbose");
  ModelContext ctx = ModelContext::load(model, load_options(args));
  params.adapters = load_adapters(ctx, args, load_options(args));

  const bool interactive = isatty(STDIN_FILENO);
  if (interactive)
    std::fprintf(stderr, "%s loaded. Type a message; /image PATH attaches an image, /reset clears, /quit leaves.\n",
                 ctx.info().model_type.c_str());
  // The session keeps the conversation's KV cache, so each turn prefills only its new tokens.
  ChatSession session(ctx, options);
  session.set_system(system);

  std::string line;
  while (true) {
    if (interactive) {
      std::printf("> ");
      std::fflush(stdout);
    }
    if (!std::getline(std::cin, line)) break;
    std::string text = trim(line);
    if (text.empty()) continue;
    if (text == "/quit" || text == "/exit") break;
    if (text == "/reset") {
      session.reset();
      pending.clear();
      std::fprintf(stderr, "(history cleared, prompt cache emptied)\n");
      continue;
    }
    if (text.rfind("/image", 0) == 0 && (text.size() == 6 || text[6] == ' ')) {
      std::string path = trim(text.substr(6));
      if (path.empty()) {
        std::fprintf(stderr, "usage: /image PATH\n");
      } else if (!std::filesystem::exists(path)) {
        std::fprintf(stderr, "vlm: error: image not found: %s\n", path.c_str());
      } else {
        pending.push_back(path);
        std::fprintf(stderr, "(image attached to the next message: %s)\n", path.c_str());
      }
      continue;
    }
    if (text[0] == '/' && text.find(' ') == std::string::npos && text.size() < 16) {
      std::fprintf(stderr, "unknown command %s (commands: /image PATH, /reset, /quit)\n", text.c_str());
      continue;
    }

    UserInput::Message turn{"user", {}};
    for (const auto& p : pending) turn.content.push_back(UserInput::Part::image_path(p));
    turn.content.push_back(UserInput::Part::text_part(text));
    try {
      GenerationResult r = session.send(std::move(turn), params, [](std::string_view piece, int32_t) {
        std::fwrite(piece.data(), 1, piece.size(), stdout);
        std::fflush(stdout);
        return true;
      });
      std::printf("\n");
      std::fflush(stdout);
      pending.clear();
      if (verbose) print_stats(r.stats);
    } catch (const std::exception& e) {
      std::fflush(stdout);
      std::fprintf(stderr, "vlm: error: %s\n", e.what());
    }
  }
  if (interactive) std::printf("\n");
  return 0;
}

}  // namespace vlm::cli
