#include "text/jinja_eval.h"

#include <ctime>
#include <unordered_map>

#include "core/error.h"
#include "text/jinja_filters.h"
#include "text/jinja_ops.h"

namespace vlm::jinja {
namespace {

using Frame = std::unordered_map<std::string, Value>;
using Scope = std::vector<std::shared_ptr<Frame>>;

constexpr const char* kLocatedPrefix = "chat template error at line ";

// Errors raised below expression level (filters, operators) gain the innermost location here.
[[noreturn]] void rethrow_located(const Error& e, int line, int col) {
  std::string msg = e.what();
  if (msg.rfind(kLocatedPrefix, 0) == 0) throw e;
  template_error(line, col, msg);
}

Value make_range(CallArgs& a) {
  int64_t start = 0, stop, step = 1;
  if (a.positional.size() == 1) {
    stop = to_index(a.positional[0], "range()");
  } else if (a.positional.size() == 2 || a.positional.size() == 3) {
    start = to_index(a.positional[0], "range()");
    stop = to_index(a.positional[1], "range()");
    if (a.positional.size() == 3) step = to_index(a.positional[2], "range()");
  } else {
    fail("range expected 1 to 3 integer arguments, got ", a.positional.size());
  }
  if (step == 0) fail("range() arg 3 must not be zero");
  List out;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
    if (out.size() >= kMaxSequenceLength) fail("range() too long (more than ", kMaxSequenceLength, " items)");
    out.emplace_back(i);
  }
  return Value(std::move(out));
}

Value make_dict(CallArgs& a, bool is_namespace) {
  Value d = Value::new_dict();
  d.dict().is_namespace = is_namespace;
  for (const Value& p : a.positional) {
    if (!p.is_dict()) fail(is_namespace ? "namespace" : "dict", "() positional argument must be a mapping");
    for (const auto& [k, v] : p.dict().items) d.dict().set(k, v);
  }
  for (const auto& [k, v] : a.keyword) d.dict().set(Value(k), v);
  return d;
}

Value strftime_now(CallArgs& a) {
  Value fmt = a.get(0, "format");
  if (!fmt.is_string()) fail("strftime_now() expects a format string");
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char buf[512];
  size_t n = std::strftime(buf, sizeof buf, fmt.str().c_str(), &tm);
  return Value(std::string(buf, n));
}

class Renderer {
 public:
  explicit Renderer(const RenderLimits& limits) : limits_(limits) {}

  std::string run(const Template& tpl, const Value& context) {
    auto globals = std::make_shared<Frame>();
    (*globals)["range"] = Value::function("range", make_range);
    (*globals)["dict"] = Value::function("dict", [](CallArgs& a) { return make_dict(a, false); });
    (*globals)["namespace"] = Value::function("namespace", [](CallArgs& a) { return make_dict(a, true); });
    (*globals)["strftime_now"] = Value::function("strftime_now", strftime_now);
    (*globals)["raise_exception"] = Value::function(
        "raise_exception", [](CallArgs& a) -> Value { fail("raise_exception: ", to_str(a.get(0, "message"))); });
    auto top = std::make_shared<Frame>();
    if (context.is_dict())
      for (const auto& [k, v] : context.dict().items) (*top)[to_str(k)] = v;
    scope_ = {globals, top};
    std::string out;
    out_ = &out;
    render_body(tpl.body);
    return out;
  }

 private:
  enum class Flow { Normal, Break, Continue };

  void write(const std::string& s) {
    if (out_->size() + s.size() > limits_.max_output_bytes)
      fail("chat template output exceeds ", limits_.max_output_bytes, " bytes");
    *out_ += s;
  }

  Value lookup(const std::string& name) const {
    for (auto it = scope_.rbegin(); it != scope_.rend(); ++it) {
      auto f = (*it)->find(name);
      if (f != (*it)->end()) return f->second;
    }
    return Value::undefined(name);
  }

  Flow render_body(const Body& body) {
    for (const NodePtr& n : body) {
      Flow f = render_node(*n);
      if (f != Flow::Normal) return f;
    }
    return Flow::Normal;
  }

  // Renders `body` into a fresh buffer (macro bodies, set blocks, filter blocks).
  std::string capture(const Body& body) {
    std::string buf;
    std::string* saved = out_;
    out_ = &buf;
    try {
      render_body(body);
    } catch (...) {
      out_ = saved;
      throw;
    }
    out_ = saved;
    if (saved->size() + buf.size() > limits_.max_output_bytes)
      fail("chat template output exceeds ", limits_.max_output_bytes, " bytes");
    return buf;
  }

  Flow render_node(const Node& n) {
    try {
      switch (n.kind) {
        case NodeKind::Text: write(n.text); break;
        case NodeKind::Output: write(to_str(eval(*n.expr))); break;
        case NodeKind::If:
          for (const auto& [cond, body] : n.branches)
            if (!cond || eval(*cond).truthy()) return render_body(body);
          break;
        case NodeKind::For: return render_for(n);
        case NodeKind::Set: assign(*n.target, eval(*n.expr)); break;
        case NodeKind::SetBlock: {
          Value v(capture(n.body));
          if (n.expr) v = apply_filters(*n.expr, v);
          assign(*n.target, v);
          break;
        }
        case NodeKind::Macro: scope_.back()->insert_or_assign(n.name, make_macro(n)); break;
        case NodeKind::CallBlock: write(to_str(eval_call_block(n))); break;
        case NodeKind::FilterBlock: write(to_str(apply_filters(*n.expr, Value(capture(n.body))))); break;
        case NodeKind::Break: return Flow::Break;
        case NodeKind::Continue: return Flow::Continue;
        case NodeKind::With: {
          auto frame = std::make_shared<Frame>();
          for (size_t i = 0; i < n.params.size(); ++i) (*frame)[n.params[i]] = eval(*n.defaults[i]);
          scope_.push_back(frame);
          Flow f = render_body(n.body);
          scope_.pop_back();
          return f;
        }
      }
    } catch (const Error& e) {
      rethrow_located(e, n.line, n.col);
    }
    return Flow::Normal;
  }

  Flow render_for(const Node& n) {
    List items;
    Value iterable = eval(*n.expr);
    auto frame = std::make_shared<Frame>();
    scope_.push_back(frame);
    struct Pop {
      Scope& s;
      ~Pop() { s.pop_back(); }
    } pop{scope_};
    for (Value& v : iterate(iterable, "for loop")) {
      if (n.condition) {
        assign(*n.target, v);
        if (!eval(*n.condition).truthy()) continue;
      }
      items.push_back(std::move(v));
    }
    if (items.empty()) return render_body(n.else_body);
    const int64_t len = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < len; ++i) {
      if (++iterations_ > limits_.max_loop_iterations)
        fail("chat template exceeded ", limits_.max_loop_iterations, " loop iterations");
      Value loop = Value::new_dict();
      auto& d = loop.dict().items;
      d.reserve(12);
      auto put = [&](const char* k, Value v) { d.emplace_back(Value(k), std::move(v)); };
      put("index", Value(i + 1));
      put("index0", Value(i));
      put("revindex", Value(len - i));
      put("revindex0", Value(len - i - 1));
      put("first", Value(i == 0));
      put("last", Value(i == len - 1));
      put("length", Value(len));
      put("depth", Value(1));
      put("depth0", Value(0));
      if (i > 0) put("previtem", items[static_cast<size_t>(i - 1)]);
      if (i + 1 < len) put("nextitem", items[static_cast<size_t>(i + 1)]);
      put("cycle", Value::function("loop.cycle", [i](CallArgs& a) {
            if (a.positional.empty()) fail("loop.cycle() needs at least one argument");
            return a.positional[static_cast<size_t>(i) % a.positional.size()];
          }));
      // Each iteration gets a fresh scope: a `set` in one iteration is not seen by the next (jinja2).
      scope_.back() = std::make_shared<Frame>();
      (*scope_.back())["loop"] = loop;
      assign(*n.target, items[static_cast<size_t>(i)]);
      if (render_body(n.body) == Flow::Break) break;
    }
    return Flow::Normal;
  }

  void assign(const Expr& target, const Value& v) {
    switch (target.kind) {
      case ExprKind::Name: scope_.back()->insert_or_assign(target.name, v); return;
      case ExprKind::Tuple: {
        List items = iterate(v, "unpacking");
        if (items.size() != target.args.size())
          template_error(target.line, target.col, "cannot unpack ", items.size(), " values into ", target.args.size(),
                         " names");
        for (size_t i = 0; i < items.size(); ++i) assign(*target.args[i], items[i]);
        return;
      }
      case ExprKind::GetAttr: {
        Value obj = eval(*target.args[0]);
        if (!obj.is_dict() || !obj.dict().is_namespace)
          template_error(target.line, target.col, "cannot assign attribute '", target.name,
                         "' on a non-namespace object");
        obj.dict().set(Value(target.name), v);
        return;
      }
      default: template_error(target.line, target.col, "cannot assign to this expression");
    }
  }

  Value make_macro(const Node& n) {
    const Node* node = &n;
    return Value::function(n.name, [this, node](CallArgs& a) { return call_macro(*node, a); });
  }

  Value call_macro(const Node& m, CallArgs& a) {
    if (call_depth_ >= limits_.max_call_depth) fail("macro recursion deeper than ", limits_.max_call_depth, " calls");
    auto frame = std::make_shared<Frame>();
    Scope saved = scope_;
    scope_ = {scope_[0], scope_[1], frame};
    ++call_depth_;
    struct Restore {
      Renderer& r;
      Scope s;
      ~Restore() {
        r.scope_ = std::move(s);
        --r.call_depth_;
      }
    } restore{*this, std::move(saved)};
    size_t used_kw = 0;
    for (size_t i = 0; i < m.params.size(); ++i) {
      const std::string& p = m.params[i];
      Value v;
      if (i < a.positional.size()) {
        v = a.positional[i];
      } else if (const Value* kw = a.find_keyword(p)) {
        v = *kw;
        ++used_kw;
      } else if (m.defaults[i]) {
        v = eval(*m.defaults[i]);
      } else {
        v = Value::undefined(p);
      }
      (*frame)[p] = v;
    }
    List varargs;
    for (size_t i = m.params.size(); i < a.positional.size(); ++i) varargs.push_back(a.positional[i]);
    (*frame)["varargs"] = Value::tuple(std::move(varargs));
    Value kwargs = Value::new_dict();
    for (const auto& [k, v] : a.keyword) {
      if (k == "caller") {
        (*frame)["caller"] = v;
      } else if (std::find(m.params.begin(), m.params.end(), k) == m.params.end()) {
        kwargs.dict().set(Value(k), v);
      }
    }
    (*frame)["kwargs"] = kwargs;
    return Value(capture(m.body));
  }

  Value eval_call_block(const Node& n) {
    const Node* node = &n;
    Scope closure = scope_;
    Value caller = Value::function("caller", [this, node, closure](CallArgs& a) {
      if (call_depth_ >= limits_.max_call_depth) fail("caller() recursion deeper than ", limits_.max_call_depth);
      auto frame = std::make_shared<Frame>();
      for (size_t i = 0; i < node->params.size(); ++i) {
        Value v = a.get(i, node->params[i]);
        if (v.is_undefined() && node->defaults[i]) v = eval(*node->defaults[i]);
        (*frame)[node->params[i]] = v;
      }
      Scope saved = scope_;
      scope_ = closure;
      scope_.push_back(frame);
      ++call_depth_;
      struct Restore {
        Renderer& r;
        Scope s;
        ~Restore() {
          r.scope_ = std::move(s);
          --r.call_depth_;
        }
      } restore{*this, std::move(saved)};
      return Value(capture(node->body));
    });
    const Expr& call = *n.expr;
    Value callee = eval(*call.args[0]);
    CallArgs args = eval_args(call);
    args.keyword.emplace_back("caller", caller);
    return invoke(callee, args, *call.args[0]);
  }

  // Applies a {% filter %} / {% set x | f %} chain whose innermost input is `input`.
  Value apply_filters(const Expr& chain, const Value& input) {
    Value saved = block_input_;
    block_input_ = input;
    Value r = eval(chain);
    block_input_ = saved;
    return r;
  }

  CallArgs eval_args(const Expr& e) {
    CallArgs args;
    args.line = e.line;
    args.col = e.col;
    for (size_t i = 1; i < e.args.size(); ++i) args.positional.push_back(eval(*e.args[i]));
    for (const auto& [k, v] : e.kwargs) args.keyword.emplace_back(k, eval(*v));
    return args;
  }

  Value invoke(const Value& callee, CallArgs& args, const Expr& what) {
    if (!callee.is_function()) {
      if (callee.is_undefined())
        fail("'", what.kind == ExprKind::Name ? what.name : callee.undefined_name(), "' is undefined (cannot call it)");
      fail("'", callee.type_name(), "' object is not callable");
    }
    return callee.func().fn(args);
  }

  Value eval(const Expr& e) {
    try {
      return eval_inner(e);
    } catch (const Error& err) {
      rethrow_located(err, e.line, e.col);
    }
  }

  Value eval_inner(const Expr& e) {
    switch (e.kind) {
      case ExprKind::Literal: return e.literal;
      case ExprKind::Name: return lookup(e.name);
      case ExprKind::List:
      case ExprKind::Tuple: {
        List out;
        for (const auto& x : e.args) out.push_back(eval(*x));
        return e.kind == ExprKind::Tuple ? Value::tuple(std::move(out)) : Value(std::move(out));
      }
      case ExprKind::Dict: {
        Value d = Value::new_dict();
        for (size_t i = 0; i + 1 < e.args.size(); i += 2) d.dict().set(eval(*e.args[i]), eval(*e.args[i + 1]));
        return d;
      }
      case ExprKind::GetAttr: return get_attr(eval(*e.args[0]), e.name);
      case ExprKind::GetItem: return get_item(eval(*e.args[0]), eval(*e.args[1]));
      case ExprKind::Slice: {
        auto opt = [&](size_t i) { return e.args[i] ? eval(*e.args[i]) : Value::none(); };
        return slice_value(eval(*e.args[0]), opt(1), opt(2), opt(3));
      }
      case ExprKind::Call: {
        Value callee = eval(*e.args[0]);
        CallArgs args = eval_args(e);
        return invoke(callee, args, *e.args[0]);
      }
      case ExprKind::Filter: {
        Value input = e.args[0] ? eval(*e.args[0]) : block_input_;
        CallArgs args = eval_args(e);
        return apply_filter(e.name, input, args);
      }
      case ExprKind::Test: {
        Value subject = eval(*e.args[0]);
        CallArgs args = eval_args(e);
        return Value(apply_test(e.name, subject, args) != e.negated);
      }
      case ExprKind::Neg: return negate(eval(*e.args[0]));
      case ExprKind::Pos: {
        Value v = eval(*e.args[0]);
        if (!v.is_number()) fail("bad operand type for unary +: '", v.type_name(), "'");
        return v.is_bool() ? Value(v.as_int()) : v;
      }
      case ExprKind::Not: return Value(!eval(*e.args[0]).truthy());
      case ExprKind::Binary: return binary_op(e.name, eval(*e.args[0]), eval(*e.args[1]));
      case ExprKind::And: {
        Value l = eval(*e.args[0]);
        return l.truthy() ? eval(*e.args[1]) : l;
      }
      case ExprKind::Or: {
        Value l = eval(*e.args[0]);
        return l.truthy() ? l : eval(*e.args[1]);
      }
      case ExprKind::Compare: {
        Value l = eval(*e.args[0]);
        for (size_t i = 0; i < e.ops.size(); ++i) {
          Value r = eval(*e.args[i + 1]);
          if (!compare(e.ops[i], l, r)) return Value(false);
          l = std::move(r);
        }
        return Value(true);
      }
      case ExprKind::CondExpr:
        if (eval(*e.args[1]).truthy()) return eval(*e.args[0]);
        return e.args[2] ? eval(*e.args[2]) : Value::undefined();
    }
    return Value::undefined();
  }

  static bool compare(const std::string& op, const Value& l, const Value& r) {
    if (op == "==") return values_equal(l, r);
    if (op == "!=") return !values_equal(l, r);
    if (op == "<") return value_less(l, r);
    if (op == ">") return value_less(r, l);
    if (op == "<=") return !value_less(r, l);
    if (op == ">=") return !value_less(l, r);
    if (op == "in") return contains(r, l);
    return !contains(r, l);  // "not in"
  }

  RenderLimits limits_;
  Scope scope_;
  std::string* out_ = nullptr;
  Value block_input_;
  int call_depth_ = 0;
  uint64_t iterations_ = 0;
};

}  // namespace

std::string render_template(const Template& tpl, const Value& context, const RenderLimits& limits) {
  return Renderer(limits).run(tpl, context);
}

}  // namespace vlm::jinja
