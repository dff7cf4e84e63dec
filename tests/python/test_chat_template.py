"""llm42's chat-template interpreter (src/chat/) against Python jinja2 set up exactly as
transformers' `apply_chat_template` sets it up: the rendered prompt must be byte-identical, and
where jinja2 raises (a template's raise_exception, an undefined attribute, a syntax error) llm42
must answer an error too.

Templates: the real ones of ../shared/tokenizers (Llama 3, Qwen3; Llama 2's config has none),
llm42's built-in templates, templates written after widely published ones (Llama-2-chat,
Mistral-Instruct v0.1 / v0.3, Llama 3.1 / 3.2 with tools, Zephyr, Gemma, DeepSeek-R1, Phi-3) and
small probes of filters, tests and methods. Each is rendered over many conversations, with and
without add_generation_prompt.

Each batch goes through one `render_chat_template` process (tests/tools/, JSON lines in and
out). Needs LLM42_RENDER_CHAT (the tool) and LLM42_SHARED_DIR; exits 77 (skipped) without them.
"""

import datetime
import json
import os
import random
import subprocess
import sys
import unittest

RENDER = os.environ.get("LLM42_RENDER_CHAT", "")
SHARED = os.environ.get("LLM42_SHARED_DIR", "")
SHOW = 3  # mismatches printed in full
SEED = 42


def skip(why):
    print(f"skipped: {why}")
    sys.exit(77)


if not RENDER or not os.path.exists(RENDER):
    skip("LLM42_RENDER_CHAT does not name the render_chat_template tool")
if not SHARED or not os.path.isdir(os.path.join(SHARED, "tokenizers")):
    skip("LLM42_SHARED_DIR does not hold tokenizers/")
try:
    import jinja2
    import jinja2.ext
    import jinja2.nodes
    from jinja2.sandbox import ImmutableSandboxedEnvironment
except ImportError:
    skip("the Python package `jinja2` is not installed")

TOKENIZERS = os.path.join(SHARED, "tokenizers")


# ---- The reference: transformers' chat-template environment (utils/chat_template_utils.py) ----

class AssistantTracker(jinja2.ext.Extension):
    """transformers' {% generation %} tag; without return_assistant_tokens_mask it only renders
    its body."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_generation_support"), [], [],
                                      body).set_lineno(lineno)

    def _generation_support(self, caller):
        return caller()


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def strftime_now(format):
    return datetime.datetime.now().strftime(format)


def compile_template(source):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[AssistantTracker, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env.from_string(source)


SPECIAL_TOKEN_ATTRIBUTES = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token",
                            "cls_token", "mask_token"]


def token_text(t):
    return t.get("content") if isinstance(t, dict) else t


def special_tokens_map(config):
    """transformers' tokenizer.special_tokens_map: the set tokens, an empty list left out."""
    out = {}
    for key in SPECIAL_TOKEN_ATTRIBUTES:
        v = token_text(config.get(key))
        if v:
            out[key] = v
    extra = [token_text(t) for t in config.get("additional_special_tokens") or []]
    if extra:
        out["additional_special_tokens"] = extra
    return out


class Template:
    """A template as both sides load it: `spec` for the tool, a compiled jinja2 template (or the
    exception compiling it raised) and the special tokens for the reference."""

    def __init__(self, name, source, spec, tokens):
        self.name, self.spec, self.tokens = name, spec, tokens
        try:
            self.compiled, self.compile_error = compile_template(source), None
        except jinja2.exceptions.TemplateError as e:
            self.compiled, self.compile_error = None, e

    @staticmethod
    def from_config(folder):
        path = os.path.join(TOKENIZERS, folder, "tokenizer_config.json")
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
        return Template(folder, config["chat_template"], {"config": path},
                        special_tokens_map(config))

    @staticmethod
    def from_source(name, source, bos="<s>", eos="</s>"):
        tokens = {k: v for k, v in (("bos_token", bos), ("eos_token", eos)) if v is not None}
        return Template(name, source, {"source": source, "origin": name, "bos_token": bos,
                                       "eos_token": eos}, tokens)

    def render(self, messages, add_generation_prompt, extra):
        """(ok, text or error) as transformers' render_jinja_template gives it."""
        if self.compile_error is not None:
            return False, str(self.compile_error)
        extra = dict(extra)
        tools = extra.pop("tools", None)
        documents = extra.pop("documents", None)
        try:
            return True, self.compiled.render(messages=messages, tools=tools,
                                              documents=documents,
                                              add_generation_prompt=add_generation_prompt,
                                              **{**self.tokens, **extra})
        except Exception as e:  # noqa: BLE001 - any failure of jinja2 must be a failure of ours
            return False, f"{type(e).__name__}: {e}"


# llm42's built-in templates and the tokens ChatTemplate::builtin gives them by default.
BUILTIN_TOKENS = {"llama-2": ("<s>", "</s>"), "mistral": ("<s>", "</s>"),
                  "chatml": (None, "<|im_end|>")}


def builtin_template(name):
    p = subprocess.run([RENDER, "--builtin-source", name], capture_output=True, timeout=60)
    if p.returncode != 0:
        raise AssertionError(f"--builtin-source {name} failed: {p.stderr.decode()}")
    bos, eos = BUILTIN_TOKENS[name]
    t = Template.from_source("builtin:" + name, p.stdout.decode("utf-8"), bos, eos)
    t.spec = {"builtin": name}
    return t


def run_tool(requests):
    """One render_chat_template process over JSON lines; one parsed answer per request."""
    data = "".join(json.dumps(r) + "\n" for r in requests).encode("utf-8")
    p = subprocess.run([RENDER], input=data, capture_output=True, timeout=120)
    if p.returncode != 0:
        raise AssertionError(f"render_chat_template failed ({p.returncode}): "
                             f"{p.stderr.decode()[-2000:]}")
    # Not splitlines(): JSON output escapes newlines, but not U+2028 and the like.
    lines = p.stdout.decode("utf-8").split("\n")[:-1]
    if len(lines) != len(requests):
        raise AssertionError(f"{len(requests)} requests but {len(lines)} answers")
    return [json.loads(x) for x in lines]


# ---- Conversations ----

TEXTS = [
    "Hello!",
    "What is the capital of France?",
    "",
    "  padded with spaces and newlines \n\n",
    "\n\nleading newlines",
    "line one\nline two\n\nline four",
    "tabs\tand\tmore\ttabs",
    "Unicode: café, naïve, Straße, 日本語, 中文, Ελληνικά, עברית, русский",
    "Emoji 🦙🎉👍🏽 and a family 👨‍👩‍👧 and flags 🇫🇷",
    "combining: e\u0301 a\u0308, zero width\u200bspace, nbsp\u00a0here",
    "quotes ' and \" and backslash \\ and \\n literally",
    "looks like a tag: {{ messages }} {% if x %} {# c #}",
    "special-looking text <|im_start|>user <|eot_id|> [INST] </s>",
    "<think>\nhidden reasoning\n</think>\n\nthe answer",
    "<tool_response>\n{\"ok\": true}\n</tool_response>",
    "   ",
    "a" * 2000,
    "x\u2028y\u2029z\x85w",
    "control \x01\x1f\x7f chars",
]

ROLE_SHAPES = [
    ["user"],
    ["system", "user"],
    ["user", "assistant"],
    ["user", "assistant", "user"],
    ["system", "user", "assistant", "user"],
    ["system", "user", "assistant", "user", "assistant"],
    ["user", "assistant", "user", "assistant", "user", "assistant", "user"],
]

# Shapes some templates refuse (roles not alternating, unknown roles) or choke on.
BAD_SHAPES = [
    [],
    ["assistant"],
    ["user", "user"],
    ["system", "assistant", "user"],
    ["user", "assistant", "assistant"],
    ["system", "system", "user"],
    ["system"],
    ["user", "tool"],
    ["developer", "user"],
    ["user", "assistant", "system", "user"],
]


def case_mapped(content):
    """Whether llm42 changes the case of every letter of `content` as Python does."""
    if isinstance(content, list):
        return all(case_mapped(p.get("text")) for p in content)
    return all(ord(c) < 0x100 or c.upper() == c == c.lower() for c in content or "")


def conversation(roles, rng):
    return [{"role": r, "content": rng.choice(TEXTS)} for r in roles]


def as_parts(messages, rng):
    """Content as a list of {type: text, text} parts (the OpenAI format)."""
    out = []
    for m in messages:
        n = rng.randrange(1, 4)
        parts = [{"type": "text", "text": rng.choice(TEXTS[:14])} for _ in range(n)]
        out.append({"role": m["role"], "content": parts})
    return out


def conversations(seed, n_random=30):
    """(messages, extra) pairs: the fixed shapes with varied texts, the bad shapes, list
    contents, and random role sequences."""
    rng = random.Random(seed)
    cases = []
    for roles in ROLE_SHAPES:
        for _ in range(3):
            cases.append((conversation(roles, rng), {}))
        cases.append((as_parts(conversation(roles, rng), rng), {}))
    for roles in BAD_SHAPES:
        cases.append((conversation(roles, rng), {}))
    # Every text in every role, so each one meets each template's string handling.
    for i, text in enumerate(TEXTS):
        cases.append(([{"role": "system", "content": TEXTS[-1 - i]},
                       {"role": "user", "content": text},
                       {"role": "assistant", "content": text},
                       {"role": "user", "content": TEXTS[(i * 7) % len(TEXTS)]}], {}))
    for _ in range(n_random):
        roles = [rng.choice(["system", "user", "assistant", "user", "assistant", "tool"])
                 for _ in range(rng.randrange(1, 7))]
        cases.append((conversation(roles, rng), {}))
    # Extra variables and a message field templates may or may not read.
    cases.append((conversation(["user"], rng), {"bos_token": "<BOS>", "custom": [1, 2]}))
    cases.append(([{"role": "user", "content": "hi", "name": "alice"}], {}))
    cases.append(([{"role": "user", "content": None}], {}))
    cases.append(([{"role": "user"}], {}))
    return cases


TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city. Ünïcödé ☀️ \"quoted\"",
        "parameters": {"type": "object",
                       "properties": {"city": {"type": "string", "description": "City name"},
                                      "unit": {"type": "string", "enum": ["c", "f"]},
                                      "days": {"type": "integer", "minimum": 1, "maximum": 14},
                                      "ratio": {"type": "number", "default": 0.5}},
                       "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "search", "description": "", "parameters": {
            "type": "object", "properties": {"q": {"type": "string"}, "zeta": {"type": "boolean",
                                                                              "default": False},
                                             "alpha": {"type": "null"}}}}},
]

TOOL_ARGUMENTS = [
    {"city": "Paris"},
    {"city": "São Paulo", "unit": "c", "days": 3},
    {"q": "déjà vu 🦙", "nested": {"list": [1, 2.5, -3, True, False, None], "e": {}}},
    {"floats": [0.1, 1.0, -0.0, 1e100, 1.5e-7, 123456789.125, 3.0e20], "big": 2 ** 53 + 1},
    {},
    "{\"city\": \"Berlin\"}",
]


def tool_conversations(seed):
    """Conversations with tool definitions, assistant tool calls and tool results, in the
    shapes chat clients send them."""
    rng = random.Random(seed)
    cases = []
    for i, args in enumerate(TOOL_ARGUMENTS):
        call = {"id": f"call{i:05d}", "type": "function",
                "function": {"name": "get_weather", "arguments": args}}
        content = rng.choice(["", None, "Let me check."])
        for tools in (TOOLS, TOOLS[:1], None):
            extra = {} if tools is None else {"tools": tools}
            cases.append(([{"role": "user", "content": "Weather in Paris?"},
                           {"role": "assistant", "content": content, "tool_calls": [call]}],
                          extra))
            cases.append(([{"role": "system", "content": "You are helpful."},
                           {"role": "user", "content": "Weather in Paris?"},
                           {"role": "assistant", "content": content, "tool_calls": [call]},
                           {"role": "tool", "tool_call_id": call["id"],
                            "content": "{\"temp\": 21}"},
                           {"role": "assistant", "content": "It is 21 °C."},
                           {"role": "user", "content": "Thanks"}], extra))
    calls = [{"id": f"c{i:08d}", "type": "function",
              "function": {"name": n, "arguments": a}}
             for i, (n, a) in enumerate([("get_weather", {"city": "Rome"}),
                                         ("search", {"q": "news"}),
                                         ("get_weather", {"city": "Oslo", "unit": "f"})])]
    for tools in (TOOLS, None):
        extra = {} if tools is None else {"tools": tools}
        # Parallel calls and consecutive tool results, then a further step.
        cases.append(([{"role": "user", "content": "Several things"},
                       {"role": "assistant", "content": None, "tool_calls": calls},
                       {"role": "tool", "tool_call_id": calls[0]["id"], "content": "sunny"},
                       {"role": "tool", "tool_call_id": calls[1]["id"], "content": "nothing"},
                       {"role": "tool", "tool_call_id": calls[2]["id"], "content": "snow"},
                       {"role": "assistant", "content": "Done"}], extra))
        cases.append(([{"role": "system", "content": "sys"},
                       {"role": "user", "content": "go"},
                       {"role": "assistant", "content": "", "tool_calls": calls[:1]},
                       {"role": "tool", "content": "r1"},
                       {"role": "assistant", "content": "<think>more</think>step",
                        "tool_calls": calls[1:2]},
                       {"role": "tool", "content": "r2"}], extra))
        # A tool call without the "function" wrapper, as some clients send it.
        cases.append(([{"role": "user", "content": "x"},
                       {"role": "assistant", "content": "",
                        "tool_calls": [{"name": "search", "arguments": {"q": "y"}}]}], extra))
    cases.append(([{"role": "user", "content": "only tools"}], {"tools": TOOLS}))
    cases.append(([{"role": "system", "content": "sys"}, {"role": "user", "content": "q"}],
                  {"tools": TOOLS}))
    cases.append(([{"role": "user", "content": "empty tools"}], {"tools": []}))
    return cases


def thinking_conversations(seed):
    """Qwen3's reasoning: enable_thinking, reasoning_content, <think> in content, and tool
    responses given as user messages (its multi_step_tool logic)."""
    rng = random.Random(seed)
    cases = []
    base = [
        [{"role": "user", "content": "2+2?"}],
        [{"role": "user", "content": "2+2?"},
         {"role": "assistant", "content": "<think>\nadd them\n</think>\n\n4"},
         {"role": "user", "content": "and 3+3?"}],
        [{"role": "user", "content": "2+2?"},
         {"role": "assistant", "content": "4", "reasoning_content": "\nsimple\n"}],
        [{"role": "user", "content": "2+2?"},
         {"role": "assistant", "content": "4", "reasoning_content": None}],
        [{"role": "user", "content": "q"},
         {"role": "assistant", "content": "<think>a</think>b"},
         {"role": "user", "content": "<tool_response>\nr\n</tool_response>"},
         {"role": "assistant", "content": "<think>\nc\n</think>d"}],
        [{"role": "user", "content": "q"},
         {"role": "assistant", "content": "no think tags at all"},
         {"role": "assistant", "content": "<think></think>"}],
        [{"role": "system", "content": "sys"},
         {"role": "user", "content": "<tool_response>only</tool_response>"},
         {"role": "assistant", "content": "<think>x</think>\n\ny"}],
        [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b</think>c"},
         {"role": "user", "content": "d"}, {"role": "assistant", "content": "<think>e"}],
    ]
    for messages in base:
        for thinking in (None, True, False):
            extra = {} if thinking is None else {"enable_thinking": thinking}
            cases.append((messages, extra))
    for _ in range(10):
        msgs = conversation(rng.choice(ROLE_SHAPES), rng)
        cases.append((msgs, {"enable_thinking": rng.choice([True, False])}))
    cases.append(([{"role": "user", "content": "x"}], {"enable_thinking": 0}))
    cases.append(([{"role": "user", "content": "x"}], {"enable_thinking": None}))
    return cases


# ---- Templates written after widely used published ones (not byte copies) ----

LLAMA2_CHAT = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}"
    "{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}"
    "{% endif %}{% endfor %}")

MISTRAL_V01 = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}"
    "{% endif %}{% endfor %}")

MISTRAL_V03_TOOLS = """{%- if messages[0]["role"] == "system" %}
    {%- set system_message = messages[0]["content"] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}
{%- set user_messages = loop_messages | selectattr("role", "equalto", "user") | list %}

{#- This block checks for alternating user/assistant messages, skipping tool calling messages #}
{%- set ns = namespace() %}
{%- set ns.index = 0 %}
{%- for message in loop_messages %}
    {%- if not (message.role == "tool" or message.role == "tool_results" or (message.tool_calls is defined and message.tool_calls is not none)) %}
        {%- if (message["role"] == "user") != (ns.index % 2 == 0) %}
            {{- raise_exception("After the optional system message, conversation roles must alternate user/assistant/user/assistant/...") }}
        {%- endif %}
        {%- set ns.index = ns.index + 1 %}
    {%- endif %}
{%- endfor %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if message["role"] == "user" %}
        {%- if tools is not none and (message == user_messages[-1]) %}
            {{- "[AVAILABLE_TOOLS] [" }}
            {%- for tool in tools %}
                {%- set tool = tool.function %}
                {{- '{"type": "function", "function": {' }}
                {%- for key, val in tool.items() if key != "return" %}
                    {%- if val is string %}
                        {{- '"' + key + '": "' + val + '"' }}
                    {%- else %}
                        {{- '"' + key + '": ' + val|tojson }}
                    {%- endif %}
                    {%- if not loop.last %}
                        {{- ", " }}
                    {%- endif %}
                {%- endfor %}
                {{- "}}" }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- else %}
                    {{- "]" }}
                {%- endif %}
            {%- endfor %}
            {{- "[/AVAILABLE_TOOLS]" }}
            {%- endif %}
        {%- if loop.last and system_message is defined %}
            {{- "[INST] " + system_message + "\\n\\n" + message["content"] + "[/INST]" }}
        {%- else %}
            {{- "[INST] " + message["content"] + "[/INST]" }}
        {%- endif %}
    {%- elif message.tool_calls is defined and message.tool_calls is not none %}
        {{- "[TOOL_CALLS] [" }}
        {%- for tool_call in message.tool_calls %}
            {%- set out = tool_call.function|tojson %}
            {{- out[:-1] }}
            {%- if not tool_call.id is defined or tool_call.id|length != 9 %}
                {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
            {%- endif %}
            {{- ', "id": "' + tool_call.id + '"}' }}
            {%- if not loop.last %}
                {{- ", " }}
            {%- else %}
                {{- "]" + eos_token }}
            {%- endif %}
        {%- endfor %}
    {%- elif message["role"] == "assistant" %}
        {{- " " + message["content"]|trim + eos_token}}
    {%- elif message["role"] == "tool_results" or message["role"] == "tool" %}
        {%- if message.content is defined and message.content.content is defined %}
            {%- set content = message.content.content %}
        {%- else %}
            {%- set content = message.content %}
        {%- endif %}
        {{- '[TOOL_RESULTS] {"content": ' + content|string + ", " }}
        {%- if not message.tool_call_id is defined or message.tool_call_id|length != 9 %}
            {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
        {%- endif %}
        {{- '"call_id": "' + message.tool_call_id + '"}[/TOOL_RESULTS]' }}
    {%- else %}
        {{- raise_exception("Only user and assistant roles are supported, with the exception of an initial optional system message!") }}
    {%- endif %}
{%- endfor %}
"""

LLAMA31_TOOLS = """{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message + builtin tools #}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\\n" }}
{%- endif %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\\n\\n"}}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\\n\\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\\n\\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\\n\\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\\n\\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
            {{- "<|python_tag|>" + tool_call.name + ".call(" }}
            {%- for arg_name, arg_val in tool_call.arguments | items %}
                {{- arg_name + '="' + arg_val + '"' }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- endif %}
                {%- endfor %}
            {{- ")" }}
        {%- else  %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
            {{- '{"name": "' + tool_call.name + '", ' }}
            {{- '"parameters": ' }}
            {{- tool_call.arguments | tojson }}
            {{- "}" }}
        {%- endif %}
        {%- if builtin_tools is defined %}
            {#- This means we're in ipython mode #}
            {{- "<|eom_id|>" }}
        {%- else %}
            {{- "<|eot_id|>" }}
        {%- endif %}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\\n\\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""

ZEPHYR = """{% for message in messages %}
{% if message['role'] == 'user' %}
{{ '<|user|>\n' + message['content'] + eos_token }}
{% elif message['role'] == 'system' %}
{{ '<|system|>\n' + message['content'] + eos_token }}
{% elif message['role'] == 'assistant' %}
{{ '<|assistant|>\n'  + message['content'] + eos_token }}
{% endif %}
{% if loop.last and add_generation_prompt %}
{{ '<|assistant|>' }}
{% endif %}
{% endfor %}"""

GEMMA = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}"
    "{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}")

PHI3 = (
    "{% for message in messages %}{% if message['role'] == 'system' %}"
    "{{'<|system|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'assistant' %}"
    "{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}")

DEEPSEEK_R1 = (
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
    "{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='',"
    " is_first_sp=true) %}{%- for message in messages %}{%- if message['role'] == 'system' %}"
    "{%- if ns.is_first_sp %}{% set ns.system_prompt = ns.system_prompt + message['content'] %}"
    "{% set ns.is_first_sp = false %}{%- else %}"
    "{% set ns.system_prompt = ns.system_prompt + '\\n\\n' + message['content'] %}{%- endif %}"
    "{%- endif %}{%- endfor %}{{ bos_token }}{{ ns.system_prompt }}"
    "{%- for message in messages %}{%- if message['role'] == 'user' %}"
    "{%- set ns.is_tool = false -%}{{'<｜User｜>' + message['content']}}"
    "{%- endif %}{%- if message['role'] == 'assistant' and 'tool_calls' in message %}"
    "{%- set ns.is_tool = false -%}{%- for tool in message['tool_calls'] %}"
    "{%- if not ns.is_first %}{%- if message['content'] is none %}"
    "{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>'"
    " + tool['function']['name'] + '\\n' + '```json' + '\\n' + tool['function']['arguments']|tojson"
    " + '\\n' + '```' + '<｜tool▁call▁end｜>'}}{%- else %}"
    "{{'<｜Assistant｜>' + message['content'] + '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>'"
    " + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\\n' + '```json' + '\\n'"
    " + tool['function']['arguments']|tojson + '\\n' + '```' + '<｜tool▁call▁end｜>'}}"
    "{%- endif %}{%- set ns.is_first = true -%}{%- else %}"
    "{{'\\n' + '<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>'"
    " + tool['function']['name'] + '\\n' + '```json' + '\\n' + tool['function']['arguments']|tojson"
    " + '\\n' + '```' + '<｜tool▁call▁end｜>'}}{%- endif %}{%- endfor %}"
    "{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}"
    "{%- if message['role'] == 'assistant' and 'tool_calls' not in message %}"
    "{%- if ns.is_tool %}{{'<｜tool▁outputs▁end｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}"
    "{%- set ns.is_tool = false -%}{%- else %}{% set content = message['content'] %}"
    "{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}"
    "{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %}"
    "{%- if message['role'] == 'tool' %}{%- set ns.is_tool = true -%}"
    "{%- if ns.is_output_first %}{{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>'"
    " + message['content'] + '<｜tool▁output▁end｜>'}}{%- set ns.is_output_first = false %}"
    "{%- else %}{{'<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}"
    "{%- endif %}{%- endif %}{%- endfor -%}"
    "{% if ns.is_tool %}{{'<｜tool▁outputs▁end｜>'}}{% endif %}"
    "{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜><think>\\n'}}{% endif %}")

# Small templates that exercise one area each of the interpreter: filters, tests, methods,
# operators, scoping, macros, whitespace control. Rendered over the same conversations.
PROBES = {
    "filters": """{{ messages | length }}|{{ messages | count }}|{{ messages | map(attribute='role') | join(',') }}
{{ messages | selectattr('role', 'equalto', 'user') | list | length }}|{{ messages | rejectattr('role', 'eq', 'user') | map(attribute='role') | list }}
{{ messages | map(attribute='role') | unique | list }}|{{ messages | map(attribute='role') | sort | list }}|{{ messages | map(attribute='role') | sort(reverse=true) | first }}
{% for m in messages %}[{{ m.content | string | trim | upper }}|{{ m.content | string | lower | title }}|{{ m.content | string | capitalize }}|{{ m.content | string | replace('a', 'A') }}|{{ m.content | string | length }}]
{% endfor %}{{ (messages | last | default({})).role | default('none') }}|{{ messages | reverse | map(attribute='role') | join('/') }}
{{ messages | tojson }}
{{ messages | tojson(indent=2) }}
{{ messages | map(attribute='content') | map('string') | map('length') | sum }}|{{ [3, 1, 2] | max }}|{{ [3, 1, 2] | min }}|{{ [1.5, 2] | sum(start=10) }}
{{ 'x' | indent(4) }}|{{ 'a\\nb\\n\\nc' | indent(2, first=true) }}|{{ 'a\\nb\\n\\nc' | indent(2, blank=true) }}
{{ -3 | abs }}|{{ 2.675 | round(2) }}|{{ 2.5 | round }}|{{ 3.14159 | round(3, 'floor') }}|{{ '42' | int }}|{{ 'x' | int(7) }}|{{ '3.5' | float }}|{{ 7 | float }}|{{ messages | int }}|{{ ' 0x1A ' | int(0, 16) }}|{{ '1_000' | int }}|{{ 'nan' | float }}|{{ '-inf' | float }}|{{ true | int }}
{{ {'b': 1, 'a': 2} | dictsort }}|{{ {'b': 1, 'a': 2} | dictsort(by='value', reverse=true) }}|{{ {'k': 'v'} | items | list }}
{{ undefined_thing | default('dflt') }}|{{ '' | default('empty', true) }}|{{ none | string }}|{{ [1, 2] | list }}|{{ 'abc' | list }}|{{ 'abc' | first }}|{{ 'abc' | last }}
{{ '<a href="x">&</a>' | e }}|{{ '<b>' | safe }}|{{ '<i>' | escape | length }}
{{ messages | map(attribute='missing', default='?') | join }}|{{ [1, 2, 3, 4] | select('odd') | list }}|{{ [1, 2, 3, 4] | reject('even') | list }}|{{ [1, 0, none, 'a', ''] | select | list }}""",
    "tests": """{% for m in messages %}{{ m.content is string }}{{ m.content is none }}{{ m.content is defined }}{{ m.missing is undefined }}{{ m is mapping }}{{ m.content is iterable }}{{ m.content is sequence }}{{ m.content is lower }}{{ m.content is upper }}{{ m.content is number }},{% endfor %}
{{ 1 is integer }}{{ 1.0 is float }}{{ 1 is number }}{{ true is boolean }}{{ true is true }}{{ false is false }}{{ 3 is odd }}{{ 4 is even }}{{ 9 is divisibleby 3 }}{{ 1 is lt 2 }}{{ 2 is ge 2 }}{{ 'a' is in 'abc' }}{{ 1 is eq 1.0 }}{{ none is sameas none }}{{ range is callable }}{{ 'upper' is filter }}{{ 'odd' is test }}{{ 'nope' is filter }}{{ 1 is ne 2 }}{{ 2 is greaterthan 1 }}{{ 1 is lessthan 2 }}{{ 1 is le 1 }}{{ 2 is gt 1 }}""",
    "methods": """{% for m in messages %}{% set c = m.content if m.content is string else '' %}{{ c.strip() }}|{{ c.lstrip() }}|{{ c.rstrip('\\n') }}|{{ c.split() }}|{{ c.split('\\n') }}|{{ c.split(' ', 1) }}|{{ c.rsplit(' ', 1) }}|{{ c.startswith('<') }}|{{ c.endswith('>') }}|{{ c.upper() }}|{{ c.lower() }}|{{ c.title() }}|{{ c.capitalize() }}|{{ c.replace(' ', '_', 2) }}|{{ c.find('a') }}|{{ c.count('a') }}|{{ '-'.join(c.split()) }}|{{ c.removeprefix('<') }}|{{ c.removesuffix('>') }}|{{ c.splitlines() }}|{{ c.splitlines(true) }}|{{ c.isspace() }}|{{ c.isdigit() }}|{{ c.isalpha() }}|{{ c.isalnum() }}|{{ c.islower() }}|{{ c.isupper() }}
{% endfor %}{% set d = {'a': 1, 'b': [2, 3]} %}{{ d.get('a') }}{{ d.get('z') }}{{ d.get('z', 9) }}{{ d.items() | list }}{{ d.keys() | list }}{{ d.values() | list }}{{ d['b'][1] }}{{ d.b[-1] }}""",
    "operators": """{{ 1 + 2 * 3 - 4 / 2 }}|{{ 7 // 2 }}|{{ -7 // 2 }}|{{ 7 % 3 }}|{{ -7 % 3 }}|{{ 2 ** 10 }}|{{ 2 ** -1 }}|{{ 1 / 3 }}|{{ 0.1 + 0.2 }}|{{ 1e20 * 10 }}|{{ 10 / 2 }}|{{ 'ab' * 3 }}|{{ [1] + [2] }}|{{ 'a' ~ 1 ~ none ~ true }}|{{ 1 < 2 < 3 }}|{{ 1 == 1.0 }}|{{ 'a' in 'cat' }}|{{ 2 not in [1, 3] }}|{{ not 0 }}|{{ 0 or 'x' }}|{{ 1 and 'y' }}|{{ none or [] }}|{{ 'big' if messages | length > 2 else 'small' }}|{{ 'n' if false }}|{{ (1, 2) }}|{{ [1, 'a', none, true, 1.5, {'k': [none]}] }}|{{ {'q': "it's"} }}|{{ "a\\"b" }}|{{ 'tab\\t' ~ 'nl\\n' }}|{{ messages[::-1] | map(attribute='role') | list }}|{{ messages[1:] | length }}|{{ messages[-1].role if messages else '' }}|{{ 'hello'[1:3] }}|{{ 'hello'[::-1] }}|{{ 'hello'[-2:] }}|{{ [1,2,3,4,5][1:4:2] }}|{{ -(3) }}|{{ +4 }}|{{ 3.0 }}|{{ 1e3 }}|{{ 100000000000000000000.0 }}|{{ 1.0e-5 }}|{{ 12345678901234567 }}|{{ 2 ** 62 }}""",
    "scoping": """{% set outer = 'o' %}{% for m in messages %}{% set outer = m.role %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.revindex }}/{{ loop.revindex0 }}/{{ loop.first }}/{{ loop.last }}/{{ loop.length }}/{{ loop.previtem.role if loop.previtem is defined else '-' }}/{{ loop.nextitem.role if loop.nextitem is defined else '-' }}/{{ loop.cycle('a', 'b') }}:{{ outer }} {% endfor %}{{ outer }}
{% set ns = namespace(n=0, roles=[]) %}{% for m in messages if m.role != 'system' %}{% set ns.n = ns.n + 1 %}{% if m.role == 'assistant' %}{% continue %}{% endif %}{% set ns.roles = ns.roles + [m.role] %}{% if ns.n > 3 %}{% break %}{% endif %}{% endfor %}{{ ns.n }} {{ ns.roles }}
{% for i in range(3) %}{{ i }}{% else %}none{% endfor %}|{% for i in [] %}{{ i }}{% else %}empty{% endfor %}|{% for a, b in [[1, 2], [3, 4]] %}{{ a + b }}{% endfor %}|{% for k, v in {'x': 1, 'y': 2}.items() %}{{ k }}={{ v }};{% endfor %}|{{ range(2, 10, 3) | list }}|{{ range(5, 0, -2) | list }}
{% with a = 1, b = 2 %}{{ a + b }}{% endwith %}{{ a is defined }}|{% if true %}{% set in_if = 'visible' %}{% endif %}{{ in_if }}|{% set blk %}captured {{ messages | length }}{% endset %}{{ blk | upper }}|{% filter upper %}filtered {{ 'text' }}{% endfilter %}|{% set x, y = 1, 2 %}{{ x }}{{ y }}|{{ dict(a=1, b='2') }}|{{ dict([('p', 1)], q=2) }}""",
    "macros": """{%- macro render(m, prefix='> ', suffix=none) -%}
{{ prefix }}{{ m.role }}: {{ m.content if m.content is string else m.content | map(attribute='text') | join(' ') }}{{ suffix if suffix is not none else '' }}
{%- endmacro -%}
{%- macro count_args() -%}{{ varargs | length }}/{{ kwargs | length }}{%- endmacro -%}
{%- macro fact(n) -%}{{ 1 if n <= 1 else n * fact(n - 1) | int }}{%- endmacro -%}
{%- for m in messages -%}
{{ render(m) }}
{{ render(m, suffix='!') }}
{{ render(m, '# ') }}
{%- endfor %}
{{ count_args(1, 2, k=3) }}|{{ fact(10) }}|{{ render is callable }}""",
    "whitespace": """Line with trailing spaces   
  {% if true %}
    indented block
  {% endif %}
{%- for m in messages %}
  {{ m.role }}
  {%+ if true %}kept{% endif %}
	{% if true %}tabbed{% endif +%}
  {{- ' minus' -}}
  {# a comment #}
  {#- trimmed comment -#}
{% endfor %}
{% raw %}{{ not evaluated }} {% if %}{% endraw %}
end with newline
""",
    "repr": """{{ messages }}|{% for m in messages %}{{ m.content | string }}|{{ [m.content] }}|{{ (m.role, m.content) }}|{{ {m.role: m.content} }}{% endfor %}
{{ [0.1, 1e100, 1.5e-7, 123456789.125, 3.0e20, -0.0, 1e16, 1e-5, 2.5, 100.0, 1e15, 123456789012345678.0] }}|{{ 1e16 }}|{{ 1e-4 }}|{{ 0.30000000000000004 }}|{{ [true, none, false] }}|{{ tools is none }}|{{ documents is none }}|{{ add_generation_prompt }}""",
    "tojson": """{{ messages | tojson }}|{{ messages | tojson(indent=4) }}|{{ messages | tojson(ensure_ascii=true) }}|{{ messages | tojson(separators=(',', ':')) }}|{{ {'b': [1, 2.0, -0.5, 1e100, 1e-7, none, true], 'a': {'z': '\u00e9\n\t"'}} | tojson(sort_keys=true) }}|{{ {'b': 1, 'a': 2} | tojson(indent=2, sort_keys=true) }}|{{ [] | tojson(indent=2) }}|{{ {} | tojson(indent=2) }}|{{ "x</script>&'" | tojson }}|{{ (1, 2) | tojson }}|{{ 1234567890123456789 | tojson }}""",
    "generation": """{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}{% set inner = 1 %}{% endgeneration %}{% else %}{{ m.role }}{% endif %}|{% endfor %}{{ inner is defined }}""",
    "strftime": """{{ strftime_now('%Y') | length }}|{{ strftime_now('') }}|{{ bos_token is defined }}{{ eos_token }}""",
}

# Templates that jinja2 refuses to compile or that fail whatever the messages.
BROKEN = {
    "unclosed if": "{% if messages %}x",
    "no condition": "{% if %}x{% endif %}",
    "dangling operator": "{{ 1 + }}",
    "stray endfor": "{% endfor %}",
    "unknown filter": "{{ messages | no_such_filter }}",
    "unknown test": "{% if messages is no_such_test %}{% endif %}",
    "unknown tag": "{% frobnicate %}",
    "unterminated string": "{{ 'abc }}",
    "unclosed comment": "{# never closed",
    "unclosed expression": "{{ messages ",
    "raise always": "{{ raise_exception('always fails: ' ~ messages | length) }}",
    "undefined call": "{{ no_such_function() }}",
    "attribute of undefined": "{{ nothing.here }}",
    "mutating list": "{% set l = [1] %}{{ l.append(2) }}",
    "mutating dict": "{% set d = {} %}{{ d.update({'a': 1}) }}",
    "string plus int": "{{ 'a' + 1 }}",
    "division by zero": "{{ 1 / 0 }}",
    "huge range": "{{ range(1000000) | length }}",
    "bad dictsort": "{{ {'a': 1} | dictsort(by='x') }}",
    "bad round": "{{ 1.5 | round(method='up') }}",
    "unknown kwarg": "{{ 'a' | trim(foo=1) }}",
    "too many macro args": "{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1, 2) }}",
}


def render_cases(template, cases):
    """Requests for the tool and the reference answers, with and without the generation
    prompt."""
    requests, expected, labels = [], [], []
    for i, (messages, extra) in enumerate(cases):
        for agp in (False, True):
            requests.append({"template": template.spec, "messages": messages,
                             "add_generation_prompt": agp, "extra": extra})
            expected.append(template.render(messages, agp, extra))
            labels.append(f"{template.name} case {i} add_generation_prompt={agp}")
    return requests, expected, labels


class Comparison(unittest.TestCase):
    """Shared checking; each subclass renders one group of templates."""

    def compare(self, what, requests, expected, labels, error_must_contain=None):
        answers = run_tool(requests)
        bad, n_errors = [], 0
        for req, ans, (ok, ref), label in zip(requests, answers, expected, labels):
            if ok != ans["ok"]:
                bad.append((label, req, ans, ok, ref))
            elif ok and ans["text"] != ref:
                bad.append((label, req, ans, ok, ref))
            elif not ok:
                n_errors += 1
                # A raise_exception message must reach the caller.
                if error_must_contain and "TemplateError: " in ref:
                    msg = ref.split("TemplateError: ", 1)[1]
                    if msg not in ans["error"]:
                        bad.append((label, req, ans, ok, ref))
        print(f"{what}: {len(requests)} renderings compared ({n_errors} errors on both sides), "
              f"{len(bad)} mismatches")
        for label, req, ans, ok, ref in bad[:SHOW]:
            print(f"  {label}\n  messages {json.dumps(req['messages'])[:400]}\n"
                  f"  extra    {json.dumps(req['extra'])[:200]}\n"
                  f"  llm42    {ans!r:.1500}\n  jinja2   ok={ok} {ref!r:.1500}")
            if ok and ans.get("ok"):
                o, t = ans["text"], ref
                k = next((j for j in range(min(len(o), len(t))) if o[j] != t[j]),
                         min(len(o), len(t)))
                print(f"  first difference at {k}: llm42 {o[k:k + 60]!r} vs jinja2 "
                      f"{t[k:k + 60]!r}")
        self.assertEqual(len(bad), 0, f"{what}: {len(bad)} mismatches")
        return len(requests)

    def compare_templates(self, what, templates, cases):
        requests, expected, labels = [], [], []
        for t in templates:
            r, e, lab = render_cases(t, cases)
            requests += r
            expected += e
            labels += lab
        return self.compare(what, requests, expected, labels, error_must_contain=True)


class RealTemplates(Comparison):
    """The chat templates of the tokenizer configs in ../shared/tokenizers."""

    def test_llama3(self):
        t = Template.from_config("llama3")
        self.compare_templates("llama3 tokenizer_config", [t], conversations(SEED + 1, 40))

    def test_qwen3(self):
        t = Template.from_config("qwen3")
        cases = (conversations(SEED + 2, 40) + tool_conversations(SEED + 3) +
                 thinking_conversations(SEED + 4))
        self.compare_templates("qwen3 tokenizer_config", [t], cases)

    def test_llama2_has_no_template(self):
        path = os.path.join(TOKENIZERS, "llama2", "tokenizer_config.json")
        [ans] = run_tool([{"template": {"config": path},
                           "messages": [{"role": "user", "content": "hi"}]}])
        self.assertFalse(ans["ok"])
        self.assertIn("has no chat_template", ans["error"])
        self.assertIn("llama-2", ans["error"])  # names the built-in templates


class BuiltinTemplates(Comparison):
    """llm42's own templates, for configs without one, rendered by jinja2 from their source."""

    def test_builtins(self):
        templates = [builtin_template(n) for n in BUILTIN_TOKENS]
        self.compare_templates("built-in templates", templates, conversations(SEED + 5, 40))

    def test_unknown_builtin(self):
        [ans] = run_tool([{"template": {"builtin": "no-such"}, "messages": []}])
        self.assertFalse(ans["ok"])
        self.assertIn("chatml", ans["error"])

    def test_roles_must_alternate(self):
        # jinja2 and llm42 must both refuse, and llm42 must say why.
        for name in ("llama-2", "mistral"):
            t = builtin_template(name)
            for roles in (["user", "user"], ["assistant"], ["system", "assistant"]):
                msgs = [{"role": r, "content": "x"} for r in roles]
                ok, ref = t.render(msgs, False, {})
                self.assertFalse(ok, f"{name} {roles}: jinja2 accepted it")
                [ans] = run_tool([{"template": t.spec, "messages": msgs}])
                self.assertFalse(ans["ok"], f"{name} {roles}: llm42 accepted it")
                self.assertIn("Conversation roles must alternate", ans["error"])


class PublishedTemplates(Comparison):
    """Templates written after widely used model families' templates."""

    def test_without_tools(self):
        templates = [
            Template.from_source("llama2-chat", LLAMA2_CHAT),
            Template.from_source("mistral-v0.1", MISTRAL_V01),
            Template.from_source("zephyr", ZEPHYR, eos="</s>"),
            Template.from_source("gemma", GEMMA, "<bos>", "<eos>"),
            Template.from_source("phi-3", PHI3, "<s>", "<|endoftext|>"),
        ]
        self.compare_templates("published templates", templates, conversations(SEED + 6, 30))

    def test_with_tools(self):
        templates = [
            Template.from_source("mistral-v0.3", MISTRAL_V03_TOOLS),
            Template.from_source("llama-3.1", LLAMA31_TOOLS, "<|begin_of_text|>", "<|eot_id|>"),
            Template.from_source("deepseek-r1", DEEPSEEK_R1, "<｜begin▁of▁sentence｜>",
                                 "<｜end▁of▁sentence｜>"),
        ]
        cases = conversations(SEED + 7, 20) + tool_conversations(SEED + 8)
        cases.append(([{"role": "user", "content": "x"}],
                      {"tools": TOOLS, "tools_in_user_message": False}))
        cases.append(([{"role": "system", "content": "s"}, {"role": "user", "content": "x"}],
                      {"builtin_tools": ["brave_search", "code_interpreter", "wolfram"],
                       "date_string": "01 Jan 2025"}))
        self.compare_templates("published templates with tools", templates, cases)


class Probes(Comparison):
    """Small templates, one area of the interpreter each."""

    def test_probes(self):
        templates = [Template.from_source(f"probe:{k}", v) for k, v in PROBES.items()]
        rng = random.Random(SEED + 9)
        cases = [(conversation(roles, rng), {}) for roles in ROLE_SHAPES + BAD_SHAPES[:3]]
        cases += [(as_parts(conversation(["system", "user"], rng), rng), {})]
        cases += [([{"role": "user", "content": t}], {}) for t in TEXTS]
        # llm42 maps case (upper, lower, title, capitalize) in ASCII and Latin-1 only
        # (docs/chat-templates.md); the probes change the case of message text.
        cases = [c for c in cases if all(case_mapped(m.get("content")) for m in c[0])]
        self.compare_templates("probe templates", templates, cases)

    def test_broken(self):
        templates = [Template.from_source(f"broken:{k}", v) for k, v in BROKEN.items()]
        cases = [([{"role": "user", "content": "hi"}], {})]
        for t in templates:
            self.assertFalse(t.render(cases[0][0], False, {})[0], f"{t.name}: jinja2 accepts it")
        self.compare_templates("broken templates", templates, cases)


if __name__ == "__main__":
    unittest.main(verbosity=2)
