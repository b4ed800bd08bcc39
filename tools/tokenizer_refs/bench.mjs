// Encode throughput of Hugging Face tokenizers (Rust, through @anush008/tokenizers) on ~1 MB of mixed text, the
// baseline for `omm tokenize --bench` (docs/tokenizers.md). Writes the corpus to tests/.cache/bench/mixed-1mb.txt.
// Run: cd tools/tokenizer_refs && npm ci && node bench.mjs [family ...]
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { families, repoRoot, tokenizerPath } from './families.mjs';
import { probes } from './probes.mjs';

const require = createRequire(import.meta.url);
const { Tokenizer } = require('@anush008/tokenizers');

export const corpusPath = path.join(repoRoot, 'tests', '.cache', 'bench', 'mixed-1mb.txt');

/** ~1 MB: the probe strings (prose, code, whitespace runs, many scripts, emoji) shuffled by a fixed LCG, numbered. */
function corpus() {
  if (fs.existsSync(corpusPath)) return fs.readFileSync(corpusPath, 'utf8');
  const items = probes('llama3').filter((s) => s.length > 0 && s.length < 1000);
  let seed = 12345, out = '', n = 0, bytes = 0;
  while (bytes < 1_000_000) {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    const line = `${n++}. ${items[seed % items.length]}\n`;
    out += line;
    bytes += Buffer.byteLength(line);
  }
  fs.mkdirSync(path.dirname(corpusPath), { recursive: true });
  fs.writeFileSync(corpusPath, out);
  return out;
}

// Same rule as TokenizeCommand.Chunks: cut at the first line end at or after every 16 KiB characters.
function chunks(text, size = 16 << 10) {
  const result = [];
  for (let start = 0; start < text.length;) {
    let end = Math.min(text.length, start + size);
    if (end < text.length) { const nl = text.indexOf('\n', end); end = nl < 0 ? text.length : nl + 1; }
    result.push(text.slice(start, end));
    start = end;
  }
  return result;
}

const text = corpus();
const parts = chunks(text);
const bytes = Buffer.byteLength(text);
for (const family of process.argv.length > 2 ? process.argv.slice(2) : families) {
  const t0 = performance.now();
  const tok = Tokenizer.fromFile(tokenizerPath(family));
  const load = (performance.now() - t0) / 1000;
  for (const p of parts.slice(0, 8)) await tok.encode(p, null, { addSpecialTokens: false });
  let best = Infinity, tokens = 0;
  for (let round = 0; round < 3; round++) {
    const start = performance.now();
    tokens = 0;
    for (const p of parts) tokens += (await tok.encode(p, null, { addSpecialTokens: false })).getIds().length;
    best = Math.min(best, (performance.now() - start) / 1000);
  }
  console.log(`${family}: load ${load.toFixed(2)} s; ${(bytes / 1e6).toFixed(2)} MB in ${parts.length} chunks -> ${tokens} tokens; ` +
    `best of 3: ${best.toFixed(3)} s, ${(bytes / 1e6 / best).toFixed(2)} MB/s, ${(tokens / best / 1e6).toFixed(2)} M tokens/s`);
}
