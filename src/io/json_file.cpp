#include "io/json_file.h"

#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace vlm {

namespace {
std::string read_whole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
}  // namespace

std::string read_model_file(const std::string& path) {
  namespace fs = std::filesystem;
  std::string text = read_whole(path);
  for (int hops = 0; hops < 4 && text.size() < 1024; ++hops) {
    std::string target = text;
    while (!target.empty() && std::isspace(static_cast<unsigned char>(target.back()))) target.pop_back();
    if (target.empty() || target.find_first_of("{[\n\"") != std::string::npos) break;
    fs::path p = fs::path(target).is_absolute() ? fs::path(target) : fs::path(path).parent_path() / target;
    std::error_code ec;
    if (!fs::is_regular_file(p, ec)) break;
    text = read_whole(p.string());
  }
  return text;
}

json parse_json_limited(std::string_view text, const std::string& where, int max_depth) {
  // The callback sees each container start with its depth before the parser descends into it.
  json::parser_callback_t limit = [&](int depth, json::parse_event_t event, json&) {
    if ((event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) &&
        depth >= max_depth)
      fail(where, ": JSON nested deeper than ", max_depth, " levels");
    return true;
  };
  return json::parse(text, limit);
}

json read_json_file(const std::string& path) {
  std::string text = read_model_file(path);
  try {
    return parse_json_limited(text, path);
  } catch (const json::exception& e) {
    fail(path, ": malformed JSON: ", e.what());
  }
}

}  // namespace vlm
