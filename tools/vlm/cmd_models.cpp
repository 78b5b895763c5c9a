// `vlm list`, `vlm info`, `vlm download`: what is supported, what a model holds, fetching one.
#include <cstdio>

#include "common.h"

namespace vlm::cli {

namespace {

std::string human_count(int64_t n) {
  char buf[32];
  if (n >= 1000000000)
    std::snprintf(buf, sizeof buf, "%.2fB", double(n) / 1e9);
  else if (n >= 1000000)
    std::snprintf(buf, sizeof buf, "%.1fM", double(n) / 1e6);
  else if (n >= 1000)
    std::snprintf(buf, sizeof buf, "%.1fK", double(n) / 1e3);
  else
    std::snprintf(buf, sizeof buf, "%lld", (long long)n);
  return buf;
}

std::string one_positional(const Args& args, const Command& cmd) {
  if (args.positionals().size() != 1) throw UsageError("'vlm " + cmd.name + "' takes exactly one " + cmd.positional);
  return args.positionals()[0];
}

}  // namespace

int run_list(const std::vector<std::string>& argv) {
  Command cmd{"list", "List supported model types and known model ids.", "", {}};
  cmd.options = {{"json", false, false, "print JSON"}};
  Args args = Args::parse(cmd, argv);
  if (int rc = help_requested(cmd, args); rc >= 0) return rc;
  auto types = supported_model_types();
  auto known = known_models();
  if (args.flag("json")) {
    nlohmann::json models = nlohmann::json::array();
    for (const auto& [id, d] : known)
      models.push_back({{"id", id},
                        {"description", d.description},
                        {"prompt", d.prompt},
                        {"max_tokens", d.max_tokens},
                        {"temperature", d.temperature}});
    std::printf("%s\n", dump_json({{"model_types", types}, {"models", models}}, 2).c_str());
    return 0;
  }
  std::printf("Model types:\n");
  for (const auto& t : types) std::printf("  %s\n", t.c_str());
  std::printf("\nKnown models (defaults for `vlm generate`):\n");
  for (const auto& [id, d] : known) {
    std::printf("  %s\n", id.c_str());
    if (!d.description.empty()) std::printf("      %s\n", d.description.c_str());
    std::printf("      prompt \"%s\", max tokens %d, temperature %g\n", d.prompt.c_str(), d.max_tokens,
                double(d.temperature));
  }
  return 0;
}

int run_info(const std::vector<std::string>& argv) {
  Command cmd{"info", "Show a model's architecture, parameter count, quantization and files.", "DIR|ID", {}};
  cmd.options = {{"json", false, false, "print JSON"}};
  for (auto& o : runtime_options()) cmd.options.push_back(o);
  cmd.options.push_back(adapter_option());
  Args args = Args::parse(cmd, argv);
  if (int rc = help_requested(cmd, args); rc >= 0) return rc;
  std::string model = one_positional(args, cmd);
  if (args.has("adapter")) {  // the adapters as resolved against this model
    ModelContext ctx = ModelContext::load(model, load_options(args));
    load_adapters(ctx, args, load_options(args));
    if (args.flag("json")) {
      nlohmann::json list = nlohmann::json::array();
      for (const AdapterSummary& a : ctx.adapters()) {
        nlohmann::json mods = nlohmann::json::array();
        for (const AdapterModuleSummary& m : a.modules)
          mods.push_back({{"layer", m.layer},
                          {"module", m.module},
                          {"in_features", m.in_features},
                          {"out_features", m.out_features},
                          {"rank", m.rank},
                          {"scale", m.scale}});
        list.push_back({{"name", a.name}, {"dir", a.dir}, {"format", a.format}, {"modules", mods}});
      }
      std::printf("%s\n", dump_json({{"model", model}, {"adapters", list}}, 2).c_str());
    } else {
      std::printf("model:         %s (%s)\n", model.c_str(), ctx.info().model_type.c_str());
      print_adapters(ctx);
    }
    return 0;
  }
  ModelSummary s = inspect_model(model, load_options(args));
  int64_t total = 0;
  for (const auto& f : s.files) total += f.bytes;
  if (args.flag("json")) {
    nlohmann::json files = nlohmann::json::array();
    for (const auto& f : s.files) files.push_back({{"name", f.name}, {"bytes", f.bytes}});
    nlohmann::json j = {{"dir", s.dir},
                        {"model_type", s.model_type},
                        {"architectures", s.architectures},
                        {"num_parameters", s.num_parameters},
                        {"context_length", s.context_length},
                        {"quantized", s.quantized},
                        {"files", files},
                        {"total_bytes", total}};
    if (s.quantized) j["quantization"] = {{"bits", s.quant_bits}, {"group_size", s.quant_group_size}};
    std::printf("%s\n", dump_json(j, 2).c_str());
    return 0;
  }
  std::string arch;
  for (const auto& a : s.architectures) arch += (arch.empty() ? "" : ", ") + a;
  std::printf("directory:     %s\n", s.dir.c_str());
  std::printf("model type:    %s\n", s.model_type.c_str());
  std::printf("architecture:  %s\n", arch.empty() ? "(not given)" : arch.c_str());
  std::printf("parameters:    %s (%lld)\n", human_count(s.num_parameters).c_str(), (long long)s.num_parameters);
  std::printf("context:       %lld tokens\n", (long long)s.context_length);
  if (s.quantized)
    std::printf("quantization:  %d-bit, group size %d\n", s.quant_bits, s.quant_group_size);
  else
    std::printf("quantization:  none\n");
  std::printf("files:\n");
  for (const auto& f : s.files) std::printf("  %-36s %12s\n", f.name.c_str(), human_bytes(f.bytes).c_str());
  std::printf("  %-36s %12s\n", "(total)", human_bytes(total).c_str());
  return 0;
}

int run_download(const std::vector<std::string>& argv) {
  Command cmd{
      "download", "Download a model from the Hugging Face hub (HF_ENDPOINT, HF_TOKEN, HF_HUB_CACHE).", "ID", {}};
  cmd.options = {{"revision", true, false, "branch, tag or commit (default main)", "REV"}};
  Args args = Args::parse(cmd, argv);
  if (int rc = help_requested(cmd, args); rc >= 0) return rc;
  std::string id = one_positional(args, cmd);
  LoadOptions lo;
  lo.revision = args.get_or("revision", "");
  std::string dir = download_model(id, lo);
  std::printf("%s\n", dir.c_str());
  return 0;
}

}  // namespace vlm::cli
