#include "chat/builtin_templates.h"

#include <array>

namespace llm42 {

namespace {

// Each template reads message content that is either a string or a list of {type, text} parts
// (the OpenAI format); the parts' texts are joined with newlines.

// Llama-2-chat (Meta's reference chat_completion): every user turn is
// "<s>[INST] {user} [/INST]" and every assistant turn " {assistant} </s>", contents stripped;
// a system message goes into the first user turn between <<SYS>> tags. Roles must alternate
// user/assistant after the optional system message, and the model answers after [/INST], so
// add_generation_prompt changes nothing.
constexpr std::string_view kLlama2 = R"jinja({%- macro text(content) -%}
    {%- if content is string -%}
        {{- content -}}
    {%- elif content is not none -%}
        {{- content | selectattr('type', 'equalto', 'text') | map(attribute='text') | join('\n') -}}
    {%- endif -%}
{%- endmacro -%}
{%- if messages and messages[0]['role'] == 'system' -%}
    {%- set system_message = text(messages[0]['content']) -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set system_message = none -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if message['role'] not in ['user', 'assistant'] -%}
        {{- raise_exception("Llama-2 chat supports only the system, user and assistant roles, not '" ~ message['role'] ~ "'") -}}
    {%- endif -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/... after an optional system message') -}}
    {%- endif -%}
    {%- if message['role'] == 'user' -%}
        {%- set content = text(message['content']) -%}
        {%- if loop.first and system_message is not none -%}
            {%- set content = '<<SYS>>\n' ~ system_message ~ '\n<</SYS>>\n\n' ~ content -%}
        {%- endif -%}
        {{- bos_token ~ '[INST] ' ~ content | trim ~ ' [/INST]' -}}
    {%- else -%}
        {{- ' ' ~ text(message['content']) | trim ~ ' ' ~ eos_token -}}
    {%- endif -%}
{%- endfor -%}
)jinja";

// Mistral-7B-Instruct v0.1 / v0.2: "<s>[INST] {user} [/INST] {assistant}</s>[INST] {user}
// [/INST]", with a system message prepended to the first user turn, separated by a blank line.
// Roles must alternate user/assistant after the optional system message.
constexpr std::string_view kMistral = R"jinja({%- macro text(content) -%}
    {%- if content is string -%}
        {{- content -}}
    {%- elif content is not none -%}
        {{- content | selectattr('type', 'equalto', 'text') | map(attribute='text') | join('\n') -}}
    {%- endif -%}
{%- endmacro -%}
{%- if messages and messages[0]['role'] == 'system' -%}
    {%- set system_message = text(messages[0]['content']) -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set system_message = none -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{{- bos_token -}}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/... after an optional system message') -}}
    {%- endif -%}
    {%- if message['role'] == 'user' -%}
        {%- if loop.first and system_message is not none -%}
            {{- '[INST] ' ~ system_message ~ '\n\n' ~ text(message['content']) ~ ' [/INST]' -}}
        {%- else -%}
            {{- '[INST] ' ~ text(message['content']) ~ ' [/INST]' -}}
        {%- endif -%}
    {%- elif message['role'] == 'assistant' -%}
        {{- ' ' ~ text(message['content']) ~ eos_token -}}
    {%- else -%}
        {{- raise_exception("Mistral supports only the system, user and assistant roles, not '" ~ message['role'] ~ "'") -}}
    {%- endif -%}
{%- endfor -%}
)jinja";

// ChatML: "<|im_start|>{role}\n{content}<|im_end|>\n" per message, any role, and
// "<|im_start|>assistant\n" to prompt the answer.
constexpr std::string_view kChatml = R"jinja({%- macro text(content) -%}
    {%- if content is string -%}
        {{- content -}}
    {%- elif content is not none -%}
        {{- content | selectattr('type', 'equalto', 'text') | map(attribute='text') | join('\n') -}}
    {%- endif -%}
{%- endmacro -%}
{%- for message in messages -%}
    {{- '<|im_start|>' ~ message['role'] ~ '\n' ~ text(message['content']) ~ '<|im_end|>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|im_start|>assistant\n' -}}
{%- endif -%}
)jinja";

constexpr std::array<BuiltinTemplate, 3> kBuiltins = {{
    {"llama-2", "Llama-2-chat: [INST] turns, system prompt in <<SYS>> tags", kLlama2, "<s>",
     "</s>"},
    {"mistral", "Mistral-7B-Instruct v0.1/v0.2: [INST] turns, system prompt before the first",
     kMistral, "<s>", "</s>"},
    {"chatml", "ChatML: <|im_start|>role ... <|im_end|>", kChatml, nullptr, "<|im_end|>"},
}};

}  // namespace

std::span<const BuiltinTemplate> builtin_templates() { return kBuiltins; }

const BuiltinTemplate* find_builtin_template(std::string_view name) {
  for (const BuiltinTemplate& b : kBuiltins)
    if (b.name == name) return &b;
  return nullptr;
}

}  // namespace llm42
