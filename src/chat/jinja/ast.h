// The syntax tree of a parsed template: expressions and statements, each with the offset of the
// token it starts at (for error positions). The node set mirrors jinja2's, minus what chat
// templates never use (template inheritance, includes, imports, call blocks, recursive loops).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "chat/jinja/value.h"

namespace llm42::jinja {

struct Expr {
  enum class Kind {
    kConst,
    kName,
    kAttribute,  // a.b
    kItem,       // a[b]
    kSlice,      // the b of a[b] when it is start:stop:step
    kCall,
    kFilter,
    kTest,
    kUnary,
    kBinary,
    kConcat,   // a ~ b ~ c
    kCompare,  // a < b == c, chained as in Python
    kCondition,
    kList,  // also tuples
    kDict,
    kNamespaceRef,  // ns.attr as an assignment target
  };
  Expr(Kind k, uint32_t off) : kind(k), offset(off) {}
  virtual ~Expr() = default;
  Kind kind;
  uint32_t offset;
  // Levels of the subtree rooted here (a leaf is 1); the parser bounds it, so every recursion
  // over the tree (checks, evaluation, destruction) is bounded too.
  int depth = 1;
};
using ExprPtr = std::unique_ptr<Expr>;

struct Arguments {
  std::vector<ExprPtr> positional;
  std::vector<std::pair<std::string, ExprPtr>> keyword;
  ExprPtr star;       // *args
  ExprPtr star_star;  // **kwargs
};

struct ConstExpr : Expr {
  ConstExpr(uint32_t off, Value v) : Expr(Kind::kConst, off), value(std::move(v)) {}
  Value value;
};

struct NameExpr : Expr {
  NameExpr(uint32_t off, std::string n) : Expr(Kind::kName, off), name(std::move(n)) {}
  std::string name;
};

struct AttributeExpr : Expr {
  AttributeExpr(uint32_t off, ExprPtr o, std::string n)
      : Expr(Kind::kAttribute, off), object(std::move(o)), name(std::move(n)) {}
  ExprPtr object;
  std::string name;
};

struct ItemExpr : Expr {
  ItemExpr(uint32_t off, ExprPtr o, ExprPtr k)
      : Expr(Kind::kItem, off), object(std::move(o)), key(std::move(k)) {}
  ExprPtr object;
  ExprPtr key;  // may be a SliceExpr
};

struct SliceExpr : Expr {
  explicit SliceExpr(uint32_t off) : Expr(Kind::kSlice, off) {}
  ExprPtr start, stop, step;  // each may be null
};

struct CallExpr : Expr {
  CallExpr(uint32_t off, ExprPtr c) : Expr(Kind::kCall, off), callee(std::move(c)) {}
  ExprPtr callee;
  Arguments args;
};

// `operand | name(args)`; the operand is null for the filter of a filter block or block set,
// which applies to the block's output.
struct FilterExpr : Expr {
  FilterExpr(uint32_t off, ExprPtr o, std::string n)
      : Expr(Kind::kFilter, off), operand(std::move(o)), name(std::move(n)) {}
  ExprPtr operand;
  std::string name;
  Arguments args;
};

struct TestExpr : Expr {
  TestExpr(uint32_t off, ExprPtr o, std::string n)
      : Expr(Kind::kTest, off), operand(std::move(o)), name(std::move(n)) {}
  ExprPtr operand;
  std::string name;
  Arguments args;
};

enum class UnaryOp { kNeg, kPos, kNot };

struct UnaryExpr : Expr {
  UnaryExpr(uint32_t off, UnaryOp o, ExprPtr e)
      : Expr(Kind::kUnary, off), op(o), operand(std::move(e)) {}
  UnaryOp op;
  ExprPtr operand;
};

enum class BinaryExprOp { kAdd, kSub, kMul, kDiv, kFloorDiv, kMod, kPow, kAnd, kOr };

struct BinaryExpr : Expr {
  BinaryExpr(uint32_t off, BinaryExprOp o, ExprPtr l, ExprPtr r)
      : Expr(Kind::kBinary, off), op(o), left(std::move(l)), right(std::move(r)) {}
  BinaryExprOp op;
  ExprPtr left, right;
};

struct ConcatExpr : Expr {
  explicit ConcatExpr(uint32_t off) : Expr(Kind::kConcat, off) {}
  std::vector<ExprPtr> parts;
};

enum class CompareOp { kEq, kNe, kLt, kLe, kGt, kGe, kIn, kNotIn };

struct CompareExpr : Expr {
  CompareExpr(uint32_t off, ExprPtr f) : Expr(Kind::kCompare, off), first(std::move(f)) {}
  ExprPtr first;
  std::vector<std::pair<CompareOp, ExprPtr>> rest;
};

// `then if test else otherwise`; without an else, a false test gives Undefined.
struct ConditionExpr : Expr {
  ConditionExpr(uint32_t off, ExprPtr t, ExprPtr th, ExprPtr o)
      : Expr(Kind::kCondition, off), test(std::move(t)), then(std::move(th)),
        otherwise(std::move(o)) {}
  ExprPtr test, then, otherwise;
};

struct ListExpr : Expr {
  ListExpr(uint32_t off, bool tuple) : Expr(Kind::kList, off), is_tuple(tuple) {}
  std::vector<ExprPtr> items;
  bool is_tuple;
};

struct DictExpr : Expr {
  explicit DictExpr(uint32_t off) : Expr(Kind::kDict, off) {}
  std::vector<std::pair<ExprPtr, ExprPtr>> items;
};

struct NamespaceRefExpr : Expr {
  NamespaceRefExpr(uint32_t off, std::string n, std::string a)
      : Expr(Kind::kNamespaceRef, off), name(std::move(n)), attribute(std::move(a)) {}
  std::string name, attribute;
};

struct Stmt {
  enum class Kind {
    kText,
    kOutput,  // {{ expr }}
    kIf,
    kFor,
    kSet,
    kSetBlock,
    kMacro,
    kFilterBlock,
    kWith,
    kScope,  // transformers' {% generation %}: its body, in a scope of its own
    kBreak,
    kContinue,
  };
  Stmt(Kind k, uint32_t off) : kind(k), offset(off) {}
  virtual ~Stmt() = default;
  Kind kind;
  uint32_t offset;
};
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct TextStmt : Stmt {
  TextStmt(uint32_t off, std::string t) : Stmt(Kind::kText, off), text(std::move(t)) {}
  std::string text;
};

struct OutputStmt : Stmt {
  OutputStmt(uint32_t off, ExprPtr e) : Stmt(Kind::kOutput, off), expr(std::move(e)) {}
  ExprPtr expr;
};

struct IfStmt : Stmt {
  explicit IfStmt(uint32_t off) : Stmt(Kind::kIf, off) {}
  std::vector<std::pair<ExprPtr, Body>> branches;  // if, then each elif
  Body otherwise;
};

struct ForStmt : Stmt {
  explicit ForStmt(uint32_t off) : Stmt(Kind::kFor, off) {}
  ExprPtr target;    // a name or a tuple of names
  ExprPtr iterable;
  ExprPtr filter;    // `for x in xs if cond`; may be null
  Body body;
  Body otherwise;    // runs when nothing was iterated
};

struct SetStmt : Stmt {
  SetStmt(uint32_t off, ExprPtr t, ExprPtr v)
      : Stmt(Kind::kSet, off), target(std::move(t)), value(std::move(v)) {}
  ExprPtr target;  // a name, a tuple of names, or a namespace attribute
  ExprPtr value;
};

struct SetBlockStmt : Stmt {
  explicit SetBlockStmt(uint32_t off) : Stmt(Kind::kSetBlock, off) {}
  ExprPtr target;
  ExprPtr filter;  // a FilterExpr chain applied to the captured text; may be null
  Body body;
};

struct MacroStmt : Stmt {
  explicit MacroStmt(uint32_t off) : Stmt(Kind::kMacro, off) {}
  std::string name;
  std::vector<std::string> params;
  std::vector<ExprPtr> defaults;  // for the last defaults.size() params
  Body body;
  // Whether the body reads `varargs` / `kwargs`: only then does the macro take extra positional
  // / keyword arguments (jinja2 decides the same way).
  bool uses_varargs = false;
  bool uses_kwargs = false;
};

struct FilterBlockStmt : Stmt {
  explicit FilterBlockStmt(uint32_t off) : Stmt(Kind::kFilterBlock, off) {}
  ExprPtr filter;
  Body body;
};

struct WithStmt : Stmt {
  explicit WithStmt(uint32_t off) : Stmt(Kind::kWith, off) {}
  std::vector<ExprPtr> targets;
  std::vector<ExprPtr> values;
  Body body;
};

struct ScopeStmt : Stmt {
  explicit ScopeStmt(uint32_t off) : Stmt(Kind::kScope, off) {}
  Body body;
};

struct LoopControlStmt : Stmt {
  LoopControlStmt(uint32_t off, bool is_break)
      : Stmt(is_break ? Kind::kBreak : Kind::kContinue, off) {}
};

}  // namespace llm42::jinja
