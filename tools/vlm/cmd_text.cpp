// `vlm tokenize` and `vlm chat-template`: the text side of a model, no weights needed.
#include <cstdio>
#include <sstream>

#include "common.h"

namespace vlm::cli {

namespace {

std::vector<int32_t> parse_ids(const std::string& text) {
  std::vector<int32_t> ids;
  std::string t = text;
  size_t b = t.find_first_not_of(" \t\r\n");
  if (b != std::string::npos && t[b] == '[') {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(t);
    } catch (const nlohmann::json::exception& e) {
      throw UsageError(std::string("--decode: invalid JSON list of ids: ") + e.what());
    }
    if (j.is_object() && j.contains("ids")) j = j["ids"];
    for (const auto& v : j) {
      if (!v.is_number_integer()) throw UsageError("--decode: the JSON list must hold integer ids");
      ids.push_back(v.get<int32_t>());
    }
    return ids;
  }
  std::istringstream is(t);
  std::string word;
  while (is >> word) {
    if (!word.empty() && word.back() == ',') word.pop_back();
    if (word.empty()) continue;
    ids.push_back(int32_t(parse_int("decode", word, 0, INT32_MAX)));
  }
  return ids;
}

}  // namespace

int run_tokenize(const std::vector<std::string>& argv) {
  Command cmd{"tokenize", "Print {\"ids\", \"tokens\"} of a text; with --decode, the text of ids.", "", {}};
  cmd.options = {
      {"model", true, false, "model directory or Hugging Face id (tokenizer files suffice)", "DIR|ID"},
      {"text", true, false, "text to tokenize (or ids with --decode)", "TEXT"},
      {"file", true, false, "read the text (or ids) from a file", "PATH"},
      {"no-special-tokens", false, false, "do not add special tokens (BOS...); with --decode: skip them"},
      {"decode", false, false, "read ids (JSON list or whitespace separated) and print their text"},
  };
  for (auto& o : runtime_options()) cmd.options.push_back(o);
  Args args = Args::parse(cmd, argv);
  if (int rc = help_requested(cmd, args); rc >= 0) return rc;
  std::string model = args.require("model");
  if (args.has("text") == args.has("file")) throw UsageError("give exactly one of --text and --file");
  std::string text = args.has("text") ? *args.get("text") : read_text_file(*args.get("file"));
  bool special = !args.flag("no-special-tokens");
  TextProcessor tp = TextProcessor::load(model, load_options(args));
  if (args.flag("decode")) {
    std::string out = tp.decode(parse_ids(text), !special);
    std::fwrite(out.data(), 1, out.size(), stdout);
    std::printf("\n");
    return 0;
  }
  std::vector<int32_t> ids = tp.encode(text, special);
  std::vector<std::string> tokens;
  for (int32_t id : ids) tokens.push_back(tp.token_string(id));
  std::printf("%s\n", dump_json({{"ids", ids}, {"tokens", tokens}}).c_str());
  return 0;
}

int run_chat_template(const std::vector<std::string>& argv) {
  Command cmd{"chat-template", "Print the prompt the model's chat template renders for a JSON chat.", "", {}};
  cmd.options = {
      {"model", true, false, "model directory or Hugging Face id (tokenizer files suffice)", "DIR|ID"},
      {"messages", true, false, "JSON list of {role, content}", "FILE.json"},
      {"no-generation-prompt", false, false, "do not append the assistant turn opener"},
      {"add-vision-id", false, false, "number images/videos (\"Picture 1:\") where the template supports it"},
  };
  for (auto& o : runtime_options()) cmd.options.push_back(o);
  Args args = Args::parse(cmd, argv);
  if (int rc = help_requested(cmd, args); rc >= 0) return rc;
  std::string model = args.require("model");
  std::string messages = read_text_file(args.require("messages"));
  TextProcessor tp = TextProcessor::load(model, load_options(args));
  std::string out = tp.apply_chat_template(messages, !args.flag("no-generation-prompt"), args.flag("add-vision-id"));
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

}  // namespace vlm::cli
