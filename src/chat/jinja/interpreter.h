// The template interpreter: executes a parsed template over a root scope of variables and
// returns the text, with jinja2's scoping (a for loop's body and a macro get scopes of their own,
// so `set` inside them is invisible outside; `if` does not) and guards against runaway
// templates. Every error comes out as llm42::Error naming the template's origin, line and
// column.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>

#include "chat/jinja/ast.h"
#include "chat/jinja/value.h"
#include "chat/render_limits.h"

namespace llm42::jinja {

class Interpreter {
 public:
  Interpreter(const Body& program, const std::string& source, const std::string& origin,
              const RenderLimits& limits);

  // Runs the template once with `variables` (and the global functions) in its root scope.
  std::string render(Object variables);

  // For filters and functions that call back into the template: calls a function value, applies
  // a filter or test by name. They throw EvalError.
  Value call(const Value& callee, CallArgs& args);
  Value apply_filter(const std::string& name, const Value& operand, CallArgs& args);
  bool apply_test(const std::string& name, const Value& operand, CallArgs& args);

  const RenderLimits& limits() const { return limits_; }

 private:
  struct Frame {
    std::unordered_map<std::string, Value> vars;
    std::shared_ptr<Frame> parent;
  };
  using FramePtr = std::shared_ptr<Frame>;
  enum class Flow { kNormal, kBreak, kContinue };

  Flow exec_body(const Body& body, const FramePtr& frame, std::string& out);
  Flow exec(const Stmt& s, const FramePtr& frame, std::string& out);
  Flow exec_for(const ForStmt& s, const FramePtr& frame, std::string& out);
  void exec_macro(const MacroStmt& s, const FramePtr& frame);
  Value call_macro(const MacroStmt& m, const FramePtr& closure, CallArgs& args);
  std::string capture(const Body& body, const FramePtr& frame);
  void assign(const Expr& target, const Value& value, const FramePtr& frame);

  Value eval(const Expr& e, const FramePtr& frame);
  Value eval_node(const Expr& e, const FramePtr& frame);
  Value eval_compare(const CompareExpr& e, const FramePtr& frame);
  Value eval_item(const ItemExpr& e, const FramePtr& frame);
  CallArgs eval_args(const Arguments& a, const FramePtr& frame);
  Value eval_filter(const FilterExpr& e, const Value& operand, const FramePtr& frame);
  Value apply_block_filters(const FilterExpr& e, const Value& text, const FramePtr& frame);
  Value lookup(const std::string& name, const FramePtr& frame) const;

  void append_output(std::string& out, std::string_view text) const;
  void check_size(size_t bytes) const;
  void count_iteration();
  [[noreturn]] void fail_at_offset(uint32_t offset, const std::string& message) const;

  // One level of nesting (of statements and expressions, or of macro calls) while it lives;
  // throws EvalError past `limit`.
  class Nesting {
   public:
    Nesting(int& depth, int limit, const char* what);
    ~Nesting() { --depth_; }
    Nesting(const Nesting&) = delete;
    Nesting& operator=(const Nesting&) = delete;

   private:
    int& depth_;
  };

  const Body& program_;
  const std::string& source_;
  const std::string& origin_;
  RenderLimits limits_;
  FramePtr root_;
  uint64_t iterations_ = 0;
  int call_depth_ = 0;
  int depth_ = 0;
};

}  // namespace llm42::jinja
