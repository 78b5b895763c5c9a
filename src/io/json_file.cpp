#include "io/json_file.h"

#include <fstream>
#include <sstream>

namespace vlm {

json read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return json::parse(ss.str());
  } catch (const json::exception& e) {
    fail(path, ": malformed JSON: ", e.what());
  }
}

}  // namespace vlm
