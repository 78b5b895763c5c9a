// Command-line parsing for the `vlm` subcommands: long options only (--name VALUE or --name=VALUE),
// strict number parsing, and a UsageError (exit status 2) for anything malformed.
#pragma once
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace vlm::cli {

class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct OptionSpec {
  std::string name;  // without the leading "--"
  bool takes_value = true;
  bool repeatable = false;
  std::string help;  // "" hides it from the usage text
  std::string metavar = "VALUE";
};

struct Command {
  std::string name;
  std::string summary;
  std::string positional;  // e.g. "DIR|ID"; "" = none accepted
  std::vector<OptionSpec> options;
  std::string usage() const;
};

class Args {
 public:
  static Args parse(const Command& cmd, const std::vector<std::string>& argv);

  bool has(const std::string& name) const { return values_.count(name) != 0; }
  bool flag(const std::string& name) const { return has(name); }
  std::optional<std::string> get(const std::string& name) const;
  std::string get_or(const std::string& name, const std::string& fallback) const;
  const std::vector<std::string>& all(const std::string& name) const;
  std::string require(const std::string& name) const;
  std::optional<int64_t> get_int(const std::string& name, int64_t min, int64_t max) const;
  std::optional<double> get_double(const std::string& name, double min, double max) const;
  const std::vector<std::string>& positionals() const { return positionals_; }
  bool help() const { return help_; }

 private:
  std::map<std::string, std::vector<std::string>> values_;
  std::vector<std::string> positionals_;
  bool help_ = false;
};

// Usage text of the command parsed last (printed by main() on a UsageError).
const std::string& last_usage();

int64_t parse_int(const std::string& option, const std::string& text, int64_t min, int64_t max);
double parse_double(const std::string& option, const std::string& text, double min, double max);

}  // namespace vlm::cli
