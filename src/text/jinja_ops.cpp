#include "text/jinja_ops.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>

#include "core/error.h"
#include "text/jinja_strings.h"

namespace vlm::jinja {
namespace {

// Python ints are unbounded; int64 overflow is reported instead of wrapping.
template <typename F>
int64_t checked(F op_fn, int64_t x, int64_t y, const std::string& op) {
  int64_t r = 0;
  if (op_fn(x, y, &r)) fail("integer overflow in '", op, "'");
  return r;
}
bool add_ovf(int64_t x, int64_t y, int64_t* r) {
  return __builtin_add_overflow(x, y, r);
}
bool sub_ovf(int64_t x, int64_t y, int64_t* r) {
  return __builtin_sub_overflow(x, y, r);
}
bool mul_ovf(int64_t x, int64_t y, int64_t* r) {
  return __builtin_mul_overflow(x, y, r);
}

Value repeat(const Value& seq, int64_t n) {
  if (n < 0) n = 0;
  if (seq.is_string()) {
    if (seq.str().size() * static_cast<size_t>(n) > kMaxSequenceLength) fail("string repetition result too large");
    std::string out;
    for (int64_t i = 0; i < n; ++i) out += seq.str();
    return Value(std::move(out));
  }
  if (seq.list().size() * static_cast<size_t>(n) > kMaxSequenceLength) fail("list repetition result too large");
  List out;
  for (int64_t i = 0; i < n; ++i) out.insert(out.end(), seq.list().begin(), seq.list().end());
  return Value(std::move(out));
}

[[noreturn]] void unsupported(const std::string& op, const Value& a, const Value& b) {
  if (a.is_undefined() || b.is_undefined())
    fail("'", a.is_undefined() ? a.undefined_name() : b.undefined_name(), "' is undefined (in '", op, "')");
  fail("unsupported operand type(s) for ", op, ": '", a.type_name(), "' and '", b.type_name(), "'");
}

double py_fmod(double a, double b) {
  double m = std::fmod(a, b);
  if (m != 0 && ((m < 0) != (b < 0))) m += b;
  return m;
}

std::vector<std::string> splitlines(const std::string& s, bool keepends) {
  std::vector<std::string> out;
  std::u32string u = utf8_decode(s);
  size_t start = 0;
  for (size_t i = 0; i < u.size(); ++i) {
    char32_t c = u[i];
    bool br = c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D || c == 0x1E || c == 0x85 ||
              c == 0x2028 || c == 0x2029;
    if (!br) continue;
    size_t end = i;
    if (c == '\r' && i + 1 < u.size() && u[i + 1] == '\n') ++i;
    out.push_back(utf8_encode(std::u32string_view(u).substr(start, (keepends ? i + 1 : end) - start)));
    start = i + 1;
  }
  if (start < u.size()) out.push_back(utf8_encode(std::u32string_view(u).substr(start)));
  return out;
}

template <typename Pred>
bool all_chars(const std::string& s, Pred pred) {
  auto u = utf8_decode(s);
  if (u.empty()) return false;
  for (char32_t c : u)
    if (!pred(c)) return false;
  return true;
}

const std::string* opt_str(const Value& v, const char* method) {
  if (v.is_undefined() || v.is_none()) return nullptr;
  if (!v.is_string()) fail("str.", method, "() argument must be str or None, not ", v.type_name());
  return &v.str();
}

Value string_method(const std::string& s, const std::string& name) {
  auto bind = [&](NativeFn fn) { return Value::function("str." + name, std::move(fn)); };
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    bool l = name != "rstrip", r = name != "lstrip";
    return bind(
        [s, l, r, name](CallArgs& a) { return Value(str_strip(s, opt_str(a.get(0, "chars"), name.c_str()), l, r)); });
  }
  if (name == "upper") return bind([s](CallArgs&) { return Value(str_upper(s)); });
  if (name == "lower") return bind([s](CallArgs&) { return Value(str_lower(s)); });
  if (name == "title") return bind([s](CallArgs&) { return Value(str_title(s)); });
  if (name == "capitalize") return bind([s](CallArgs&) { return Value(str_capitalize(s)); });
  if (name == "startswith" || name == "endswith") {
    bool start = name == "startswith";
    return bind([s, start](CallArgs& a) {
      Value p = a.get(0, "prefix");
      List options = p.is_list() ? p.list() : List{p};
      for (const Value& o : options) {
        if (!o.is_string()) fail("str.startswith/endswith argument must be str or a tuple of str");
        const std::string& x = o.str();
        if (x.size() <= s.size() &&
            (start ? s.compare(0, x.size(), x) : s.compare(s.size() - x.size(), x.size(), x)) == 0)
          return Value(true);
      }
      return Value(false);
    });
  }
  if (name == "split" || name == "rsplit") {
    bool right = name == "rsplit";
    return bind([s, right](CallArgs& a) {
      Value sep_v = a.get(0, "sep");
      const std::string* sep = opt_str(sep_v, "split");
      if (sep && sep->empty()) fail("str.split: empty separator");
      long maxsplit = static_cast<long>(to_index(a.get(1, "maxsplit", Value(-1)), "maxsplit"));
      std::vector<std::string> parts;
      if (right && maxsplit >= 0 && sep) {
        // rsplit with a limit: split from the right by reversing the search.
        std::string rest = s;
        std::vector<std::string> rev;
        while (static_cast<long>(rev.size()) < maxsplit) {
          size_t hit = rest.rfind(*sep);
          if (hit == std::string::npos) break;
          rev.push_back(rest.substr(hit + sep->size()));
          rest.resize(hit);
        }
        parts.push_back(rest);
        parts.insert(parts.end(), rev.rbegin(), rev.rend());
      } else {
        parts = str_split(s, sep, maxsplit);
      }
      List out;
      for (auto& p : parts) out.emplace_back(std::move(p));
      return Value(std::move(out));
    });
  }
  if (name == "splitlines")
    return bind([s](CallArgs& a) {
      List out;
      for (auto& p : splitlines(s, a.get(0, "keepends").truthy())) out.emplace_back(std::move(p));
      return Value(std::move(out));
    });
  if (name == "replace")
    return bind([s](CallArgs& a) {
      Value from = a.get(0, "old"), to = a.get(1, "new");
      if (!from.is_string() || !to.is_string()) fail("str.replace arguments must be str");
      return Value(
          str_replace(s, from.str(), to.str(), static_cast<long>(to_index(a.get(2, "count", Value(-1)), "count"))));
    });
  if (name == "find" || name == "rfind" || name == "index" || name == "count") {
    return bind([s, name](CallArgs& a) {
      Value sub = a.get(0, "sub");
      if (!sub.is_string()) fail("str.", name, " argument must be str");
      const std::string& x = sub.str();
      if (name == "count") {
        if (x.empty()) return Value(static_cast<int64_t>(utf8_length(s) + 1));
        int64_t n = 0;
        for (size_t p = s.find(x); p != std::string::npos; p = s.find(x, p + x.size())) ++n;
        return Value(n);
      }
      size_t p = name == "rfind" ? s.rfind(x) : s.find(x);
      if (p == std::string::npos) {
        if (name == "index") fail("str.index: substring not found");
        return Value(int64_t{-1});
      }
      return Value(static_cast<int64_t>(utf8_length(std::string_view(s).substr(0, p))));
    });
  }
  if (name == "join")
    return bind([s](CallArgs& a) {
      std::string out;
      bool first = true;
      for (const Value& v : iterate(a.get(0, "iterable"), "str.join")) {
        if (!v.is_string()) fail("str.join: sequence item must be str, not ", v.type_name());
        if (!first) out += s;
        first = false;
        out += v.str();
      }
      return Value(std::move(out));
    });
  if (name == "format") return bind([s](CallArgs& a) { return Value(brace_format(s, a)); });
  if (name == "isdigit")
    return bind([s](CallArgs&) { return Value(all_chars(s, [](char32_t c) { return c >= '0' && c <= '9'; })); });
  if (name == "isspace") return bind([s](CallArgs&) { return Value(all_chars(s, is_space)); });
  if (name == "isalpha" || name == "isalnum")
    return bind([s, name](CallArgs&) {
      bool num = name == "isalnum";
      return Value(all_chars(s, [num](char32_t c) {
        auto l = str_lower(utf8_encode(std::u32string(1, c))), u = str_upper(utf8_encode(std::u32string(1, c)));
        return l != u || (c < 0x80 && std::isalpha(static_cast<int>(c))) || (num && c >= '0' && c <= '9');
      }));
    });
  if (name == "islower" || name == "isupper")
    return bind([s, name](CallArgs&) {
      bool lower = name == "islower";
      bool cased = false;
      for (char32_t c : utf8_decode(s)) {
        std::string ch = utf8_encode(std::u32string(1, c));
        std::string l = str_lower(ch), u = str_upper(ch);
        if (l == u) continue;
        cased = true;
        if ((lower && ch != l) || (!lower && ch != u)) return Value(false);
      }
      return Value(cased);
    });
  return Value::undefined(name);
}

Value dict_method(const Value& d, const std::string& name) {
  if (name == "get")
    return Value::function("dict.get", [d](CallArgs& a) {
      const Value* v = d.dict().find(a.get(0, "key"));
      return v ? *v : a.get(1, "default", Value::none());
    });
  if (name == "items" || name == "keys" || name == "values")
    return Value::function("dict." + name, [d, name](CallArgs&) {
      List out;
      for (const auto& [k, v] : d.dict().items) {
        if (name == "items")
          out.push_back(Value::tuple(List{k, v}));
        else
          out.push_back(name == "keys" ? k : v);
      }
      return Value(std::move(out));
    });
  return Value::undefined(name);
}

}  // namespace

int64_t to_index(const Value& v, const char* what) {
  if (v.is_int() || v.is_bool()) return v.as_int();
  fail(what, " must be an integer, not ", v.type_name());
}

Value negate(const Value& v) {
  if (v.is_float()) return Value(-v.as_double());
  if (v.is_number()) return Value(checked(sub_ovf, 0, v.as_int(), "-"));
  fail("bad operand type for unary -: '", v.type_name(), "'");
}

Value binary_op(const std::string& op, const Value& a, const Value& b) {
  if (op == "~") return Value(to_str(a) + to_str(b));
  if (a.is_number() && b.is_number()) {
    bool fl = a.is_float() || b.is_float();
    int64_t x = a.is_float() ? 0 : a.as_int(), y = b.is_float() ? 0 : b.as_int();
    double dx = a.as_double(), dy = b.as_double();
    if (op == "+") return fl ? Value(dx + dy) : Value(checked(add_ovf, x, y, op));
    if (op == "-") return fl ? Value(dx - dy) : Value(checked(sub_ovf, x, y, op));
    if (op == "*") return fl ? Value(dx * dy) : Value(checked(mul_ovf, x, y, op));
    if (op == "/") {
      if (dy == 0) fail("division by zero");
      return Value(dx / dy);
    }
    if (op == "//" || op == "%") {
      if (dy == 0) fail(op == "%" ? "modulo by zero" : "integer division by zero");
      if (fl) {
        double m = py_fmod(dx, dy);
        return op == "%" ? Value(m) : Value(std::round((dx - m) / dy));
      }
      int64_t q = x / y, m = x % y;
      if (m != 0 && ((m < 0) != (y < 0))) {
        m += y;
        --q;
      }
      return op == "%" ? Value(m) : Value(q);
    }
    if (op == "**") {
      if (fl || y < 0) return Value(std::pow(dx, dy));
      int64_t res = 1;
      for (int64_t i = 0; i < y; ++i) {
        res = checked(mul_ovf, res, x, op);
        if (res == 0 || res == 1) break;
      }
      return Value(res);
    }
  }
  if (op == "+") {
    if (a.is_string() && b.is_string()) {
      if (a.str().size() + b.str().size() > kMaxSequenceLength) fail("string concatenation result too large");
      return Value(a.str() + b.str());
    }
    if (a.is_list() && b.is_list()) {
      List out = a.list();
      out.insert(out.end(), b.list().begin(), b.list().end());
      return Value(std::move(out));
    }
  }
  if (op == "*") {
    if ((a.is_string() || a.is_list()) && (b.is_int() || b.is_bool())) return repeat(a, b.as_int());
    if ((b.is_string() || b.is_list()) && (a.is_int() || a.is_bool())) return repeat(b, a.as_int());
  }
  if (op == "%" && a.is_string()) return Value(percent_format(a.str(), b));
  unsupported(op, a, b);
}

bool contains(const Value& c, const Value& item) {
  switch (c.kind()) {
    case Value::Kind::Undefined: return false;
    case Value::Kind::String:
      if (!item.is_string()) fail("'in <string>' requires string as left operand, not ", item.type_name());
      return c.str().find(item.str()) != std::string::npos;
    case Value::Kind::List:
      for (const Value& v : c.list())
        if (values_equal(v, item)) return true;
      return false;
    case Value::Kind::Dict: return c.dict().find(item) != nullptr;
    default: fail("argument of type '", c.type_name(), "' is not iterable");
  }
}

Value get_attr(const Value& obj, const std::string& name) {
  switch (obj.kind()) {
    case Value::Kind::Dict: {
      if (!obj.dict().is_namespace) {
        Value m = dict_method(obj, name);
        if (!m.is_undefined()) return m;
      }
      const Value* v = obj.dict().find(std::string_view(name));
      return v ? *v : Value::undefined(name);
    }
    case Value::Kind::String: return string_method(obj.str(), name);
    case Value::Kind::List:
      if (name == "append" || name == "pop" || name == "extend" || name == "insert" || name == "remove" ||
          name == "clear" || name == "sort" || name == "reverse")
        fail("access to attribute '", name, "' of 'list' object is unsafe (lists are immutable in chat templates)");
      return Value::undefined(name);
    default: return Value::undefined(name);
  }
}

Value get_item(const Value& obj, const Value& key) {
  if ((obj.is_list() || obj.is_string()) && (key.is_int() || key.is_bool())) {
    int64_t i = key.as_int();
    if (obj.is_list()) {
      int64_t n = static_cast<int64_t>(obj.list().size());
      if (i < 0) i += n;
      return i >= 0 && i < n ? obj.list()[static_cast<size_t>(i)] : Value::undefined();
    }
    std::u32string u = utf8_decode(obj.str());
    int64_t n = static_cast<int64_t>(u.size());
    if (i < 0) i += n;
    return i >= 0 && i < n ? Value(utf8_encode(u.substr(static_cast<size_t>(i), 1))) : Value::undefined();
  }
  if (obj.is_dict() && !obj.dict().is_namespace) {
    if (const Value* v = obj.dict().find(key)) return *v;
  }
  if (key.is_string()) return get_attr(obj, key.str());
  return Value::undefined();
}

Value slice_value(const Value& obj, const Value& start, const Value& stop, const Value& step) {
  auto opt = [](const Value& v, const char* what, bool& present) -> int64_t {
    present = !(v.is_undefined() || v.is_none());
    return present ? to_index(v, what) : 0;
  };
  bool has_start, has_stop, has_step;
  int64_t a = opt(start, "slice start", has_start), b = opt(stop, "slice stop", has_stop);
  int64_t st = opt(step, "slice step", has_step);
  if (!has_step) st = 1;
  if (st == 0) fail("slice step cannot be zero");
  std::u32string u;
  int64_t n;
  if (obj.is_string()) {
    u = utf8_decode(obj.str());
    n = static_cast<int64_t>(u.size());
  } else if (obj.is_list()) {
    n = static_cast<int64_t>(obj.list().size());
  } else if (obj.is_undefined()) {
    return Value::undefined();
  } else {
    fail("'", obj.type_name(), "' object is not subscriptable");
  }
  auto clamp = [&](int64_t v, bool present, int64_t dflt) {
    if (!present) return dflt;
    if (v < 0) v += n;
    if (st > 0) return std::clamp<int64_t>(v, 0, n);
    return std::clamp<int64_t>(v, -1, n - 1);
  };
  int64_t lo = clamp(a, has_start, st > 0 ? 0 : n - 1), hi = clamp(b, has_stop, st > 0 ? n : -1);
  std::vector<size_t> idx;
  for (int64_t i = lo; st > 0 ? i < hi : i > hi; i += st) idx.push_back(static_cast<size_t>(i));
  if (obj.is_string()) {
    std::u32string out;
    for (size_t i : idx) out += u[i];
    return Value(utf8_encode(out));
  }
  List out;
  for (size_t i : idx) out.push_back(obj.list()[i]);
  return Value(std::move(out));
}

List iterate(const Value& v, const char* what) {
  switch (v.kind()) {
    case Value::Kind::Undefined: return {};
    case Value::Kind::List: return v.list();
    case Value::Kind::Dict: {
      List keys;
      for (const auto& kv : v.dict().items) keys.push_back(kv.first);
      return keys;
    }
    case Value::Kind::String: {
      List out;
      for (char32_t c : utf8_decode(v.str())) out.emplace_back(utf8_encode(std::u32string(1, c)));
      return out;
    }
    default: fail(what, ": '", v.type_name(), "' object is not iterable");
  }
}

std::string percent_format(const std::string& fmt, const Value& args) {
  List list = args.is_list() ? args.list() : List{args};
  size_t next = 0;
  std::string out;
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] != '%') {
      out += fmt[i];
      continue;
    }
    if (++i >= fmt.size()) fail("format: incomplete format");
    char c = fmt[i];
    if (c == '%') {
      out += '%';
      continue;
    }
    if (next >= list.size()) fail("format: not enough arguments for format string");
    const Value& v = list[next++];
    if (c == 's')
      out += to_str(v);
    else if (c == 'r')
      out += to_repr(v);
    else if (c == 'd' || c == 'i')
      out += std::to_string(v.is_float() ? static_cast<int64_t>(v.as_double()) : to_index(v, "%d"));
    else if (c == 'f') {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%f", v.as_double());
      out += buf;
    } else {
      fail("format: unsupported format character '", std::string(1, c), "'");
    }
  }
  if (next < list.size() && args.is_list()) fail("format: not all arguments converted during string formatting");
  return out;
}

std::string brace_format(const std::string& fmt, const CallArgs& args) {
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    char c = fmt[i];
    if (c == '}') {
      if (i + 1 < fmt.size() && fmt[i + 1] == '}') ++i;
      out += '}';
      continue;
    }
    if (c != '{') {
      out += c;
      continue;
    }
    if (i + 1 < fmt.size() && fmt[i + 1] == '{') {
      out += '{';
      ++i;
      continue;
    }
    size_t close = fmt.find('}', i);
    if (close == std::string::npos) fail("str.format: single '{' encountered in format string");
    std::string field = fmt.substr(i + 1, close - i - 1);
    if (field.find(':') != std::string::npos || field.find('!') != std::string::npos)
      fail("str.format: format specs and conversions are not supported ('{", field, "}')");
    Value v;
    if (field.empty()) {
      v = args.get(auto_index++, "\x01");
    } else if (std::isdigit(static_cast<unsigned char>(field[0]))) {
      v = args.get(static_cast<size_t>(std::stoul(field)), "\x01");
    } else {
      const Value* kw = args.find_keyword(field);
      if (!kw) fail("str.format: missing argument '", field, "'");
      v = *kw;
    }
    out += to_str(v);
    i = close;
  }
  return out;
}

}  // namespace vlm::jinja
