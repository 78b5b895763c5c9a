#include "args.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <sstream>

namespace vlm::cli {

namespace {

const OptionSpec* find_option(const Command& cmd, const std::string& name) {
  for (const auto& o : cmd.options)
    if (o.name == name) return &o;
  return nullptr;
}

std::string& usage_slot() {
  static std::string usage;
  return usage;
}

}  // namespace

const std::string& last_usage() {
  return usage_slot();
}

std::string Command::usage() const {
  std::ostringstream os;
  os << "usage: vlm " << name;
  if (!positional.empty()) os << " " << positional;
  os << " [options]\n  " << summary << "\n";
  for (const auto& o : options) {
    if (o.help.empty()) continue;
    std::string head = "--" + o.name + (o.takes_value ? " " + o.metavar : "");
    os << "  " << head;
    for (size_t i = head.size(); i < 28; ++i) os << ' ';
    os << " " << o.help << (o.repeatable ? " (repeatable)" : "") << "\n";
  }
  return os.str();
}

Args Args::parse(const Command& cmd, const std::vector<std::string>& argv) {
  Args a;
  usage_slot() = cmd.usage();
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      a.help_ = true;
      continue;
    }
    if (arg.rfind("--", 0) != 0 || arg == "--") {
      if (cmd.positional.empty()) throw UsageError("unexpected argument '" + arg + "'");
      a.positionals_.push_back(arg);
      continue;
    }
    std::string name = arg.substr(2), value;
    bool inline_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      inline_value = true;
    }
    const OptionSpec* spec = find_option(cmd, name);
    if (!spec) throw UsageError("unknown option '--" + name + "' for 'vlm " + cmd.name + "'");
    if (spec->takes_value) {
      if (!inline_value) {
        if (i + 1 >= argv.size()) throw UsageError("option '--" + name + "' needs a value (" + spec->metavar + ")");
        value = argv[++i];
      }
    } else if (inline_value) {
      throw UsageError("option '--" + name + "' takes no value");
    }
    auto& slot = a.values_[name];
    if (!slot.empty() && !spec->repeatable) throw UsageError("option '--" + name + "' given more than once");
    slot.push_back(value);
  }
  return a;
}

std::optional<std::string> Args::get(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end() || it->second.empty()) return std::nullopt;
  return it->second.back();
}

std::string Args::get_or(const std::string& name, const std::string& fallback) const {
  auto v = get(name);
  return v ? *v : fallback;
}

const std::vector<std::string>& Args::all(const std::string& name) const {
  static const std::vector<std::string> empty;
  auto it = values_.find(name);
  return it == values_.end() ? empty : it->second;
}

std::string Args::require(const std::string& name) const {
  auto v = get(name);
  if (!v) throw UsageError("missing required option '--" + name + "'");
  return *v;
}

std::optional<int64_t> Args::get_int(const std::string& name, int64_t min, int64_t max) const {
  auto v = get(name);
  if (!v) return std::nullopt;
  return parse_int(name, *v, min, max);
}

std::optional<double> Args::get_double(const std::string& name, double min, double max) const {
  auto v = get(name);
  if (!v) return std::nullopt;
  return parse_double(name, *v, min, max);
}

int64_t parse_int(const std::string& option, const std::string& text, int64_t min, int64_t max) {
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno == ERANGE)
    throw UsageError("option '--" + option + "': '" + text + "' is not an integer");
  if (v < min || v > max)
    throw UsageError("option '--" + option + "': " + text + " is out of range [" + std::to_string(min) + ", " +
                     std::to_string(max) + "]");
  return v;
}

double parse_double(const std::string& option, const std::string& text, double min, double max) {
  errno = 0;
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || errno == ERANGE || !std::isfinite(v))
    throw UsageError("option '--" + option + "': '" + text + "' is not a number");
  if (v < min || v > max) {
    std::ostringstream os;
    os << "option '--" << option << "': " << text << " is out of range [" << min << ", " << max << "]";
    throw UsageError(os.str());
  }
  return v;
}

}  // namespace vlm::cli
