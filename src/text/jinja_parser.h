// Jinja2 syntax tree and parser (the subset of jinja2 that chat templates use, with jinja2's
// operator precedence: or < and < not < comparisons < + - < ~ < * / // % < ** < unary < filters).
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "text/jinja_lexer.h"
#include "text/jinja_value.h"

namespace vlm::jinja {

enum class ExprKind {
  Literal,   // literal
  Name,      // name
  List,      // args = items
  Tuple,     // args = items
  Dict,      // args = key0, value0, key1, value1, ...
  GetAttr,   // args[0].name
  GetItem,   // args[0][args[1]]
  Slice,     // args[0][args[1]:args[2]:args[3]] (missing parts are null)
  Call,      // args[0](args[1..], kwargs)
  Filter,    // args[0] | name(args[1..], kwargs); args[0] null inside {% filter %}
  Test,      // args[0] is [not] name(args[1..])
  Neg,       // -args[0]
  Pos,       // +args[0]
  Not,       // not args[0]
  Binary,    // args[0] <name> args[1] for + - * / // % ** ~
  And,       // args[0] and args[1]
  Or,        // args[0] or args[1]
  Compare,   // args[0] ops[0] args[1] ops[1] args[2] ... (chained like Python)
  CondExpr,  // args[0] if args[1] else args[2] (args[2] may be null: undefined)
};

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;
struct Expr {
  ExprKind kind;
  int line = 0, col = 0;
  Value literal;
  std::string name;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;
  bool negated = false;
};

enum class NodeKind { Text, Output, If, For, Set, SetBlock, Macro, CallBlock, FilterBlock, Break, Continue, With };

struct Node;
using NodePtr = std::unique_ptr<Node>;
using Body = std::vector<NodePtr>;
struct Node {
  NodeKind kind;
  int line = 0, col = 0;
  std::string text;   // Text: literal output
  ExprPtr expr;       // Output value, For iterable, Set value, CallBlock call, FilterBlock/SetBlock filter
  ExprPtr target;     // For / Set / SetBlock target
  ExprPtr condition;  // For: inline `if` filter
  std::vector<std::pair<ExprPtr, Body>> branches;  // If: (condition, body); a null condition is `else`
  Body body, else_body;
  std::string name;                 // Macro name
  std::vector<std::string> params;  // Macro / CallBlock parameters, With names
  std::vector<ExprPtr> defaults;    // aligned with params; null when none (With: the values)
};

struct Template {
  Body body;
};

// Parses a template; throws vlm::Error with line and column on syntax errors.
std::shared_ptr<Template> parse_template(const std::string& source, const LexerOptions& options);

}  // namespace vlm::jinja
