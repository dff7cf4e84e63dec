// Renders chat templates for tests/python/test_chat_template.py, which compares the results with
// Python's jinja2 set up as transformers sets it up.
//
//   render_chat_template --builtin-source NAME   prints a built-in template's source
//   render_chat_template < requests.jsonl        renders one request per line
//
// A request: {"template": {"config": PATH} | {"builtin": NAME} |
//                         {"source": TEXT, "bos_token": S, "eos_token": S},
//             "messages": [...], "add_generation_prompt": BOOL, "extra": {...}}
// The answer, one line per request: {"ok": true, "text": ...} or {"ok": false, "error": ...}.
// Objects are read keeping their key order, as Python's json.loads does.
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "chat/builtin_templates.h"
#include "chat/chat_template.h"
#include "util/error.h"

namespace {

using ojson = nlohmann::ordered_json;

std::optional<std::string> optional_string(const ojson& o, const char* key) {
  if (!o.contains(key) || o[key].is_null()) return std::nullopt;
  return o[key].get<std::string>();
}

llm42::ChatTemplate load(const ojson& spec) {
  if (spec.contains("config")) return llm42::ChatTemplate::from_tokenizer_config(spec["config"]);
  if (spec.contains("builtin")) return llm42::ChatTemplate::builtin(spec["builtin"]);
  return llm42::ChatTemplate::parse(spec.at("source").get<std::string>(),
                                    spec.value("origin", std::string("test")),
                                    optional_string(spec, "bos_token"),
                                    optional_string(spec, "eos_token"));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--builtin-source") {
    const llm42::BuiltinTemplate* b = llm42::find_builtin_template(argv[2]);
    if (b == nullptr) {
      std::cerr << "no built-in template named " << argv[2] << "\n";
      return 1;
    }
    std::cout << b->source;
    return 0;
  }
  if (argc != 1) {
    std::cerr << "usage: render_chat_template [--builtin-source NAME] < requests.jsonl\n";
    return 2;
  }
  // Templates parsed once per distinct spec; a spec that fails to parse is answered each time.
  std::map<std::string, std::shared_ptr<llm42::ChatTemplate>> cache;
  std::map<std::string, std::string> parse_errors;
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.empty()) continue;
    ojson answer;
    try {
      const ojson request = ojson::parse(line);
      const std::string key = request.at("template").dump();
      if (!cache.count(key) && !parse_errors.count(key)) {
        try {
          cache[key] = std::make_shared<llm42::ChatTemplate>(load(request.at("template")));
        } catch (const llm42::Error& e) {
          parse_errors[key] = e.what();
        }
      }
      if (parse_errors.count(key)) throw llm42::Error(parse_errors[key]);
      const ojson extra = request.value("extra", ojson::object());
      answer["ok"] = true;
      answer["text"] = cache[key]->render(request.at("messages"),
                                          request.value("add_generation_prompt", false), extra);
    } catch (const llm42::Error& e) {
      answer = ojson{{"ok", false}, {"error", e.what()}};
    } catch (const nlohmann::json::exception& e) {
      answer = ojson{{"ok", false}, {"error", std::string("bad request: ") + e.what()}};
    }
    std::cout << answer.dump(-1, ' ', false, ojson::error_handler_t::replace) << "\n";
  }
  return 0;
}
