// Chat templates from a hostile model folder: chains and nestings of 100,000 terms must be
// refused with an error naming the template and the limit, when the template is loaded or when
// it renders, never by overflowing the stack.
#include <gtest/gtest.h>

#include <string>

#include "chat/chat_template.h"
#include "util/error.h"

namespace llm42 {
namespace {

constexpr int kTerms = 100'000;

std::string repeat(const std::string& s, int n) {
  std::string out;
  out.reserve(s.size() * n);
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

// The message of the error that loading `source` raises ("" when it loads).
std::string load_error(const std::string& source) {
  try {
    ChatTemplate::parse(source, "hostile.jinja", "<s>", "</s>");
    return "";
  } catch (const Error& e) {
    return e.what();
  }
}

void expect_refused_at_load(const std::string& source) {
  const std::string error = load_error(source);
  EXPECT_NE(error.find("hostile.jinja"), std::string::npos) << source.substr(0, 40);
  EXPECT_NE(error.find("more than 200 levels deep"), std::string::npos)
      << source.substr(0, 40) << ": " << error;
}

std::string render_error(const std::string& source, const nlohmann::json& extra = {}) {
  try {
    const ChatTemplate t = ChatTemplate::parse(source, "hostile.jinja", "<s>", "</s>");
    t.render(nlohmann::json::array(), true, extra.is_null() ? nlohmann::json::object() : extra);
    return "";
  } catch (const Error& e) {
    return e.what();
  }
}

TEST(ChatTemplateDepth, LeftDeepChainsAreRefusedAtLoad) {
  const std::string chains[] = {
      "{{ 1" + repeat(" + 1", kTerms) + " }}",
      "{{ 1" + repeat(" * 1", kTerms) + " }}",
      "{{ 2" + repeat(" ** 1", kTerms) + " }}",
      "{{ x" + repeat(" and x", kTerms) + " }}",
      "{{ x" + repeat(" or x", kTerms) + " }}",
      "{{ 'a'" + repeat(" | lower", kTerms) + " }}",
      "{{ a" + repeat(".a", kTerms) + " }}",
      "{{ x" + repeat("[0]", kTerms) + " }}",
      "{{ x" + repeat("[0:1]", kTerms) + " }}",
      "{{ f" + repeat("()", kTerms) + " }}",
      "{{ 1" + repeat(" if x", kTerms) + " }}",
      "{% filter lower" + repeat(" | lower", kTerms) + " %}x{% endfilter %}",
      "{% set x | lower" + repeat(" | lower", kTerms) + " %}x{% endset %}",
  };
  for (const std::string& source : chains) expect_refused_at_load(source);
}

TEST(ChatTemplateDepth, NestingsAreRefusedAtLoad) {
  const std::string nestings[] = {
      "{{ " + repeat("(", kTerms) + "1" + repeat(")", kTerms) + " }}",
      "{{ " + repeat("[", kTerms) + repeat("]", kTerms) + " }}",
      "{{ " + repeat("{'a': ", kTerms) + "1" + repeat("}", kTerms) + " }}",
      "{{ " + repeat("f(", kTerms) + "1" + repeat(")", kTerms) + " }}",
      "{{ " + repeat("not ", kTerms) + "x }}",
      "{{ " + repeat("-", kTerms) + "1 }}",
      "{{ 1" + repeat(" if x else 1", kTerms) + " }}",
      repeat("{% if x %}", kTerms) + repeat("{% endif %}", kTerms),
      repeat("{% for x in y %}", kTerms) + repeat("{% endfor %}", kTerms),
      // Each part is within the bound; together they are not.
      "{{ ((x" + repeat(".a", 150) + ")" + repeat(".a", 150) + ") }}",
  };
  for (const std::string& source : nestings) expect_refused_at_load(source);
}

TEST(ChatTemplateDepth, ChainsWithinTheBoundRender) {
  EXPECT_EQ(load_error("{{ 1" + repeat(" + 1", 150) + " }}"), "");
  const ChatTemplate t = ChatTemplate::parse("{{ 1" + repeat(" + 1", 150) + " }}", "ok", {}, {});
  EXPECT_EQ(t.render(nlohmann::json::array(), false), "151");
}

TEST(ChatTemplateDepth, ValuesNestedAtRenderAreRefused) {
  // One level of nesting per loop iteration, within the iteration limit.
  const std::string error =
      render_error("{% set ns = namespace(x=[]) %}{% for i in range(" + std::to_string(kTerms) +
                   ") %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x }}");
  EXPECT_NE(error.find("hostile.jinja"), std::string::npos) << error;
  EXPECT_NE(error.find("more than 256 levels deep"), std::string::npos) << error;
  const std::string dicts =
      render_error("{% set ns = namespace(x={}) %}{% for i in range(" + std::to_string(kTerms) +
                   ") %}{% set ns.x = {'a': ns.x} %}{% endfor %}{{ ns.x }}");
  EXPECT_NE(dicts.find("more than 256 levels deep"), std::string::npos) << dicts;

  nlohmann::json deep = 1;
  for (int i = 0; i < kTerms; ++i) deep = nlohmann::json::array({std::move(deep)});
  const std::string json_error = render_error("{{ v }}", {{"v", std::move(deep)}});
  EXPECT_NE(json_error.find("more than 256 levels deep"), std::string::npos) << json_error;
}

TEST(ChatTemplateDepth, NamespacesCannotContainThemselves) {
  for (const char* value : {"ns", "[ns]", "{'a': [1, ns]}", "namespace(y=ns)"}) {
    const std::string error =
        render_error(std::string("{% set ns = namespace(x=1) %}{% set ns.x = ") + value +
                     " %}{{ ns }}{{ ns == ns }}");
    EXPECT_NE(error.find("cannot hold a namespace"), std::string::npos) << value << ": " << error;
  }
  // Namespaces in lists and dicts, and values from them, are fine.
  EXPECT_EQ(render_error("{% set ns = namespace(x=1) %}{% set l = [ns, {'n': ns}] %}"
                         "{% set ns.x = l | length %}{{ ns.x }}"),
            "");
}

TEST(ChatTemplateDepth, MacroCallsStackingDeepExpressionsAreRefused) {
  // 64 nested macro calls (the call limit) each 150 levels deep: 9,600 levels at run time.
  const std::string source = "{% macro m(n) %}{{ (m(n - 1) if n > 0 else 'x')" +
                             repeat(" | lower", 150) + " }}{% endmacro %}{{ m(63) }}";
  const std::string error = render_error(source);
  EXPECT_NE(error.find("hostile.jinja"), std::string::npos) << error;
  EXPECT_NE(error.find("statements and expressions nested more than 1000 deep"), std::string::npos)
      << error;
}

}  // namespace
}  // namespace llm42
