// Runtime values of the Jinja engine with Python semantics (what transformers' jinja2 sees):
// None/True/False, int vs float, str, list, insertion-ordered dict, callables, Undefined.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace vlm::jinja {

class Value;
struct Dict;
struct CallArgs;
using List = std::vector<Value>;
using NativeFn = std::function<Value(CallArgs&)>;

struct UndefinedTag {
  std::string name;  // what was looked up, for error messages
};
struct NoneTag {};
struct Function {
  std::string name;
  NativeFn fn;
};

class Value {
 public:
  enum class Kind { Undefined, None, Bool, Int, Float, String, List, Dict, Function };

  Value() : v_(UndefinedTag{}) {}
  Value(bool b) : v_(b) {}
  Value(int i) : v_(static_cast<int64_t>(i)) {}
  Value(int64_t i) : v_(i) {}
  Value(double d) : v_(d) {}
  Value(std::string s) : v_(std::move(s)) {}
  Value(std::string_view s) : v_(std::string(s)) {}
  Value(const char* s) : v_(std::string(s)) {}
  Value(List l) : v_(std::make_shared<List>(std::move(l))) {}
  // Python tuple: a list that prints as (a, b) (tuple literals, dict.items(), dictsort pairs).
  static Value tuple(List l) {
    Value v(std::move(l));
    v.tuple_ = true;
    return v;
  }
  bool is_tuple() const { return tuple_ && is_list(); }
  Value(std::shared_ptr<List> l) : v_(std::move(l)) {}
  Value(std::shared_ptr<Dict> d) : v_(std::move(d)) {}
  Value(std::shared_ptr<Function> f) : v_(std::move(f)) {}

  static Value undefined(std::string name = {}) {
    Value v;
    v.v_ = UndefinedTag{std::move(name)};
    return v;
  }
  static Value none() {
    Value v;
    v.v_ = NoneTag{};
    return v;
  }
  static Value function(std::string name, NativeFn fn);
  static Value new_dict();

  Kind kind() const { return static_cast<Kind>(v_.index()); }
  bool is_undefined() const { return kind() == Kind::Undefined; }
  bool is_none() const { return kind() == Kind::None; }
  bool is_bool() const { return kind() == Kind::Bool; }
  bool is_int() const { return kind() == Kind::Int; }
  bool is_float() const { return kind() == Kind::Float; }
  // Python's numbers include bool (True + 1 == 2).
  bool is_number() const { return is_bool() || is_int() || is_float(); }
  bool is_string() const { return kind() == Kind::String; }
  bool is_list() const { return kind() == Kind::List; }
  bool is_dict() const { return kind() == Kind::Dict; }
  bool is_function() const { return kind() == Kind::Function; }

  bool as_bool() const { return std::get<bool>(v_); }
  int64_t as_int() const;    // bool or int
  double as_double() const;  // any number
  const std::string& str() const { return std::get<std::string>(v_); }
  const List& list() const { return *std::get<std::shared_ptr<List>>(v_); }
  const std::shared_ptr<List>& list_ptr() const { return std::get<std::shared_ptr<List>>(v_); }
  Dict& dict() const { return *std::get<std::shared_ptr<Dict>>(v_); }
  const std::shared_ptr<Dict>& dict_ptr() const { return std::get<std::shared_ptr<Dict>>(v_); }
  const Function& func() const { return *std::get<std::shared_ptr<Function>>(v_); }
  const std::string& undefined_name() const { return std::get<UndefinedTag>(v_).name; }

  bool truthy() const;
  // Python's type name, for error messages ("int", "str", "list", "dict", ...).
  std::string type_name() const;

 private:
  std::variant<UndefinedTag, NoneTag, bool, int64_t, double, std::string, std::shared_ptr<List>, std::shared_ptr<Dict>,
               std::shared_ptr<Function>>
      v_;
  bool tuple_ = false;
};

// An insertion-ordered dict (Python 3.7+ semantics). Linear lookup: chat-template dicts are tiny.
struct Dict {
  std::vector<std::pair<Value, Value>> items;
  bool is_namespace = false;  // jinja2 namespace(): the only object whose attributes `set` may assign

  const Value* find(const Value& key) const;
  const Value* find(std::string_view key) const;
  void set(const Value& key, Value value);
};

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
  int line = 0, col = 0;  // call site, for errors

  // Python-style binding: positional index `i` or keyword `name`, else `fallback`.
  Value get(size_t i, std::string_view name, const Value& fallback = Value()) const;
  const Value* find_keyword(std::string_view name) const;
};

bool values_equal(const Value& a, const Value& b);
// Python ordering (numbers, strings by code point, lists lexicographically); throws on other types.
bool value_less(const Value& a, const Value& b);

// Python str(): what `{{ x }}` prints. Undefined prints as "".
std::string to_str(const Value& v);
// Python repr(): ['a', 1, None], {'k': True}, 1.0.
std::string to_repr(const Value& v);
// Python float repr: shortest round-trip digits, "1.0", "1e+16", "inf".
std::string float_repr(double d);

struct JsonDumpOptions {
  int indent = -1;  // <0: single line with ", " and ": " separators
  bool sort_keys = false;
  bool ensure_ascii = false;
  std::string item_sep, key_sep;  // empty: Python's defaults for the indent mode
};
// json.dumps(v, ...) as transformers' tojson filter calls it.
std::string to_json(const Value& v, const JsonDumpOptions& options);

Value from_json(const nlohmann::json& j);
Value from_json(const nlohmann::ordered_json& j);

}  // namespace vlm::jinja
