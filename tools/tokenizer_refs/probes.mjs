// Probe strings for the tokenizer reference tests: the same set for every family, plus its own special-token text.
const specials = {
  llama2: ['<s>[INST] hi [/INST]', 'a</s>b<unk>c', '<s><s> </s>'],
  unigram: ['<s>[INST] hi [/INST]', 'a</s>b<unk>c', '<s><s> </s>'],
  'llama2-metaspace': ['<s>[INST] hi [/INST]', 'a</s>b<unk>c', '<s><s> </s>', ' <s> x', '<s>x'],
  llama3: ['<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>', 'x<|reserved_special_token_250|>y', '<|begin_of_text|> <|end_of_text|>'],
  qwen3: ['<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n', '<tool_call>{"a": 1}</tool_call>', '<|fim_prefix|>def f(<|fim_suffix|>)<|fim_middle|>', '<|endoftext|> <|im_end|>'],
  gemma3: ['<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n', '<mask> [multimodal] <unused5>', '<start_of_image><end_of_image>'],
};

const code = `def fib(n: int) -> int:
    """Return the n-th Fibonacci number."""
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)
`;
const cs = `public static class Program\n{\n\tstatic void Main()\n\t{\n\t\tConsole.WriteLine($"x = {42}");\n\t}\n}\n`;

// ~6,000 characters of mixed prose, code, numbers and scripts.
function long() {
  const parts = [];
  for (let i = 0; parts.join('').length < 6000; i++)
    parts.push(`Line ${i}: The quick brown fox (${i * 37 % 1000}) jumps — naïve café, 東京 ${i}, Привет, مرحبا 🙂\n    x[${i}] = y * ${i}.5;\n`);
  return parts.join('');
}

export function probes(family) {
  return [
    '',
    ' ',
    'Hello',
    'Hello world',
    ' Hello world',
    'Hello world ',
    'hello   world',
    '    four leading spaces',
    'tabs\tand\t\ttabs',
    '\t\t\tindented with tabs',
    'line one\nline two\n\nline four\n',
    'windows\r\nline\r\nends',
    '\n\n\n',
    '          ',
    code,
    cs,
    'for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }',
    '<div class="x">&amp; &lt;tag&gt;</div>',
    'SELECT id, name FROM users WHERE age >= 21 ORDER BY name;',
    "I'm sure they're here, we've seen it, you'll see, he'd go, it's OK, don't",
    "I'M SURE THEY'RE HERE, WE'VE SEEN IT",
    'Numbers: 0 7 42 123 1234 12345 3.14159 -2.5e-10 1,000,000',
    '2024-06-01T12:34:56Z and 192.168.0.1:8080',
    'naïve café résumé façade Ångström',
    'Ça va? Où est la bibliothèque? Ñandú, pingüino',
    'Größe, Straße, Übermäßig',
    'Привет, мир! Как дела?',
    'Γειά σου Κόσμε',
    'مرحبا بالعالم',
    'שלום עולם',
    'नमस्ते दुनिया',
    'สวัสดีชาวโลก',
    '你好，世界！今天天气很好。',
    '日本語のテキストとカタカナ、ひらがな。',
    '한국어 텍스트입니다',
    'Emoji 🙂🎉🚀 and more 😀',
    'Family 👩‍👩‍👧‍👦 and 👨🏽‍💻 and 🏳️‍🌈',
    'Flags 🇫🇷🇯🇵 keycap 1️⃣',
    'Math ∑ ∫ √ ≤ ≥ ≠ ∞ π',
    'mixed: abc123def 456ghi',
    '!!!???...---___***',
    'a  b   c    d     e',
    ' \t \n mixed whitespace \n\t ',
    'trailing newline\n',
    'URL https://example.com/path?q=1&r=two#frag',
    'email: someone@example.org',
    'snake_case_name camelCaseName PascalCase kebab-case',
    '\u00a0non-breaking\u00a0space and\u3000ideographic space',
    'zero\u200bwidth\u200djoiner',
    'combining e\u0301 vs é',
    'astral letters x𝔘𝔫𝔦 𠀀𠀁a, digits a𝟙𝟚𝟛4, after a contraction \'s𐐀',
    ...specials[family],
    long(),
    ' '.repeat(3000),
  ];
}
