#include "text/jinja_filters.h"

#include <utf8proc.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "core/error.h"
#include "text/jinja_ops.h"
#include "text/jinja_strings.h"

namespace vlm::jinja {
namespace {

const std::string& need_str(const Value& v, const char* what) {
  if (!v.is_string()) fail(what, ": expected a string, got ", v.type_name());
  return v.str();
}

// jinja2's make_attrgetter: "a.b.0" walks items/attributes; integer parts index lists.
Value get_path(const Value& item, const Value& attribute) {
  if (!attribute.is_string()) return get_item(item, attribute);
  Value v = item;
  const std::string& path = attribute.str();
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    bool digits = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
    v = digits ? get_item(v, Value(static_cast<int64_t>(std::stoll(part)))) : get_item(v, Value(part));
    if (dot == std::string::npos) return v;
    start = dot + 1;
  }
}

// Sort/unique/min/max key: lower-cased strings unless case_sensitive.
Value sort_key(const Value& v, bool case_sensitive) {
  return (!case_sensitive && v.is_string()) ? Value(str_lower(v.str())) : v;
}

Value key_of(const Value& item, const Value& attribute, bool case_sensitive) {
  if (attribute.is_undefined() || attribute.is_none()) return sort_key(item, case_sensitive);
  if (attribute.is_string() && attribute.str().find(',') != std::string::npos) {
    List parts;
    const std::string comma = ",";
    for (auto& a : str_split(attribute.str(), &comma, -1))
      parts.push_back(sort_key(get_path(item, Value(str_strip(a, nullptr, true, true))), case_sensitive));
    return Value(std::move(parts));
  }
  return sort_key(get_path(item, attribute), case_sensitive);
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string jinja_title(const std::string& s) {
  // jinja2 capitalizes after runs of whitespace, '-', '(', '{', '[', '<' (not Python's str.title).
  std::u32string u = utf8_decode(s), out;
  bool start = true;
  for (char32_t c : u) {
    bool sep = is_space(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
    std::string ch = utf8_encode(std::u32string(1, c));
    out += utf8_decode(sep ? ch : (start ? str_upper(ch) : str_lower(ch)));
    start = sep;
  }
  return utf8_encode(out);
}

std::string indent(const std::string& s, const Value& width, bool first, bool blank) {
  std::string ind = width.is_string()
                        ? width.str()
                        : std::string(static_cast<size_t>(std::max<int64_t>(0, to_index(width, "indent width"))), ' ');
  CallArgs none;
  Value lines_v = get_attr(Value(s + "\n"), "splitlines");
  List lines = lines_v.func().fn(none).list();
  std::string rv;
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string& line = lines[i].str();
    if (i > 0) {
      rv += '\n';
      if (blank || !line.empty()) rv += ind;
    }
    rv += line;
  }
  return first ? ind + rv : rv;
}

bool is_word_char(char32_t c) {
  if (c == '_') return true;
  auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) ||
         (cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO) || cat == UTF8PROC_CATEGORY_MN ||
         cat == UTF8PROC_CATEGORY_MC;
}

Value round_value(const Value& v, int64_t precision, const std::string& method) {
  double d = v.as_double();
  double scale = std::pow(10.0, static_cast<double>(precision));
  if (method == "ceil") return Value(std::ceil(d * scale) / scale);
  if (method == "floor") return Value(std::floor(d * scale) / scale);
  if (method != "common") fail("round: method must be common, ceil or floor");
  if (v.is_int() || v.is_bool()) return Value(v.as_int());  // Python round(int, n) stays int
  if (precision == 0) return Value(std::nearbyint(d));
  char buf[512];
  std::snprintf(buf, sizeof buf, "%.*f", static_cast<int>(std::clamp<int64_t>(precision, 0, 300)), d);
  return Value(std::strtod(buf, nullptr));
}

Value to_int(const Value& v, const Value& dflt, int64_t base) {
  if (v.is_bool() || v.is_int()) return Value(v.as_int());
  if (v.is_float()) return std::isfinite(v.as_double()) ? Value(static_cast<int64_t>(v.as_double())) : dflt;
  if (v.is_string()) {
    std::string s = str_strip(v.str(), nullptr, true, true);
    s.erase(std::remove(s.begin(), s.end(), '_'), s.end());
    if (s.empty()) return dflt;
    char* end = nullptr;
    errno = 0;
    long long r = std::strtoll(s.c_str(), &end, static_cast<int>(base));
    if (*end == '\0' && errno == 0) return Value(static_cast<int64_t>(r));
    double d = std::strtod(s.c_str(), &end);
    if (*end == '\0' && std::isfinite(d)) return Value(static_cast<int64_t>(d));
  }
  return dflt;
}

Value to_float(const Value& v, const Value& dflt) {
  if (v.is_number()) return Value(v.as_double());
  if (v.is_string()) {
    std::string s = str_strip(v.str(), nullptr, true, true);
    char* end = nullptr;
    double d = std::strtod(s.c_str(), &end);
    if (!s.empty() && *end == '\0') return Value(d);
  }
  return dflt;
}

List sorted(List items, bool reverse, bool case_sensitive, const Value& attribute) {
  std::vector<std::pair<Value, Value>> keyed;
  for (auto& it : items) keyed.emplace_back(key_of(it, attribute, case_sensitive), it);
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& a, const auto& b) {
    return reverse ? value_less(b.first, a.first) : value_less(a.first, b.first);
  });
  List out;
  for (auto& [k, v] : keyed) out.push_back(std::move(v));
  return out;
}

// select/reject/selectattr/rejectattr: args after the attribute are a test name and its arguments.
List select(const List& items, CallArgs& args, bool by_attr, bool keep_if) {
  size_t base = by_attr ? 1 : 0;
  Value attribute = by_attr ? args.get(0, "attribute") : Value();
  std::string test;
  CallArgs test_args;
  if (args.positional.size() > base) {
    test = need_str(args.positional[base], "select test name");
    test_args.positional.assign(args.positional.begin() + static_cast<long>(base) + 1, args.positional.end());
  }
  List out;
  for (const Value& item : items) {
    Value subject = by_attr ? get_path(item, attribute) : item;
    bool ok = test.empty() ? subject.truthy() : apply_test(test, subject, test_args);
    if (ok == keep_if) out.push_back(item);
  }
  return out;
}

Value min_max(const Value& input, CallArgs& args, bool want_max) {
  List items = iterate(input, want_max ? "max" : "min");
  if (items.empty()) return Value::undefined("no items");
  bool cs = args.get(0, "case_sensitive", Value(false)).truthy();
  Value attr = args.get(1, "attribute");
  size_t best = 0;
  for (size_t i = 1; i < items.size(); ++i) {
    Value a = key_of(items[i], attr, cs), b = key_of(items[best], attr, cs);
    if (want_max ? value_less(b, a) : value_less(a, b)) best = i;
  }
  return items[best];
}

}  // namespace

Value apply_filter(const std::string& name, const Value& in, CallArgs& args) {
  if (name == "default" || name == "d") {
    bool boolean = args.get(1, "boolean", Value(false)).truthy();
    if (in.is_undefined() || (boolean && !in.truthy())) return args.get(0, "default_value", Value(""));
    return in;
  }
  if (name == "length" || name == "count") {
    switch (in.kind()) {
      case Value::Kind::String: return Value(static_cast<int64_t>(utf8_length(in.str())));
      case Value::Kind::List: return Value(static_cast<int64_t>(in.list().size()));
      case Value::Kind::Dict: return Value(static_cast<int64_t>(in.dict().items.size()));
      case Value::Kind::Undefined: return Value(int64_t{0});
      default: fail("object of type '", in.type_name(), "' has no len()");
    }
  }
  if (name == "tojson") {
    JsonDumpOptions o;
    Value ind = args.get(0, "indent", Value::none());
    if (!ind.is_none()) o.indent = static_cast<int>(to_index(ind, "tojson indent"));
    o.ensure_ascii = args.find_keyword("ensure_ascii") && args.find_keyword("ensure_ascii")->truthy();
    o.sort_keys = args.find_keyword("sort_keys") && args.find_keyword("sort_keys")->truthy();
    if (const Value* sep = args.find_keyword("separators"); sep && sep->is_list() && sep->list().size() == 2) {
      o.item_sep = need_str(sep->list()[0], "tojson separators");
      o.key_sep = need_str(sep->list()[1], "tojson separators");
    }
    return Value(to_json(in, o));
  }
  if (name == "string") return in.is_string() ? in : Value(to_str(in));
  if (name == "safe") return in;
  if (name == "list") return Value(iterate(in, "list"));
  if (name == "trim") {
    Value chars = args.get(0, "chars");
    return Value(str_strip(to_str(in), chars.is_string() ? &chars.str() : nullptr, true, true));
  }
  if (name == "upper") return Value(str_upper(to_str(in)));
  if (name == "lower") return Value(str_lower(to_str(in)));
  if (name == "capitalize") return Value(str_capitalize(to_str(in)));
  if (name == "title") return Value(jinja_title(to_str(in)));
  if (name == "e" || name == "escape" || name == "forceescape") return Value(html_escape(to_str(in)));
  if (name == "replace") {
    Value count = args.get(2, "count", Value::none());
    return Value(str_replace(to_str(in), to_str(args.get(0, "old")), to_str(args.get(1, "new")),
                             count.is_none() ? -1 : static_cast<long>(to_index(count, "replace count"))));
  }
  if (name == "items") {
    if (in.is_undefined()) return Value(List{});
    if (!in.is_dict()) fail("items: expected a mapping, got ", in.type_name());
    return get_attr(in, "items").func().fn(args);
  }
  if (name == "first" || name == "last") {
    List items = iterate(in, name.c_str());
    if (items.empty()) return Value::undefined("no items");
    return name == "first" ? items.front() : items.back();
  }
  if (name == "join") {
    std::string sep = to_str(args.get(0, "d", Value("")));
    Value attr = args.get(1, "attribute", Value::none());
    std::string out;
    bool first = true;
    for (const Value& v : iterate(in, "join")) {
      if (!first) out += sep;
      first = false;
      out += to_str(attr.is_none() ? v : get_path(v, attr));
    }
    return Value(std::move(out));
  }
  if (name == "reverse") {
    if (in.is_string()) {
      std::u32string u = utf8_decode(in.str());
      return Value(utf8_encode(std::u32string(u.rbegin(), u.rend())));
    }
    List items = iterate(in, "reverse");
    std::reverse(items.begin(), items.end());
    return Value(std::move(items));
  }
  if (name == "sort")
    return Value(sorted(iterate(in, "sort"), args.get(0, "reverse", Value(false)).truthy(),
                        args.get(1, "case_sensitive", Value(false)).truthy(), args.get(2, "attribute", Value::none())));
  if (name == "dictsort") {
    if (!in.is_dict()) fail("dictsort: expected a mapping, got ", in.type_name());
    bool cs = args.get(0, "case_sensitive", Value(false)).truthy();
    std::string by = to_str(args.get(1, "by", Value("key")));
    bool reverse = args.get(2, "reverse", Value(false)).truthy();
    List pairs;
    for (const auto& [k, v] : in.dict().items) pairs.push_back(Value::tuple(List{k, v}));
    return Value(sorted(pairs, reverse, cs, Value(int64_t{by == "value" ? 1 : 0})));
  }
  if (name == "unique") {
    bool cs = args.get(0, "case_sensitive", Value(false)).truthy();
    Value attr = args.get(1, "attribute", Value::none());
    List out, seen;
    for (const Value& v : iterate(in, "unique")) {
      Value k = key_of(v, attr, cs);
      if (std::none_of(seen.begin(), seen.end(), [&](const Value& s) { return values_equal(s, k); })) {
        seen.push_back(k);
        out.push_back(v);
      }
    }
    return Value(std::move(out));
  }
  if (name == "map") {
    List out;
    if (const Value* attr = args.find_keyword("attribute")) {
      const Value* dflt = args.find_keyword("default");
      for (const Value& v : iterate(in, "map")) {
        Value r = get_path(v, *attr);
        out.push_back(r.is_undefined() && dflt ? *dflt : r);
      }
      return Value(std::move(out));
    }
    if (args.positional.empty()) fail("map: expected a filter name or attribute=");
    std::string filter = need_str(args.positional[0], "map filter name");
    CallArgs rest;
    rest.positional.assign(args.positional.begin() + 1, args.positional.end());
    rest.keyword = args.keyword;
    for (const Value& v : iterate(in, "map")) out.push_back(apply_filter(filter, v, rest));
    return Value(std::move(out));
  }
  if (name == "select" || name == "reject")
    return Value(select(iterate(in, name.c_str()), args, false, name == "select"));
  if (name == "selectattr" || name == "rejectattr")
    return Value(select(iterate(in, name.c_str()), args, true, name == "selectattr"));
  if (name == "attr") {
    // Python getattr only: dict keys are not attributes (namespace attributes are).
    if (in.is_dict() && !in.dict().is_namespace) {
      Value m = get_attr(in, to_str(args.get(0, "name")));
      return m.is_function() ? m : Value::undefined();
    }
    return get_attr(in, to_str(args.get(0, "name")));
  }
  if (name == "int")
    return to_int(in, args.get(0, "default", Value(int64_t{0})), to_index(args.get(1, "base", Value(10)), "base"));
  if (name == "float") return to_float(in, args.get(0, "default", Value(0.0)));
  if (name == "abs") {
    if (in.is_float()) return Value(std::fabs(in.as_double()));
    if (in.is_number()) return in.as_int() < 0 ? negate(in) : Value(in.as_int());
    fail("bad operand type for abs(): '", in.type_name(), "'");
  }
  if (name == "round") {
    if (!in.is_number()) fail("round: expected a number, got ", in.type_name());
    return round_value(in, to_index(args.get(0, "precision", Value(0)), "precision"),
                       to_str(args.get(1, "method", Value("common"))));
  }
  if (name == "sum") {
    Value attr = args.get(0, "attribute", Value::none());
    Value total = args.get(1, "start", Value(0));
    for (const Value& v : iterate(in, "sum")) total = binary_op("+", total, attr.is_none() ? v : get_path(v, attr));
    return total;
  }
  if (name == "min" || name == "max") return min_max(in, args, name == "max");
  if (name == "center") {
    std::u32string u = utf8_decode(to_str(in));
    int64_t width = to_index(args.get(0, "width", Value(80)), "width");
    int64_t marg = width - static_cast<int64_t>(u.size());
    if (marg <= 0) return Value(to_str(in));
    int64_t left = marg / 2 + (marg & width & 1);
    return Value(std::string(static_cast<size_t>(left), ' ') + to_str(in) +
                 std::string(static_cast<size_t>(marg - left), ' '));
  }
  if (name == "indent")
    return Value(indent(to_str(in), args.get(0, "width", Value(4)), args.get(1, "first", Value(false)).truthy(),
                        args.get(2, "blank", Value(false)).truthy()));
  if (name == "batch") {
    int64_t n = to_index(args.get(0, "linecount"), "batch linecount");
    if (n <= 0) fail("batch: linecount must be positive");
    Value fill = args.get(1, "fill_with", Value::none());
    List out, cur;
    for (const Value& v : iterate(in, "batch")) {
      cur.push_back(v);
      if (static_cast<int64_t>(cur.size()) == n) {
        out.emplace_back(std::move(cur));
        cur.clear();
      }
    }
    if (!cur.empty()) {
      if (!fill.is_none())
        while (static_cast<int64_t>(cur.size()) < n) cur.push_back(fill);
      out.emplace_back(std::move(cur));
    }
    return Value(std::move(out));
  }
  if (name == "wordcount") {
    int64_t n = 0;
    bool in_word = false;
    for (char32_t c : utf8_decode(to_str(in))) {
      bool w = is_word_char(c);
      if (w && !in_word) ++n;
      in_word = w;
    }
    return Value(n);
  }
  if (name == "truncate") {
    std::u32string u = utf8_decode(to_str(in));
    int64_t length = to_index(args.get(0, "length", Value(255)), "length");
    bool killwords = args.get(1, "killwords", Value(false)).truthy();
    std::u32string end = utf8_decode(to_str(args.get(2, "end", Value("..."))));
    Value lw = args.get(3, "leeway", Value::none());
    int64_t leeway = lw.is_none() ? 5 : to_index(lw, "leeway");
    if (static_cast<int64_t>(u.size()) <= length + leeway) return Value(to_str(in));
    size_t keep = static_cast<size_t>(std::max<int64_t>(0, length - static_cast<int64_t>(end.size())));
    std::u32string head = u.substr(0, keep);
    if (!killwords) {
      size_t sp = head.rfind(U' ');
      if (sp != std::u32string::npos) head = head.substr(0, sp);
    }
    return Value(utf8_encode(head + end));
  }
  if (name == "format") {
    if (!args.keyword.empty()) fail("format: keyword arguments are not supported");
    return Value(percent_format(to_str(in), Value(args.positional)));
  }
  if (name == "pprint") return Value(to_repr(in));
  fail("no filter named '", name, "'");
}

bool apply_test(const std::string& name, const Value& v, CallArgs& args) {
  auto arg = [&]() { return args.get(0, "other"); };
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "boolean") return v.is_bool();
  if (name == "true") return v.is_bool() && v.as_bool();
  if (name == "false") return v.is_bool() && !v.as_bool();
  if (name == "integer") return v.is_int();
  if (name == "float") return v.is_float();
  if (name == "number") return v.is_number();
  if (name == "string") return v.is_string();
  if (name == "mapping") return v.is_dict() && !v.dict().is_namespace;
  if (name == "iterable") return v.is_list() || v.is_dict() || v.is_string() || v.is_undefined();
  if (name == "sequence") return v.is_list() || v.is_dict() || v.is_string();
  if (name == "callable") return v.is_function();
  if (name == "escaped") return false;
  if (name == "lower") return v.is_string() && get_attr(v, "islower").func().fn(args).truthy();
  if (name == "upper") return v.is_string() && get_attr(v, "isupper").func().fn(args).truthy();
  if (name == "even" || name == "odd") {
    int64_t i = to_index(v, name.c_str());
    return ((i % 2) != 0) == (name == "odd");
  }
  if (name == "divisibleby") {
    int64_t d = to_index(arg(), "divisibleby");
    if (d == 0) fail("divisibleby: division by zero");
    return to_index(v, "divisibleby") % d == 0;
  }
  if (name == "eq" || name == "equalto" || name == "==") return values_equal(v, arg());
  if (name == "ne" || name == "!=") return !values_equal(v, arg());
  if (name == "lt" || name == "lessthan" || name == "<") return value_less(v, arg());
  if (name == "le" || name == "<=") return !value_less(arg(), v);
  if (name == "gt" || name == "greaterthan" || name == ">") return value_less(arg(), v);
  if (name == "ge" || name == ">=") return !value_less(v, arg());
  if (name == "in") return contains(args.get(0, "seq"), v);
  if (name == "sameas") {
    Value o = arg();
    // Identity: containers by pointer; scalars by value (CPython caches small ints and literals).
    if (v.is_list() && o.is_list()) return v.list_ptr() == o.list_ptr();
    if (v.is_dict() && o.is_dict()) return v.dict_ptr() == o.dict_ptr();
    return v.kind() == o.kind() && values_equal(v, o);
  }
  fail("no test named '", name, "'");
}

}  // namespace vlm::jinja
