// `vlm lora fuse`: a model with LoRA adapters merged into its weights, written as a new model directory.
#include <cstdio>

#include "common.h"

namespace vlm::cli {

int run_lora(const std::vector<std::string>& argv) {
  static const char* kUsage =
      "usage: vlm lora fuse --model DIR|ID --adapter DIR[:SCALE] [--adapter ...] --out DIR [--dequantize]";
  if (!argv.empty() && (argv[0] == "--help" || argv[0] == "-h")) {
    std::printf("%s\n", kUsage);
    return 0;
  }
  if (argv.empty() || argv[0] != "fuse") throw UsageError(kUsage);
  Command cmd{"lora fuse",
              "Merge LoRA adapters (MLX or PEFT) into a model and write it as a new model directory.",
              "",
              {{"model", true, false, "base model directory or Hugging Face id", "ID|DIR"},
               adapter_option(),
               {"out", true, false, "output directory (new or empty)", "DIR"},
               {"dequantize", false, false, "write every quantized weight dense (default: re-quantize)"}}};
  for (auto& o : runtime_options()) cmd.options.push_back(o);
  Args args = Args::parse(cmd, std::vector<std::string>(argv.begin() + 1, argv.end()));
  if (int rc = help_requested(cmd, args); rc >= 0) return rc;
  const std::string model = args.require("model"), out = args.require("out");
  if (!args.has("adapter")) throw UsageError("lora fuse: give at least one --adapter");
  LoadOptions lo = load_options(args);
  lo.precision = "exact";
  ModelContext ctx = ModelContext::load(model, lo);
  std::vector<AdapterRef> adapters = load_adapters(ctx, args, lo);
  ctx.fuse_adapters(adapters, out, args.flag("dequantize"));
  print_adapters(ctx);
  std::printf("fused into:    %s\n", out.c_str());
  return 0;
}

}  // namespace vlm::cli
