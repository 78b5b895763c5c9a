#include "text/jinja_parser.h"

#include <initializer_list>
#include <string_view>

namespace vlm::jinja {
namespace {

constexpr int kMaxNesting = 128;  // bounds parser recursion on pathological input

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : t_(std::move(tokens)) {}

  std::shared_ptr<Template> run() {
    auto tpl = std::make_shared<Template>();
    tpl->body = parse_body({});
    if (cur().type != TokenType::Eof) {
      next();  // BlockBegin
      error_here("unexpected '", cur().text, "' tag");
    }
    return tpl;
  }

 private:
  // ---------- token helpers ----------
  const Token& cur() const { return t_[pos_]; }
  const Token& peek(size_t k = 1) const { return t_[std::min(pos_ + k, t_.size() - 1)]; }
  const Token& next() {
    const Token& t = t_[pos_];
    if (pos_ + 1 < t_.size()) ++pos_;
    return t;
  }
  template <typename... P>
  [[noreturn]] void error_here(const P&... parts) const {
    template_error(cur().line, cur().col, parts...);
  }
  static std::string describe(const Token& t) {
    switch (t.type) {
      case TokenType::Text: return "text";
      case TokenType::VarBegin: return "'{{'";
      case TokenType::VarEnd: return "'}}'";
      case TokenType::BlockBegin: return "'{%'";
      case TokenType::BlockEnd: return "'%}'";
      case TokenType::Eof: return "end of template";
      case TokenType::String: return "string literal";
      default: return "'" + t.text + "'";
    }
  }
  bool is_op(std::string_view op) const { return cur().type == TokenType::Operator && cur().text == op; }
  bool is_name(std::string_view n) const { return cur().type == TokenType::Name && cur().text == n; }
  bool accept_op(std::string_view op) {
    if (!is_op(op)) return false;
    next();
    return true;
  }
  bool accept_name(std::string_view n) {
    if (!is_name(n)) return false;
    next();
    return true;
  }
  void expect_op(std::string_view op) {
    if (!accept_op(op)) error_here("expected '", op, "', got ", describe(cur()));
  }
  void expect(TokenType type, const char* what) {
    if (cur().type != type) error_here("expected ", what, ", got ", describe(cur()));
    next();
  }
  std::string expect_identifier() {
    if (cur().type != TokenType::Name) error_here("expected a name, got ", describe(cur()));
    return next().text;
  }
  ExprPtr make(ExprKind k, const Token& at) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->line = at.line;
    e->col = at.col;
    return e;
  }
  struct DepthGuard {
    Parser& p;
    explicit DepthGuard(Parser& parser) : p(parser) {
      if (++p.depth_ > kMaxNesting) p.error_here("expression or block nesting deeper than ", kMaxNesting);
    }
    ~DepthGuard() { --p.depth_; }
  };

  // ---------- statements ----------
  // Parses until a block tag whose name is in `ends` (left unconsumed: cur() is that name).
  Body parse_body(std::initializer_list<std::string_view> ends) {
    DepthGuard guard(*this);
    Body body;
    while (true) {
      const Token& t = cur();
      if (t.type == TokenType::Eof) {
        if (ends.size()) {
          std::string names;
          for (std::string_view e : ends) names += (names.empty() ? "'" : ", '") + std::string(e) + "'";
          error_here("unexpected end of template, expected one of ", names);
        }
        return body;
      }
      if (t.type == TokenType::Text) {
        auto n = std::make_unique<Node>();
        n->kind = NodeKind::Text;
        n->line = t.line;
        n->col = t.col;
        n->text = t.text;
        body.push_back(std::move(n));
        next();
      } else if (t.type == TokenType::VarBegin) {
        auto n = std::make_unique<Node>();
        n->kind = NodeKind::Output;
        n->line = t.line;
        n->col = t.col;
        next();
        n->expr = parse_tuple(true);
        expect(TokenType::VarEnd, "'}}'");
        body.push_back(std::move(n));
      } else if (t.type == TokenType::BlockBegin) {
        const Token& name = peek();
        if (name.type != TokenType::Name) {
          next();
          error_here("expected a statement name after '{%', got ", describe(cur()));
        }
        for (std::string_view e : ends) {
          if (name.text == e) {
            next();
            return body;
          }
        }
        next();
        body.push_back(parse_statement());
      } else {
        error_here("unexpected ", describe(t));
      }
    }
  }

  void end_tag() { expect(TokenType::BlockEnd, "'%}'"); }

  // After parse_body returned on an end tag: consume "name %}".
  void close(const char* name) {
    if (!accept_name(name)) error_here("expected '", name, "'");
    end_tag();
  }

  NodePtr parse_statement() {
    const Token& t = cur();
    auto n = std::make_unique<Node>();
    n->line = t.line;
    n->col = t.col;
    std::string kw = next().text;
    if (kw == "if") {
      n->kind = NodeKind::If;
      ExprPtr cond = parse_tuple(true);
      end_tag();
      while (true) {
        Body b = parse_body({"elif", "else", "endif"});
        n->branches.emplace_back(std::move(cond), std::move(b));
        if (accept_name("elif")) {
          cond = parse_tuple(true);
          end_tag();
        } else if (accept_name("else")) {
          end_tag();
          n->branches.emplace_back(nullptr, parse_body({"endif"}));
          close("endif");
          break;
        } else {
          close("endif");
          break;
        }
      }
    } else if (kw == "for") {
      n->kind = NodeKind::For;
      n->target = parse_assign_target(true);
      if (!accept_name("in")) error_here("expected 'in' in for loop, got ", describe(cur()));
      n->expr = parse_tuple(false);
      if (accept_name("if")) n->condition = parse_tuple(true);
      if (accept_name("recursive")) template_error(n->line, n->col, "recursive for loops are not supported");
      end_tag();
      n->body = parse_body({"endfor", "else"});
      if (accept_name("else")) {
        end_tag();
        n->else_body = parse_body({"endfor"});
      }
      close("endfor");
    } else if (kw == "set") {
      n->target = parse_assign_target(false);
      if (accept_op("=")) {
        n->kind = NodeKind::Set;
        n->expr = parse_tuple(true);
        end_tag();
      } else {
        n->kind = NodeKind::SetBlock;
        if (is_op("|")) n->expr = parse_filters(nullptr);
        end_tag();
        n->body = parse_body({"endset"});
        close("endset");
      }
    } else if (kw == "macro") {
      n->kind = NodeKind::Macro;
      n->name = expect_identifier();
      parse_signature(*n);
      end_tag();
      n->body = parse_body({"endmacro"});
      close("endmacro");
    } else if (kw == "call") {
      n->kind = NodeKind::CallBlock;
      if (is_op("(")) parse_signature(*n);
      n->expr = parse_expression(true);
      if (n->expr->kind != ExprKind::Call) template_error(n->line, n->col, "{% call %} expects a macro call");
      end_tag();
      n->body = parse_body({"endcall"});
      close("endcall");
    } else if (kw == "filter") {
      n->kind = NodeKind::FilterBlock;
      n->expr = parse_filter_chain_inline();
      end_tag();
      n->body = parse_body({"endfilter"});
      close("endfilter");
    } else if (kw == "with") {
      n->kind = NodeKind::With;
      while (cur().type != TokenType::BlockEnd) {
        if (!n->params.empty()) expect_op(",");
        n->params.push_back(expect_identifier());
        expect_op("=");
        n->defaults.push_back(parse_expression(true));
      }
      end_tag();
      n->body = parse_body({"endwith"});
      close("endwith");
    } else if (kw == "generation") {
      // transformers' AssistantTracker extension: renders its body unchanged.
      n->kind = NodeKind::With;
      end_tag();
      n->body = parse_body({"endgeneration"});
      close("endgeneration");
    } else if (kw == "break" || kw == "continue") {
      n->kind = kw == "break" ? NodeKind::Break : NodeKind::Continue;
      end_tag();
    } else {
      template_error(t.line, t.col, "unknown or unsupported tag '", kw, "'");
    }
    return n;
  }

  // "(a, b=1, c)" for macros and call blocks.
  void parse_signature(Node& n) {
    expect_op("(");
    while (!accept_op(")")) {
      if (!n.params.empty()) expect_op(",");
      if (accept_op(")")) break;
      n.params.push_back(expect_identifier());
      n.defaults.push_back(accept_op("=") ? parse_expression(true) : nullptr);
    }
  }

  // Name, "a, b", "(a, b)" or (for set) "ns.attr".
  ExprPtr parse_assign_target(bool for_loop) {
    const Token& start = cur();
    auto one = [&]() -> ExprPtr {
      if (accept_op("(")) {
        ExprPtr inner = parse_assign_target(for_loop);
        expect_op(")");
        return inner;
      }
      const Token& nt = cur();
      auto e = make(ExprKind::Name, nt);
      e->name = expect_identifier();
      if (!for_loop && accept_op(".")) {
        auto attr = make(ExprKind::GetAttr, nt);
        attr->name = expect_identifier();
        attr->args.push_back(std::move(e));
        return attr;
      }
      return e;
    };
    ExprPtr first = one();
    if (!is_op(",")) return first;
    auto tuple = make(ExprKind::Tuple, start);
    tuple->args.push_back(std::move(first));
    while (accept_op(",")) {
      if (is_name("in") || is_op("=") || cur().type == TokenType::BlockEnd) break;
      tuple->args.push_back(one());
    }
    return tuple;
  }

  // ---------- expressions ----------
  // An expression or an unparenthesized tuple "a, b".
  ExprPtr parse_tuple(bool with_condexpr) {
    const Token& start = cur();
    ExprPtr first = parse_expression(with_condexpr);
    if (!is_op(",")) return first;
    auto tuple = make(ExprKind::Tuple, start);
    tuple->args.push_back(std::move(first));
    while (accept_op(",")) {
      if (cur().type == TokenType::VarEnd || cur().type == TokenType::BlockEnd || is_op(")") || is_name("if")) break;
      tuple->args.push_back(parse_expression(with_condexpr));
    }
    return tuple;
  }

  ExprPtr parse_expression(bool with_condexpr) { return with_condexpr ? parse_condexpr() : parse_or(); }

  ExprPtr parse_condexpr() {
    DepthGuard guard(*this);
    ExprPtr expr = parse_or();
    while (is_name("if")) {
      auto e = make(ExprKind::CondExpr, next());
      e->args.push_back(std::move(expr));
      e->args.push_back(parse_or());
      e->args.push_back(accept_name("else") ? parse_condexpr() : nullptr);
      expr = std::move(e);
    }
    return expr;
  }

  ExprPtr binary(ExprKind k, const Token& at, ExprPtr a, ExprPtr b, std::string op = {}) {
    auto e = make(k, at);
    e->name = std::move(op);
    e->args.push_back(std::move(a));
    e->args.push_back(std::move(b));
    return e;
  }

  ExprPtr parse_or() {
    ExprPtr l = parse_and();
    while (is_name("or")) {
      const Token& t = next();
      l = binary(ExprKind::Or, t, std::move(l), parse_and());
    }
    return l;
  }

  ExprPtr parse_and() {
    ExprPtr l = parse_not();
    while (is_name("and")) {
      const Token& t = next();
      l = binary(ExprKind::And, t, std::move(l), parse_not());
    }
    return l;
  }

  ExprPtr parse_not() {
    DepthGuard guard(*this);
    if (is_name("not")) {
      auto e = make(ExprKind::Not, next());
      e->args.push_back(parse_not());
      return e;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    const Token& start = cur();
    ExprPtr first = parse_math1();
    ExprPtr cmp;
    while (true) {
      std::string op;
      if (cur().type == TokenType::Operator && (cur().text == "==" || cur().text == "!=" || cur().text == "<" ||
                                                cur().text == "<=" || cur().text == ">" || cur().text == ">=")) {
        op = next().text;
      } else if (accept_name("in")) {
        op = "in";
      } else if (is_name("not") && peek().type == TokenType::Name && peek().text == "in") {
        next();
        next();
        op = "not in";
      } else {
        break;
      }
      if (!cmp) {
        cmp = make(ExprKind::Compare, start);
        cmp->args.push_back(std::move(first));
      }
      cmp->ops.push_back(op);
      cmp->args.push_back(parse_math1());
    }
    return cmp ? std::move(cmp) : std::move(first);
  }

  ExprPtr parse_math1() {
    ExprPtr l = parse_concat();
    while (is_op("+") || is_op("-")) {
      const Token& t = next();
      l = binary(ExprKind::Binary, t, std::move(l), parse_concat(), t.text);
    }
    return l;
  }

  ExprPtr parse_concat() {
    ExprPtr l = parse_math2();
    while (is_op("~")) {
      const Token& t = next();
      l = binary(ExprKind::Binary, t, std::move(l), parse_math2(), "~");
    }
    return l;
  }

  ExprPtr parse_math2() {
    ExprPtr l = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const Token& t = next();
      l = binary(ExprKind::Binary, t, std::move(l), parse_pow(), t.text);
    }
    return l;
  }

  ExprPtr parse_pow() {
    ExprPtr l = parse_unary(true);
    while (is_op("**")) {
      const Token& t = next();
      l = binary(ExprKind::Binary, t, std::move(l), parse_unary(true), "**");
    }
    return l;
  }

  ExprPtr parse_unary(bool with_filter) {
    DepthGuard guard(*this);
    ExprPtr node;
    if (is_op("-") || is_op("+")) {
      const Token& t = next();
      node = make(t.text == "-" ? ExprKind::Neg : ExprKind::Pos, t);
      node->args.push_back(parse_unary(false));
    } else {
      node = parse_primary();
    }
    node = parse_postfix(std::move(node));
    if (with_filter) node = parse_filter_expr(std::move(node));
    return node;
  }

  ExprPtr parse_primary() {
    const Token& t = cur();
    switch (t.type) {
      case TokenType::Name: {
        next();
        if (t.text == "true" || t.text == "True" || t.text == "false" || t.text == "False") {
          auto e = make(ExprKind::Literal, t);
          e->literal = Value(t.text[0] == 't' || t.text[0] == 'T');
          return e;
        }
        if (t.text == "none" || t.text == "None") {
          auto e = make(ExprKind::Literal, t);
          e->literal = Value::none();
          return e;
        }
        auto e = make(ExprKind::Name, t);
        e->name = t.text;
        return e;
      }
      case TokenType::String: {
        std::string s;
        while (cur().type == TokenType::String) s += next().text;  // adjacent literals concatenate
        auto e = make(ExprKind::Literal, t);
        e->literal = Value(std::move(s));
        return e;
      }
      case TokenType::Integer: {
        next();
        auto e = make(ExprKind::Literal, t);
        e->literal = Value(t.int_value);
        return e;
      }
      case TokenType::Float: {
        next();
        auto e = make(ExprKind::Literal, t);
        e->literal = Value(t.float_value);
        return e;
      }
      case TokenType::Operator:
        if (t.text == "(") {
          next();
          if (accept_op(")")) return make(ExprKind::Tuple, t);
          ExprPtr inner = parse_expression(true);
          if (is_op(",")) {
            auto tuple = make(ExprKind::Tuple, t);
            tuple->args.push_back(std::move(inner));
            while (accept_op(",")) {
              if (is_op(")")) break;
              tuple->args.push_back(parse_expression(true));
            }
            inner = std::move(tuple);
          }
          expect_op(")");
          return inner;
        }
        if (t.text == "[") {
          next();
          auto e = make(ExprKind::List, t);
          while (!accept_op("]")) {
            if (!e->args.empty()) expect_op(",");
            if (accept_op("]")) break;
            e->args.push_back(parse_expression(true));
          }
          return e;
        }
        if (t.text == "{") {
          next();
          auto e = make(ExprKind::Dict, t);
          while (!accept_op("}")) {
            if (!e->args.empty()) expect_op(",");
            if (accept_op("}")) break;
            e->args.push_back(parse_expression(true));
            expect_op(":");
            e->args.push_back(parse_expression(true));
          }
          return e;
        }
        break;
      default: break;
    }
    error_here("unexpected ", describe(t), " in expression");
  }

  ExprPtr parse_postfix(ExprPtr node) {
    while (true) {
      const Token& t = cur();
      if (is_op(".")) {
        next();
        if (cur().type == TokenType::Integer) {
          auto e = make(ExprKind::GetItem, t);
          auto idx = make(ExprKind::Literal, cur());
          idx->literal = Value(next().int_value);
          e->args.push_back(std::move(node));
          e->args.push_back(std::move(idx));
          node = std::move(e);
        } else {
          auto e = make(ExprKind::GetAttr, t);
          e->name = expect_identifier();
          e->args.push_back(std::move(node));
          node = std::move(e);
        }
      } else if (is_op("[")) {
        next();
        node = parse_subscript(std::move(node), t);
      } else if (is_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr obj, const Token& at) {
    ExprPtr parts[3];
    int colons = 0;
    for (int i = 0; i < 3; ++i) {
      if (!is_op(":") && !is_op("]")) parts[i] = parse_expression(true);
      if (i < 2 && accept_op(":")) {
        ++colons;
        continue;
      }
      break;
    }
    expect_op("]");
    if (colons == 0) {
      if (!parts[0]) template_error(at.line, at.col, "empty subscript");
      auto e = make(ExprKind::GetItem, at);
      e->args.push_back(std::move(obj));
      e->args.push_back(std::move(parts[0]));
      return e;
    }
    auto e = make(ExprKind::Slice, at);
    e->args.push_back(std::move(obj));
    for (auto& p : parts) e->args.push_back(std::move(p));
    return e;
  }

  // "(args...)": positional then keyword arguments, appended to `e`.
  void parse_args(Expr& e) {
    expect_op("(");
    bool first = true;
    while (!accept_op(")")) {
      if (!first) expect_op(",");
      first = false;
      if (accept_op(")")) break;
      if (cur().type == TokenType::Name && peek().type == TokenType::Operator && peek().text == "=") {
        std::string key = next().text;
        next();
        e.kwargs.emplace_back(std::move(key), parse_expression(true));
      } else {
        if (!e.kwargs.empty()) error_here("positional argument after keyword argument");
        e.args.push_back(parse_expression(true));
      }
    }
  }

  ExprPtr parse_call(ExprPtr callee) {
    auto e = make(ExprKind::Call, cur());
    e->args.push_back(std::move(callee));
    parse_args(*e);
    return e;
  }

  std::string dotted_name() {
    std::string name = expect_identifier();
    while (is_op(".") && peek().type == TokenType::Name) {
      next();
      name += "." + next().text;
    }
    return name;
  }

  ExprPtr parse_filter_expr(ExprPtr node) {
    while (true) {
      if (is_op("|")) {
        node = parse_filters(std::move(node));
      } else if (is_name("is")) {
        const Token& t = next();
        auto e = make(ExprKind::Test, t);
        e->negated = accept_name("not");
        e->name = dotted_name();
        e->args.push_back(std::move(node));
        const Token& a = cur();
        if (is_op("(")) {
          parse_args(*e);
        } else if ((a.type == TokenType::Name && a.text != "else" && a.text != "or" && a.text != "and") ||
                   a.type == TokenType::String || a.type == TokenType::Integer || a.type == TokenType::Float ||
                   is_op("[") || is_op("{")) {
          if (!(a.type == TokenType::Name && (a.text == "if" || a.text == "in" || a.text == "is" || a.text == "not"))) {
            e->args.push_back(parse_postfix(parse_primary()));
          }
        }
        node = std::move(e);
      } else if (is_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }

  // One or more "| name(args)" applied to `node` (null inside {% set x | f %} / {% filter %}).
  ExprPtr parse_filters(ExprPtr node) {
    while (accept_op("|")) {
      auto e = make(ExprKind::Filter, cur());
      e->name = dotted_name();
      e->args.push_back(std::move(node));
      if (is_op("(")) parse_args(*e);
      node = std::move(e);
    }
    return node;
  }

  ExprPtr parse_filter_chain_inline() {
    auto e = make(ExprKind::Filter, cur());
    e->name = dotted_name();
    e->args.push_back(nullptr);
    if (is_op("(")) parse_args(*e);
    return is_op("|") ? parse_filters(std::move(e)) : std::move(e);
  }

  std::vector<Token> t_;
  size_t pos_ = 0;
  int depth_ = 0;
};

}  // namespace

std::shared_ptr<Template> parse_template(const std::string& source, const LexerOptions& options) {
  return Parser(tokenize(source, options)).run();
}

}  // namespace vlm::jinja
