// Renders every case of goldens.jsonl (written by make_goldens.py with Python's jinja2 configured
// like transformers) and compares byte for byte; cases where jinja2 raised must throw vlm::Error.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "text/chat_template.h"

namespace {

const std::string kDir = std::string(VLM_SOURCE_DIR) + "/tests/chat";

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::vector<nlohmann::ordered_json> load_goldens() {
  std::vector<nlohmann::ordered_json> out;
  std::ifstream f(kDir + "/goldens.jsonl");
  std::string line;
  while (std::getline(f, line))
    if (!line.empty()) out.push_back(nlohmann::ordered_json::parse(line));
  return out;
}

TEST(ChatGolden, AllCasesMatchPythonJinja2) {
  auto cases = load_goldens();
  ASSERT_GE(cases.size(), 80u);
  int rendered = 0, errors = 0;
  for (const auto& c : cases) {
    const std::string name = c["name"];
    std::string source = c.contains("source") ? c["source"].get<std::string>()
                                              : read_file(kDir + "/templates/" + c["template"].get<std::string>());
    vlm::JinjaOptions opt;
    const auto& o = c["options"];
    opt.trim_blocks = o.value("trim_blocks", true);
    opt.lstrip_blocks = o.value("lstrip_blocks", true);
    opt.keep_trailing_newline = o.value("keep_trailing_newline", false);
    if (c.contains("error")) {
      EXPECT_THROW(vlm::render_jinja(source, c["context"], opt), vlm::Error)
          << name << ": jinja2 raised " << c["error"];
      ++errors;
      continue;
    }
    try {
      EXPECT_EQ(vlm::render_jinja(source, c["context"], opt), c["rendered"].get<std::string>()) << name;
    } catch (const std::exception& e) {
      ADD_FAILURE() << name << ": threw " << e.what();
    }
    ++rendered;
  }
  EXPECT_GT(rendered, 60);
  EXPECT_GT(errors, 5);
}

// The goldens must be what the script produces now (catches edits to the script or templates
// without regenerating). Needs Debian's python3-jinja2.
TEST(ChatGolden, GoldensAreCurrent) {
  if (std::system("/usr/bin/python3 -c 'import jinja2' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "python3 with jinja2 not available";
  std::string cmd = "/usr/bin/python3 '" + kDir + "/make_goldens.py' --check";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << "rerun tests/chat/make_goldens.py";
}

}  // namespace
