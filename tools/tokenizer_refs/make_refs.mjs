// Writes tests/OnnxMultimodal.Tests/Fixtures/tokenizers/<family>.json.gz: for every probe string, the ids Hugging Face
// tokenizers (0.22, through @anush008/tokenizers) gives without and with special tokens, and its decode of the former.
// Run: cd tools/tokenizer_refs && npm ci && node make_refs.mjs
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { createRequire } from 'node:module';
import { families, repoRoot, tokenizerPath } from './families.mjs';
import { probes } from './probes.mjs';

const require = createRequire(import.meta.url);
const { Tokenizer } = require('@anush008/tokenizers');
const outDir = path.join(repoRoot, 'tests', 'OnnxMultimodal.Tests', 'Fixtures', 'tokenizers');
fs.mkdirSync(outDir, { recursive: true });

for (const family of families) {
  const tok = Tokenizer.fromFile(tokenizerPath(family));
  const cases = [];
  for (const text of probes(family)) {
    const plain = (await tok.encode(text, null, { addSpecialTokens: false })).getIds();
    const special = (await tok.encode(text, null, { addSpecialTokens: true })).getIds();
    const decoded = await tok.decode(plain, false);
    cases.push({ text, ids: plain, idsWithSpecial: special, decoded });
  }
  const file = path.join(outDir, `${family}.json.gz`);   // gzip: generated data, read by TokenizerReferenceTests
  fs.writeFileSync(file, zlib.gzipSync(JSON.stringify({ family, reference: 'tokenizers 0.22.2 (@anush008/tokenizers 0.6.0)', cases }, null, 0) + '\n', { level: 9 }));
  console.log(`${file}: ${cases.length} strings`);
}
