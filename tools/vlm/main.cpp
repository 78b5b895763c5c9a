// `vlm`: run vision-language models from the command line.
// Exit status: 0 success, 1 runtime error ("vlm: error: ..."), 2 bad usage.
#include <cstdio>
#include <cstring>
#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include "common.h"
#include "server/serve_command.h"
#include "vlm/vlm.h"

namespace {

using vlm::cli::UsageError;

struct Subcommand {
  const char* name;
  int (*run)(const std::vector<std::string>&);
  const char* summary;
};

const Subcommand kSubcommands[] = {
    {"generate", vlm::cli::run_generate, "generate text from a prompt, images and videos"},
    {"chat", vlm::cli::run_chat, "interactive multi-turn chat on stdin/stdout (/image PATH, /reset, /quit)"},
    {"list", vlm::cli::run_list, "supported model types and known model ids"},
    {"info", vlm::cli::run_info, "architecture, parameters, quantization and files of a model"},
    {"download", vlm::cli::run_download, "download a model from the Hugging Face hub into its cache"},
    {"tokenize", vlm::cli::run_tokenize, "token ids of a text (or text of ids with --decode)"},
    {"chat-template", vlm::cli::run_chat_template, "render the chat template for a JSON message list"},
    {"bench", vlm::cli::run_bench, "time one end-to-end run (load, prompt, decode, memory)"},
    {"batch", vlm::cli::run_batch, "run an OpenAI Batch API JSONL file offline (resumable, shardable)"},
    {"lora", vlm::cli::run_lora, "LoRA adapters: `vlm lora fuse` merges adapters into a new model directory"},
    {"serve", nullptr, "serve the OpenAI-compatible HTTP API (/v1/chat/completions)"},
};

void print_usage(std::FILE* out) {
  std::fprintf(out, "usage: vlm <command> [options]\n\ncommands:\n");
  for (const auto& c : kSubcommands) std::fprintf(out, "  %-14s %s\n", c.name, c.summary);
  std::fprintf(out,
               "\n`vlm <command> --help` lists a command's options. Models are a directory or a Hugging Face id\n"
               "(org/name, cached in HF_HUB_CACHE; HF_HUB_OFFLINE=1 never downloads).\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::ios::sync_with_stdio(true);
  if (argc < 2) {
    print_usage(stderr);
    return 2;
  }
  std::string cmd = argv[1];
  if (cmd == "-h" || cmd == "--help" || cmd == "help") {
    print_usage(stdout);
    return 0;
  }
  if (cmd == "--version" || cmd == "version") {
    std::printf("vlm %s\n", vlm_version());
    return 0;
  }
  // `serve` parses its own arguments (argv[0] = "serve").
  if (cmd == "serve") return vlm::server::serve_command(argc - 1, argv + 1);
  std::vector<std::string> rest(argv + 2, argv + argc);
  for (const auto& c : kSubcommands) {
    if (cmd != c.name || !c.run) continue;
    try {
      return c.run(rest);
    } catch (const UsageError& e) {
      std::fflush(stdout);
      std::fprintf(stderr, "vlm %s: error: %s\n\n%s", c.name, e.what(), vlm::cli::last_usage().c_str());
      return 2;
    } catch (const std::exception& e) {
      std::fflush(stdout);
      std::fprintf(stderr, "vlm: error: %s\n", e.what());
      return 1;
    }
  }
  std::fprintf(stderr, "vlm: unknown command '%s'\n\n", cmd.c_str());
  print_usage(stderr);
  return 2;
}
