#!/usr/bin/env python3
"""Renders the chat-template test cases with Python's jinja2, configured as transformers does
(ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols, json.dumps-based tojson,
raise_exception, strftime_now), and writes tests/chat/goldens.jsonl for chat_golden_test.cpp.

Usage: make_goldens.py            rewrite goldens.jsonl
       make_goldens.py --check    exit 1 when goldens.jsonl differs from a fresh rendering

Each line: {"name", "template" (file under templates/) or "source", "options", "context",
"rendered"} or, when jinja2 raises, "error" instead of "rendered".
"""
import json
import os
import sys
from datetime import datetime

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))


def make_env(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False):
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=trim_blocks, lstrip_blocks=lstrip_blocks,
                                        keep_trailing_newline=keep_trailing_newline,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


# ---------------------------------------------------------------- conversations
SYS = {"role": "system", "content": "You are a terse assistant."}
U1 = {"role": "user", "content": "Hello!"}
A1 = {"role": "assistant", "content": "Hi there. How can I help?"}
U2 = {"role": "user", "content": "  What is 2+2?\n"}
UNI = {"role": "user", "content": "Ünïcödé — 日本語 ✓ \"quotes\" and 'single' <tags> & \\ backslash\n\ttab"}
TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather for a city",
        "parameters": {"type": "object",
                       "properties": {"city": {"type": "string", "description": "City name, e.g. Zürich"},
                                      "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                       "required": ["city"]},
    },
}]
TOOL_CALL = {"role": "assistant", "content": "",
             "tool_calls": [{"type": "function",
                             "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}]}
TOOL_RESULT = {"role": "tool", "content": "{\"temperature\": 21.5, \"sky\": \"clear\"}"}
IMG_TEXT = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is in this image?"}]}
TEXT_IMG = {"role": "user", "content": [{"type": "text", "text": "Compare"}, {"type": "image"}, {"type": "image"}]}
A_STRUCT = {"role": "assistant", "content": [{"type": "text", "text": "A cat on a sofa."}]}

SPECIAL = {"bos_token": "<s>", "eos_token": "</s>"}

CORPUS = [
    ("chatml", [
        {"messages": [U1], "add_generation_prompt": True},
        {"messages": [SYS, U1, A1, U2], "add_generation_prompt": False},
        {"messages": [UNI], "add_generation_prompt": True},
    ]),
    ("llama3_1", [
        {"messages": [SYS, U1, A1, U2], "add_generation_prompt": True, "date_string": "05 Mar 2025", **SPECIAL},
        {"messages": [U1], "add_generation_prompt": False, **SPECIAL},
        {"messages": [SYS, U1, TOOL_CALL, TOOL_RESULT], "tools": TOOLS, "add_generation_prompt": True,
         "date_string": "01 Jan 2025", **SPECIAL},
        {"messages": [U1], "tools": TOOLS, "tools_in_user_message": False, "add_generation_prompt": True, **SPECIAL},
        {"messages": [U1, TOOL_CALL], "builtin_tools": ["brave_search", "wolfram_alpha", "code_interpreter"],
         "add_generation_prompt": False, "date_string": "02 Feb 2025", **SPECIAL},
        {"messages": [SYS], "tools": TOOLS, **SPECIAL},
    ]),
    ("llama3_2", [
        {"messages": [SYS, U1, A1, U2], "add_generation_prompt": True, "date_string": "05 Mar 2025", **SPECIAL},
        {"messages": [U1, TOOL_CALL, TOOL_RESULT], "tools": TOOLS, "add_generation_prompt": True,
         "date_string": "01 Jan 2025", **SPECIAL},
        {"messages": [UNI], "tools": TOOLS, "tools_in_user_message": False, "date_string": "01 Jan 2025", **SPECIAL},
        {"messages": [U1, {"role": "tool", "content": {"result": [1, 2.5, None, True]}}], "date_string": "x",
         **SPECIAL},
    ]),
    ("gemma2", [
        {"messages": [U1, A1, U2], "add_generation_prompt": True, **SPECIAL},
        {"messages": [UNI], "add_generation_prompt": False, **SPECIAL},
        {"messages": [SYS, U1], **SPECIAL},
        {"messages": [U1, U2], **SPECIAL},
    ]),
    ("gemma3", [
        {"messages": [SYS, U1, A1, U2], "add_generation_prompt": True, **SPECIAL},
        {"messages": [{"role": "system", "content": [{"type": "text", "text": "Be brief."}]}, IMG_TEXT, A_STRUCT,
                      TEXT_IMG], "add_generation_prompt": True, **SPECIAL},
        {"messages": [A1], **SPECIAL},
    ]),
    ("mistral", [
        {"messages": [U1, A1, U2], **SPECIAL},
        {"messages": [UNI], **SPECIAL},
        {"messages": [SYS, U1], **SPECIAL},
    ]),
    ("phi3", [
        {"messages": [SYS, U1, A1, U2], "add_generation_prompt": True, **SPECIAL},
        {"messages": [U1, A1], "add_generation_prompt": False, **SPECIAL},
    ]),
    ("idefics3", [
        {"messages": [IMG_TEXT], "add_generation_prompt": True},
        {"messages": [TEXT_IMG, A_STRUCT, {"role": "user", "content": [{"type": "text", "text": "Thanks"}]}],
         "add_generation_prompt": False},
    ]),
    ("qwen2_5_vl", [
        {"messages": [IMG_TEXT, A_STRUCT, TEXT_IMG], "add_generation_prompt": True, "add_vision_id": True},
        {"messages": [SYS, U1, {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Go"}]}],
         "add_generation_prompt": True},
    ]),
    ("qwen2_5_tools", [
        {"messages": [U1, A1], "add_generation_prompt": True},
        {"messages": [SYS, U1, TOOL_CALL, TOOL_RESULT, TOOL_RESULT], "tools": TOOLS, "add_generation_prompt": True},
        {"messages": [U1, {"role": "assistant", "content": "Let me check.", "tool_calls": [
            {"name": "get_weather", "arguments": {"city": "Oslo"}}]}], "tools": TOOLS},
    ]),
]

# ---------------------------------------------------------------- feature cases
# (name, source, context, options); options default to the HF settings.
NO_TRIM = {"trim_blocks": False, "lstrip_blocks": False}
FEATURES = [
    ("arith", "{{ 1 + 2 }} {{ 7 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 1.5 * 2 }} {{ 10 / 5 }}"
     " {{ 0.1 + 0.2 }} {{ 1e20 }} {{ 1.5e-7 }} {{ 3 - 5 }} {{ 7.5 % 2 }} {{ 2 ** -1 }} {{ 1_000 }}", {}, {}),
    ("precedence", "{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 2 ** 3 ** 2 }} {{ -2 ** 2 }} {{ 'a' ~ 2 * 3 }} {{ (1 ~ 2) | int + 3 }} {{ not 1 == 2 }}"
     " {{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }}", {}, {}),
    ("strings", "{{ 'ab' + 'cd' }} {{ 'ab' * 3 }} {{ 3 * 'x' }} {{ 'a' ~ 1 ~ none ~ true }} {{ \"q'uote\" }}"
     " {{ 'esc\\n\\t\\u00e9\\x41' }} {{ 'adj' 'acent' }} {{ 'hello'[1] }} {{ 'hello'[-1] }} {{ 'hello'[1:3] }}"
     " {{ 'hello'[::-1] }} {{ 'héllo'[1:] }} {{ 'abcdef'[::2] }}", {}, {}),
    ("python_repr", "{{ [1, 'a', none, true, 2.0, [\"x'y\"], {'k': 'v'}] }} {{ {'a': 1, 'b': [1, 2]} }} {{ none }}"
     " {{ true }} {{ false }} {{ 1.0 }} {{ [] }} {{ {} }} {{ ['a\\nb', 'é', '\\x00'] | string }} {{ (1, 2) | list }}",
     {}, {}),
    ("comparisons", "{{ 1 == 1.0 }} {{ 'a' != 'b' }} {{ [1, 2] == [1, 2] }} {{ {'a': 1} == {'a': 1} }} {{ 'abc' < 'abd' }}"
     " {{ 2 >= 2 }} {{ 'b' in 'abc' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 3 not in [1] }} {{ true == 1 }}"
     " {{ none == none }} {{ x == none }} {{ [1, 2] < [1, 3] }}", {}, {}),
    ("logic", "{{ 0 or 'x' }} {{ 1 and 'y' }} {{ '' or [] }} {{ none and 1 }} {{ not '' }} {{ 'a' if 0 else 'b' }}"
     " [{{ 'a' if 0 }}] {{ 1 if true else 2 if false else 3 }} {{ (x or 'dflt') }}", {}, {}),
    ("literals", "{{ [1, [2, 3], {'a': (4, 5)}] | tojson }} {{ {'z': 1, 'a': 2, 'm': 3} | tojson }} {{ (1,) | length }}"
     " {{ () | length }} {{ [1, 2,] | length }}", {}, {}),
    ("attr_item", "{{ d.a }} {{ d['a'] }} {{ d.b.c }} {{ d['b']['c'] }} {{ l.0 }} {{ l[1] }} {{ l[-1] }} [{{ l[10] }}]"
     " [{{ d.missing }}] {{ d.get('a') }} {{ d.get('zz', 'dflt') }} {{ d.get('zz') }} {{ d.items() | list }}"
     " {{ d.keys() | list }} {{ d['b'].values() | list }}", {"d": {"a": 1, "b": {"c": "x"}}, "l": [10, 20, 30]}, {}),
    ("undefined", "[{{ nope }}] [{{ nope | default('d') }}] [{{ nope is defined }}] [{{ nope is undefined }}]"
     " [{% for x in nope %}{{ x }}{% else %}empty{% endfor %}] [{{ nope | length }}] [{{ none | default('n') }}]"
     " [{{ '' | default('e', true) }}] [{{ 0 | d('z', boolean=true) }}] [{{ nope ~ 'x' }}] [{{ 'a' in nope }}]"
     " [{{ not nope }}] [{{ nope | string }}] [{{ d.x is defined }}]", {"d": {}}, {}),
    ("if_elif", "{% for i in range(5) %}{% if i == 0 %}zero{% elif i is odd %}odd{% elif i == 2 %}two"
     "{% else %}other{% endif %},{% endfor %}", {}, {}),
    ("for_loop_vars", "{% for x in ['a', 'b', 'c'] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}"
     "{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}[{{ loop.previtem }}|{{ loop.nextitem }}]"
     "{{ loop.cycle('odd', 'even') }};{% endfor %}", {}, {}),
    ("for_filter_else", "{% for x in range(10) if x is even %}{{ x }}:{{ loop.index }}/{{ loop.length }} {% endfor %}"
     "{% for x in [] %}no{% else %}else-branch{% endfor %}{% for x in [1, 2] if x > 5 %}no{% else %} filtered-empty"
     "{% endfor %}", {}, {}),
    ("for_unpack", "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for a, b in [[1, 2], [3, 4]] %}{{ a + b }}"
     "{% endfor %}{% for k in d %}{{ k }}{% endfor %}{% for c in 'héj' %}[{{ c }}]{% endfor %}"
     "{% for (a, b) in [(1, 2)] %}{{ a }}{{ b }}{% endfor %}", {"d": {"z": 1, "a": 2}}, {}),
    ("loop_controls", "{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}"
     "{% endif %}{{ i }}{% endfor %}", {}, {}),
    ("nested_loops", "{% for i in range(3) %}{% for j in range(i) %}{{ i }}{{ j }}-{{ loop.index }} {% endfor %}"
     "|{{ loop.index }}{% endfor %}", {}, {}),
    ("set_scoping", "{% set x = 1 %}{% for i in range(3) %}{% set x = x + i %}{{ x }}{% endfor %}|{{ x }}"
     "{% if true %}{% set y = 5 %}{% endif %}{{ y }}{% set a, b = 1, 2 %}{{ a }}{{ b }}", {}, {}),
    ("namespace", "{% set ns = namespace(count=0, items=[]) %}{% for i in range(4) %}{% set ns.count = ns.count + i %}"
     "{% set ns.items = ns.items + [i] %}{% endfor %}{{ ns.count }} {{ ns.items }} {{ ns.missing is defined }}",
     {}, {}),
    ("set_block", "{% set body %}Hello {{ name }}!{% endset %}[{{ body }}]{% set up | upper %}shout {{ name }}"
     "{% endset %}[{{ up }}]", {"name": "Ann"}, {}),
    ("macros", "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('A') }} "
     "{{ greet('B', '?') }} {{ greet(punct='.', name='C') }} {{ greet() }}|"
     "{% macro rec(n) %}{% if n > 0 %}{{ n }}{{ rec(n - 1) }}{% endif %}{% endmacro %}{{ rec(4) }}|"
     "{% macro extra() %}{{ varargs }}{{ kwargs }}{% endmacro %}{{ extra(1, 2, k=3) }}", {}, {}),
    ("call_block", "{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}"
     "{% call wrap('b') %}bold {{ x }}{% endcall %}{% macro each(items) %}{% for i in items %}{{ caller(i) }}"
     "{% endfor %}{% endmacro %}{% call(item) each([1, 2]) %}<{{ item }}>{% endcall %}", {"x": 1}, {}),
    ("filter_block", "{% filter upper %}abc {{ x }}{% endfilter %}{% filter replace('a', 'o') | title %}banana split"
     "{% endfilter %}", {"x": "def"}, {}),
    ("with_block", "{% with a = 1, b = 'x' %}{{ a }}{{ b }}{% endwith %}[{{ a }}]", {}, {}),
    ("raw_comment", "{# a comment #}A{% raw %}{{ not rendered }} {% if %}{% endraw %}B{#- c -#}  C", {}, {}),
    ("string_filters", "{{ '  pad  ' | trim }}|{{ 'xxhixx' | trim('x') }}|{{ 'hello world' | title }}|"
     "{{ 'hELLO wORLD' | capitalize }}|{{ 'Abc' | upper }}{{ 'Abc' | lower }}|{{ 'a-b-c' | replace('-', '+') }}|"
     "{{ 'aaa' | replace('a', 'b', 2) }}|{{ 'x' | center(7) }}|{{ 'ab' | center(7) }}|{{ 'one two  three' | wordcount }}|"
     "{{ '<a href=\"x\">&\\'</a>' | e }}|{{ 'x' | safe }}|{{ 'hello' | reverse }}|{{ 'ÉCOLE' | lower }}|"
     "{{ 'foo bar baz qux' | truncate(9) }}|{{ 'foo bar baz qux' | truncate(11) }}|"
     "{{ 'foo bar baz qux' | truncate(9, true) }}|{{ 'hi-there (you)' | title }}|{{ '%s=%d' | format('a', 3) }}|"
     "{{ 'x%sy' % 'Z' }}", {}, {}),
    ("list_filters", "{{ [3, 1, 2] | sort }} {{ [3, 1, 2] | sort(reverse=true) }} {{ ['b', 'A', 'c'] | sort }}"
     " {{ ['b', 'A', 'c'] | sort(case_sensitive=true) }} {{ [1, 2, 3] | first }} {{ [1, 2, 3] | last }}"
     " {{ [1, 2, 3] | length }} {{ [1, 2] | count }} {{ [1, 2, 3] | sum }} {{ [1, 2, 3] | min }} {{ [1, 2, 3] | max }}"
     " {{ [1, 2, 3] | reverse | list }} {{ [1, 2, 1, 3] | unique | list }} {{ ['a', 'A', 'b'] | unique | list }}"
     " {{ [1, 2, 3] | join('-') }} {{ [1, 2, 3, 4, 5] | batch(2) | list }} {{ [1, 2, 3] | batch(2, 0) | list }}"
     " {{ 'abc' | list }} {{ [[1], [2]] | sum(start=[]) }} {{ ['x', 'y'] | map('upper') | join }}"
     " {{ [1, 2, 3, 4] | select('odd') | list }} {{ [1, 2, 3, 4] | reject('odd') | list }}"
     " {{ [0, 1, '', 'a'] | select | list }} {{ ['a', 'b', 'c'] | select('in', ['a', 'c']) | list }}", {}, {}),
    ("attr_filters", "{{ users | map(attribute='name') | join(', ') }} {{ users | selectattr('admin') | map(attribute='name')"
     " | list }} {{ users | rejectattr('admin') | map(attribute='name') | list }}"
     " {{ users | selectattr('age', 'gt', 30) | map(attribute='name') | list }}"
     " {{ users | selectattr('name', 'equalto', 'Bo') | list | length }} {{ users | sort(attribute='age') "
     "| map(attribute='name') | list }} {{ users | map(attribute='missing', default='?') | list }}"
     " {{ users | sum(attribute='age') }} {{ users | max(attribute='age') }} {{ users | join('/', attribute='name') }}"
     " {{ users | map(attribute='tags.0') | list }} {{ users | unique(attribute='admin') | map(attribute='name') | list }}"
     " {{ users[0] | attr('name') }}",
     {"users": [{"name": "Al", "age": 40, "admin": True, "tags": ["x"]},
                {"name": "Bo", "age": 25, "admin": False, "tags": ["y", "z"]},
                {"name": "Cy", "age": 33, "admin": False, "tags": ["w"]}]}, {}),
    ("dict_filters", "{{ d | dictsort }} {{ d | dictsort(by='value') }} {{ d | dictsort(reverse=true) }} {{ d | items | list }}"
     " {{ d | length }} {{ d | list }} {{ d | tojson }}", {"d": {"b": 2, "a": 3, "C": 1}}, {}),
    ("number_filters", "{{ '42' | int }} {{ '4.7' | int }} {{ 'x' | int }} {{ 'x' | int(7) }} {{ 3.9 | int }} {{ '3.5' | float }}"
     " {{ 2 | float }} {{ -3 | abs }} {{ -2.5 | abs }} {{ 2.5 | round }} {{ 3.5 | round }} {{ 2.675 | round(2) }}"
     " {{ 2.1 | round(0, 'ceil') }} {{ 2.9 | round(method='floor') }} {{ 5 | round }} {{ '0x1A' | int(base=16) }}"
     " {{ '12' | int + 1 }} {{ 1 | string ~ 2 }}", {}, {}),
    ("tojson", "{{ obj | tojson }}\n{{ obj | tojson(indent=2) }}\n{{ [] | tojson(indent=2) }} {{ {} | tojson }}"
     " {{ 'é\"<>&\\n' | tojson }} {{ 1.0 | tojson }} {{ none | tojson }} {{ obj | tojson(sort_keys=true) }}"
     " {{ obj | tojson(separators=(',', ':')) }}",
     {"obj": {"z": [1, 2.5, None, True, "ü"], "a": {"nested": {}, "list": []}, "s": "<tag> & 'q'"}}, {}),
    ("indent", "{{ 'a\\nb\\n\\nc' | indent }}|{{ 'a\\nb' | indent(2, true) }}|{{ 'a\\n\\nb' | indent(2, blank=true) }}"
     "|{{ 'x\\ny' | indent('> ') }}", {}, {}),
    ("tests", "{{ 1 is number }}{{ 1.5 is float }}{{ 1 is integer }}{{ true is integer }}{{ true is boolean }}"
     "{{ 'a' is string }}{{ {} is mapping }}{{ [] is sequence }}{{ 'a' is iterable }}{{ 3 is iterable }}"
     "{{ none is none }}{{ 4 is even }}{{ 4 is odd }}{{ 9 is divisibleby 3 }}{{ 9 is divisibleby(4) }}"
     "{{ 2 is eq 2 }}{{ 2 == 2 }}{{ 'b' is in 'abc' }}{{ true is true }}{{ 0 is false }}{{ range is callable }}"
     "{{ 'abc' is lower }}{{ 'ABC' is upper }}{{ 1 is not none }}{{ 3 is gt 2 }}{{ 2 is le 1 }}"
     "{{ 1 is sameas 1 }}{{ x is sameas none }}", {"x": None}, {}),
    ("string_methods", "{{ '  a b  '.strip() }}|{{ 'xxaxx'.lstrip('x') }}|{{ 'xxaxx'.rstrip('x') }}|"
     "{{ 'hello'.startswith('he') }}{{ 'hello'.endswith(('lo', 'x')) }}|{{ 'a,b,,c'.split(',') }}|"
     "{{ ' a  b '.split() }}|{{ 'a,b,c'.split(',', 1) }}|{{ 'a,b,c'.rsplit(',', 1) }}|{{ 'Hi'.upper() }}{{ 'Hi'.lower() }}|"
     "{{ 'hi there'.title() }}|{{ 'aXb'.replace('X', '-') }}|{{ '{} and {}'.format(1, 'b') }}|"
     "{{ '{0}{name}{0}'.format('|', name='N') }}|{{ ', '.join(['a', 'b']) }}|{{ 'hello'.find('l') }}"
     "{{ 'hello'.find('z') }}{{ 'hello'.count('l') }}|{{ 'a\\nb\\r\\nc'.splitlines() }}|{{ '123'.isdigit() }}"
     "{{ 'ab'.isalpha() }}{{ ' '.isspace() }}|{{ 'héllo wörld'.title() }}|{{ 'ab'.capitalize() }}", {}, {}),
    ("globals", "{{ range(3) | list }} {{ range(1, 7, 2) | list }} {{ range(5, 0, -2) | list }} {{ dict(a=1, b=2) }}"
     " {{ strftime_now('%Y') | length }} {{ namespace(a=1).a }}", {}, {}),
    ("raise_exception", "{% if x %}{{ raise_exception('bad input: ' ~ x) }}{% endif %}", {"x": "boom"}, {}),
    ("whitespace_control", "a  {%- if true -%}  b  {%- endif -%}  c\n  {{- ' d ' -}}  \n e {#- comment -#} f", {}, {}),
    ("trim_lstrip_on", "<ul>\n  {% for i in [1, 2] %}\n    <li>{{ i }}</li>\n  {% endfor %}\n</ul>\n  {# c #}\nend  "
     "{% if true %}x{% endif %}\n  {%+ if true %}plus{% endif %}\n", {}, {}),
    ("trim_lstrip_off", "<ul>\n  {% for i in [1, 2] %}\n    <li>{{ i }}</li>\n  {% endfor %}\n</ul>\n  {# c #}\nend  "
     "{% if true %}x{% endif %}\n", {}, NO_TRIM),
    ("trim_only", "A\n  {% if true %}\n  B\n  {% endif %}\nC", {}, {"trim_blocks": True, "lstrip_blocks": False}),
    ("lstrip_only", "A\n  {% if true %}\n  B\n  {% endif %}\nC", {}, {"trim_blocks": False, "lstrip_blocks": True}),
    ("keep_trailing_newline", "line\n", {}, {"keep_trailing_newline": True}),
    ("drop_trailing_newline", "line\n", {}, {}),
    ("crlf", "a\r\n{% if true %}\r\nb\r\n{% endif %}\r\nc", {}, {}),
    ("raw_whitespace", "x\n  {% raw %}\n  {{ y }}\n  {% endraw %}\nz {%- raw -%}  q  {%- endraw -%}  w", {}, {}),
    ("dict_order", "{% for k, v in d.items() %}{{ k }}{% endfor %} {{ d | tojson }} {{ d }}",
     {"d": {"zeta": 1, "alpha": 2, "mid": 3}}, {}),
    ("slices", "{{ l[1:] }} {{ l[:-1] }} {{ l[::2] }} {{ l[::-1] }} {{ l[-2:] }} {{ l[5:] }} {{ l[1:3] }} {{ l[3:1:-1] }}",
     {"l": [0, 1, 2, 3, 4]}, {}),
    ("list_concat", "{{ [1] + [2, 3] }} {{ [0] * 3 }} {{ ([1] + l) | length }}", {"l": [5, 6]}, {}),
    ("loop_in_macro_ns", "{% set ns = namespace(found=false) %}{% for m in messages %}{% if m.role == 'system' %}"
     "{% set ns.found = true %}{% endif %}{% endfor %}{{ ns.found }}{% for m in messages | reverse %}"
     "{{ m.role[0] }}{% endfor %}{{ messages | selectattr('role', 'equalto', 'user') | list | length }}",
     {"messages": [SYS, U1, A1]}, {}),
    ("error_unknown_filter", "{{ x | nosuchfilter }}", {"x": 1}, {}),
    ("error_syntax", "{% if x %}unclosed", {}, {}),
    ("error_list_append", "{% set l = [] %}{{ l.append(1) }}", {}, {}),
    ("error_add_types", "{{ 1 + 'a' }}", {}, {}),
]


def render(env, source, ctx):
    try:
        return {"rendered": env.from_string(source).render(**ctx)}
    except Exception as e:  # jinja2 errors and Python TypeErrors alike
        return {"error": f"{type(e).__name__}: {e}"}


def build():
    lines = []
    env = make_env()
    for template, contexts in CORPUS:
        with open(os.path.join(HERE, "templates", template + ".jinja"), encoding="utf-8") as f:
            source = f.read()
        for i, ctx in enumerate(contexts):
            rec = {"name": f"{template}_{i}", "template": template + ".jinja", "options": {}, "context": ctx}
            rec.update(render(env, source, ctx))
            lines.append(rec)
    for name, source, ctx, options in FEATURES:
        rec = {"name": name, "source": source, "options": options, "context": ctx}
        rec.update(render(make_env(**options), source, ctx))
        lines.append(rec)
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines)


def main():
    out_path = os.path.join(HERE, "goldens.jsonl")
    text = build()
    if "--check" in sys.argv:
        with open(out_path, encoding="utf-8") as f:
            current = f.read()
        if current != text:
            print("goldens.jsonl is stale: rerun tests/chat/make_goldens.py", file=sys.stderr)
            return 1
        return 0
    with open(out_path, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {text.count(chr(10))} cases to {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
