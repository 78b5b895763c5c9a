// Building a Tokenizer::Impl from tokenizer.json and the transformers config files beside it.
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "io/json_file.h"
#include "text/json_scan.h"
#include "text/tokenizer_impl.h"
#include "text/unicode.h"

namespace vlm {
namespace {

namespace fs = std::filesystem;

json parse_small(std::string_view text, const std::string& where) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    fail(where, ": malformed JSON: ", e.what());
  }
}

// Top-level keys of tokenizer.json parsed as JSON, except model.vocab / model.merges (left as offsets).
struct TokenizerJson {
  json top = json::object();
  text::ModelSpec model;
};

TokenizerJson scan_tokenizer_json(const text::JsonScanner& js) {
  TokenizerJson out;
  out.model.js = &js;
  size_t end = js.for_each_member(0, [&](const std::string& key, size_t v) -> size_t {
    if (key != "model") {
      size_t e = js.skip_value(v);
      out.top[key] = parse_small(js.text().substr(v, e - v), "tokenizer.json field '" + key + "'");
      return e;
    }
    return js.for_each_member(v, [&](const std::string& mkey, size_t mv) -> size_t {
      size_t e = js.skip_value(mv);
      if (mkey == "vocab") {
        out.model.vocab_at = mv;
      } else if (mkey == "merges") {
        out.model.merges_at = mv;
      } else {
        out.model.params[mkey] = parse_small(js.text().substr(mv, e - mv), "tokenizer.json model." + mkey);
      }
      return e;
    });
  });
  if (js.skip_ws(end) != js.text().size()) js.error(end, "trailing characters");
  return out;
}

// A special-token entry: "text", {"content": "text", ...}, or null.
std::string token_content(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return "";
}

text::AddedToken parse_added_token(const json& t, int32_t id, const std::string& where) {
  text::AddedToken a;
  a.id = id;
  a.content = json_require<std::string>(t, "content", where);
  a.special = json_get<bool>(t, "special", false, where);
  a.lstrip = json_get<bool>(t, "lstrip", false, where);
  a.rstrip = json_get<bool>(t, "rstrip", false, where);
  a.single_word = json_get<bool>(t, "single_word", false, where);
  a.normalized = json_get<bool>(t, "normalized", !a.special, where);
  return a;
}

// ids of a post-processor's special token spec: TemplateProcessing's {"ids": [...]} or [token, id].
void template_ids(const json& special_tokens, const std::string& name, std::vector<int32_t>& out) {
  const std::string where = "tokenizer.json post_processor";
  if (!special_tokens.contains(name)) fail(where, ": special token '", name, "' is not defined");
  for (const auto& id : special_tokens[name].at("ids")) out.push_back(id.get<int32_t>());
}

void load_post_processor(const json& cfg, std::vector<int32_t>& prefix, std::vector<int32_t>& suffix) {
  if (cfg.is_null()) return;
  const std::string where = "tokenizer.json post_processor";
  std::string type = json_require<std::string>(cfg, "type", where);
  if (type == "TemplateProcessing") {
    std::vector<int32_t> pre, post;
    bool seen_seq = false;
    for (const auto& item : cfg.at("single")) {
      if (item.contains("Sequence")) {
        seen_seq = true;
      } else if (item.contains("SpecialToken")) {
        template_ids(cfg.value("special_tokens", json::object()), item["SpecialToken"].at("id").get<std::string>(),
                     seen_seq ? post : pre);
      }
    }
    prefix.insert(prefix.begin(), pre.begin(), pre.end());  // an outer stage wraps what inner stages produced
    suffix.insert(suffix.end(), post.begin(), post.end());
  } else if (type == "RobertaProcessing" || type == "BertProcessing") {
    prefix.insert(prefix.begin(), cfg.at("cls").at(1).get<int32_t>());
    suffix.push_back(cfg.at("sep").at(1).get<int32_t>());
  } else if (type == "Sequence") {
    for (const auto& p : cfg.at("processors")) load_post_processor(p, prefix, suffix);
  } else if (type != "ByteLevel") {
    fail(where, ": unsupported type '", type, "'");
  }
}

void add_templates(const json& v, std::vector<std::pair<std::string, std::string>>& out) {
  if (v.is_string()) {
    out.emplace_back("default", v.get<std::string>());
  } else if (v.is_array()) {
    for (const auto& t : v)
      if (t.is_object() && t.contains("name") && t.contains("template") && t["template"].is_string())
        out.emplace_back(t["name"].get<std::string>(), t["template"].get<std::string>());
  }
}

}  // namespace

std::optional<int32_t> Tokenizer::Impl::lookup(std::string_view token) const {
  if (token.empty()) return std::nullopt;
  if (const auto* a = added.by_content(token)) return a->id;
  int32_t id = model->vocab().find(token);
  if (id >= 0) return id;
  return std::nullopt;
}

std::shared_ptr<const Tokenizer::Impl> build_tokenizer(const TokenizerFiles& files) {
  auto impl = std::make_shared<Tokenizer::Impl>();
  text::JsonScanner js(files.tokenizer_json, "tokenizer.json");
  TokenizerJson tj = scan_tokenizer_json(js);
  const json& top = tj.top;
  impl->model = text::make_model(tj.model);
  impl->normalizer = text::make_normalizer(top.value("normalizer", json()));
  impl->pre_tokenizer = text::make_pre_tokenizer(top.value("pre_tokenizer", json()));
  impl->decoder = text::make_decoder(top.value("decoder", json()));
  load_post_processor(top.value("post_processor", json()), impl->post_prefix, impl->post_suffix);

  const json& added = top.value("added_tokens", json::array());
  for (const auto& t : added)
    impl->added.add(parse_added_token(t, json_require<int32_t>(t, "id", "added_tokens"), "added_tokens"));

  json config =
      files.tokenizer_config.empty() ? json::object() : parse_small(files.tokenizer_config, "tokenizer_config.json");
  json special_map = files.special_tokens_map.empty()
                         ? json::object()
                         : parse_small(files.special_tokens_map, "special_tokens_map.json");
  if (config.contains("added_tokens_decoder") && config["added_tokens_decoder"].is_object()) {
    for (const auto& [key, t] : config["added_tokens_decoder"].items()) {
      int32_t id = std::stoi(key);
      if (!impl->added.by_id(id))
        impl->added.add(parse_added_token(t, id, "tokenizer_config.json added_tokens_decoder"));
    }
  }
  if (!files.added_tokens.empty()) {
    json extra = parse_small(files.added_tokens, "added_tokens.json");
    for (const auto& [content, id] : extra.items()) {
      if (!id.is_number_integer() || impl->added.by_content(content) || impl->model->vocab().find(content) >= 0)
        continue;
      text::AddedToken a;
      a.content = content;
      a.id = id.get<int32_t>();
      impl->added.add(a);
    }
  }
  impl->added.build(
      [&](const std::string& content) { return impl->normalizer ? impl->normalizer->apply(content) : content; });

  auto special = [&](const char* key) {
    std::string v = token_content(config.value(key, json()));
    return v.empty() ? token_content(special_map.value(key, json())) : v;
  };
  impl->bos_token = special("bos_token");
  impl->eos_token = special("eos_token");
  impl->pad_token = special("pad_token");
  impl->clean_up_spaces = json_get<bool>(config, "clean_up_tokenization_spaces", false, "tokenizer_config.json");

  // transformers' Llama/Gemma fast tokenizers rebuild the post-processor from add_bos_token/add_eos_token.
  std::string cls = json_get<std::string>(config, "tokenizer_class", "", "tokenizer_config.json");
  if (cls.size() > 4 && cls.compare(cls.size() - 4, 4, "Fast") == 0) cls.resize(cls.size() - 4);
  if (cls == "LlamaTokenizer" || cls == "GemmaTokenizer" || cls == "CodeLlamaTokenizer") {
    impl->post_prefix.clear();
    impl->post_suffix.clear();
    if (json_get<bool>(config, "add_bos_token", true, "tokenizer_config.json")) {
      if (auto id = impl->lookup(impl->bos_token)) impl->post_prefix.push_back(*id);
    }
    if (json_get<bool>(config, "add_eos_token", false, "tokenizer_config.json")) {
      if (auto id = impl->lookup(impl->eos_token)) impl->post_suffix.push_back(*id);
    }
  }

  if (!files.chat_template_jinja.empty()) {
    impl->chat_templates.emplace_back("default", files.chat_template_jinja);
  } else if (!files.chat_template_json.empty()) {
    json ct = parse_small(files.chat_template_json, "chat_template.json");
    add_templates(ct.is_object() ? ct.value("chat_template", json()) : ct, impl->chat_templates);
  }
  if (impl->chat_templates.empty()) add_templates(config.value("chat_template", json()), impl->chat_templates);
  return impl;
}

namespace {

std::string read_optional(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec) ? read_model_file(p.string()) : std::string();
}

}  // namespace

Tokenizer Tokenizer::from_dir(const std::string& dir) {
  fs::path d(dir);
  fs::path tj = d / "tokenizer.json";
  std::error_code ec;
  if (!fs::exists(tj, ec)) fail(dir, ": no tokenizer.json");
  TokenizerFiles files;
  files.tokenizer_json = read_model_file(tj.string());
  files.tokenizer_config = read_optional(d / "tokenizer_config.json");
  files.special_tokens_map = read_optional(d / "special_tokens_map.json");
  files.added_tokens = read_optional(d / "added_tokens.json");
  files.chat_template_json = read_optional(d / "chat_template.json");
  files.chat_template_jinja = read_optional(d / "chat_template.jinja");
  Tokenizer t;
  try {
    t.impl_ = build_tokenizer(files);
  } catch (const Error& e) {
    fail(dir, ": ", e.what());
  }
  return t;
}

Tokenizer Tokenizer::from_json(const std::string& tokenizer_json, const std::string& tokenizer_config_json) {
  TokenizerFiles files;
  files.tokenizer_json = tokenizer_json;
  files.tokenizer_config = tokenizer_config_json;
  Tokenizer t;
  t.impl_ = build_tokenizer(files);
  return t;
}

}  // namespace vlm
