// tests/tok/oracle/make_synthetic.js: writes small tokenizer.json files (into tests/fixtures/tokenizers/)
// for the components the real tokenizers in the tree do not use: WordPiece + BertNormalizer +
// BertPreTokenizer (bert), Unigram + Metaspace (t5), WordLevel with every Split behaviour, Punctuation,
// Digits and added-token options (misc), BPE with a subword prefix/suffix and byte_fallback (bpe_affix).
// Vocabularies come from the corpus' words, deterministically. make_golden.js then asks the oracle.
// Usage (in tests/tok): node oracle/make_synthetic.js
'use strict';
const fs = require('fs');
const path = require('path');
const { make } = require('./corpus');

const OUT = path.resolve(__dirname, '../../fixtures/tokenizers');
const texts = make().filter((e) => e.t !== undefined && e.t.length < 2000).map((e) => e.t);

// Word and character frequencies of the corpus.
const words = new Map(), chars = new Map();
for (const t of texts) {
  for (const w of t.toLowerCase().split(/[\s\p{P}\p{S}]+/u)) if (w) words.set(w, (words.get(w) || 0) + 1);
  for (const c of t) chars.set(c, (chars.get(c) || 0) + 1);
}
const cps = (w) => [...w];
const cut = (w, a, b) => cps(w).slice(a, b).join('');
const byFreq = (m) => [...m.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map((e) => e[0]);
const topWords = byFreq(words).filter((w) => w.length <= 12).slice(0, 1500);
const topChars = byFreq(chars).filter((c) => !/\s/u.test(c)).slice(0, 600);

function write(name, tok) {
  fs.mkdirSync(path.join(OUT, name), { recursive: true });
  fs.writeFileSync(path.join(OUT, name, 'tokenizer.json'), JSON.stringify(tok, null, 1) + '\n');
}
const added = (id, content, o = {}) => ({ id, content, single_word: false, lstrip: false, rstrip: false,
  normalized: false, special: true, ...o });

// ---- bert: WordPiece ------------------------------------------------------------------------------------
{
  const vocab = {};
  const add = (t) => { if (!(t in vocab)) vocab[t] = Object.keys(vocab).length; };
  ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'].forEach(add);
  for (const c of topChars) { add(c.toLowerCase()); add('##' + c.toLowerCase()); }
  for (const w of topWords) {
    add(w);
    if (cps(w).length > 4) { add(cut(w, 0, 3)); add('##' + cut(w, 3)); add('##' + cut(w, -3)); }
  }
  ['##ing', '##ed', '##s', '##tion', '##ly', '##er', 'un', '##able'].forEach(add);
  write('bert', {
    version: '1.0', truncation: null, padding: null,
    added_tokens: ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'].map((c, i) => added(i, c)),
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: { type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[SEP]', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[SEP]', type_id: 0 } },
             { Sequence: { id: 'B', type_id: 1 } }, { SpecialToken: { id: '[SEP]', type_id: 1 } }],
      special_tokens: { '[CLS]': { id: '[CLS]', ids: [2], tokens: ['[CLS]'] }, '[SEP]': { id: '[SEP]', ids: [3], tokens: ['[SEP]'] } } },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab },
  });
  fs.writeFileSync(path.join(OUT, 'bert', 'tokenizer_config.json'), JSON.stringify({
    cls_token: '[CLS]', sep_token: '[SEP]', unk_token: '[UNK]', pad_token: '[PAD]', mask_token: '[MASK]',
    do_lower_case: true, model_max_length: 512, tokenizer_class: 'BertTokenizer' }, null, 2) + '\n');
}

// ---- t5: Unigram + Metaspace ----------------------------------------------------------------------------
{
  const seen = new Set(['<pad>', '</s>', '<unk>']);
  const vocab = [['<pad>', 0], ['</s>', 0], ['<unk>', 0]];
  const add = (t, s) => { if (!seen.has(t)) { seen.add(t); vocab.push([t, s]); } };
  add('▁', -2.5);
  topWords.forEach((w, i) => {
    add('▁' + w, -3 - Math.log(1 + i) * 0.9);
    if (cps(w).length > 3) { add(cut(w, 0, 2), -6 - (i % 7) * 0.3); add(cut(w, 2), -7 - (i % 5) * 0.4); }
  });
  topChars.forEach((c, i) => add(c, -8 - Math.log(1 + i) * 0.5));
  write('t5', {
    version: '1.0', truncation: null, padding: null,
    added_tokens: [added(0, '<pad>'), added(1, '</s>'), added(2, '<unk>')],
    normalizer: { type: 'Sequence', normalizers: [{ type: 'NFKC' }, { type: 'Replace', pattern: { Regex: ' {2,}' }, content: ' ' }] },
    pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'WhitespaceSplit' },
      { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true }] },
    post_processor: { type: 'TemplateProcessing',
      single: [{ Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '</s>', type_id: 0 } }],
      pair: [{ Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '</s>', type_id: 0 } }, { Sequence: { id: 'B', type_id: 0 } }, { SpecialToken: { id: '</s>', type_id: 0 } }],
      special_tokens: { '</s>': { id: '</s>', ids: [1], tokens: ['</s>'] } } },
    decoder: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true },
    model: { type: 'Unigram', unk_id: 2, vocab, byte_fallback: false },
  });
}

// ---- misc: WordLevel behind a pile of pre-tokenizers and added-token options ----------------------------
{
  const vocab = { '[UNK]': 0 };
  const add = (t) => { if (!(t in vocab)) vocab[t] = Object.keys(vocab).length; };
  topWords.forEach(add);
  topChars.forEach((c) => add(c.toLowerCase()));
  for (let d = 0; d < 10; d++) add(String(d));
  ['-', '.', ',', '!', '?', "'", ' ', 'x'].forEach(add);
  // Added tokens take the model's id when the model has the string (as HF assigns them), else the next.
  let next = Object.keys(vocab).length;
  const aid = (c) => (c in vocab ? vocab[c] : next++);
  const n = aid('<mask>'), nsep = aid('<sep>');
  write('misc', {
    version: '1.0', truncation: null, padding: null,
    added_tokens: [
      added(0, '[UNK]'),
      added(n, '<mask>', { lstrip: true, rstrip: false }),
      added(nsep, '<sep>', { rstrip: true }),
      added(aid('world'), 'world', { single_word: true, special: false, normalized: true }),
      added(aid('<|im_start|>'), '<|im_start|>', {}),
      added(aid('ing'), 'ing', { special: false, normalized: true }),
    ],
    normalizer: { type: 'Sequence', normalizers: [{ type: 'Strip', strip_left: true, strip_right: true }, { type: 'NFD' },
      { type: 'StripAccents' }, { type: 'Lowercase' }, { type: 'Replace', pattern: { String: '``' }, content: '"' }] },
    pre_tokenizer: { type: 'Sequence', pretokenizers: [
      { type: 'Split', pattern: { Regex: '\\s+' }, behavior: 'Removed', invert: false },
      { type: 'Split', pattern: { String: '-' }, behavior: 'MergedWithNext', invert: false },
      { type: 'Split', pattern: { String: '.' }, behavior: 'MergedWithPrevious', invert: false },
      { type: 'Split', pattern: { Regex: '[aeiou]' }, behavior: 'Contiguous', invert: false },
      { type: 'Digits', individual_digits: true },
      { type: 'Punctuation', behavior: 'Isolated' },
      { type: 'Split', pattern: { Regex: '\\p{L}+' }, behavior: 'Isolated', invert: true },
    ] },
    post_processor: { type: 'RobertaProcessing', sep: ['<sep>', nsep], cls: ['<mask>', n], trim_offsets: true, add_prefix_space: false },
    decoder: { type: 'Sequence', decoders: [{ type: 'Replace', pattern: { String: 'x' }, content: 'ks' }, { type: 'Fuse' },
      { type: 'Strip', content: ' ', start: 1, stop: 0 }] },
    model: { type: 'WordLevel', vocab, unk_token: '[UNK]' },
  });
}

// ---- bpe_affix: BPE with continuing_subword_prefix, end_of_word_suffix and byte_fallback -------------
{
  const vocab = { '<unk>': 0 };
  const add = (t) => { if (!(t in vocab)) vocab[t] = Object.keys(vocab).length; return t; };
  for (let b = 0; b < 256; b++) add('<0x' + b.toString(16).toUpperCase().padStart(2, '0') + '>');
  const merges = [];
  const alpha = topChars.slice(0, 200);
  for (const c of alpha) { add(c); add('##' + c); add(c + '</w>'); add('##' + c + '</w>'); }
  // Merges that build the top words: (w[0], ##w[1]) -> w[0..2], ... with the suffix on the last piece.
  for (const w of topWords.slice(0, 400)) {
    const cs = [...w];
    if (cs.length < 2 || cs.some((c) => !alpha.includes(c))) continue;
    let left = cs[0];
    for (let i = 1; i < cs.length; i++) {
      const last = i === cs.length - 1;
      const right = '##' + cs[i] + (last ? '</w>' : '');
      const merged = left + cs[i] + (last ? '</w>' : '');
      if (!(left in vocab)) add(left);
      add(right);
      if (!(merged in vocab)) { add(merged); merges.push([left, right]); }
      left = merged;
    }
  }
  write('bpe_affix', {
    version: '1.0', truncation: null, padding: null,
    added_tokens: [added(0, '<unk>')],
    normalizer: { type: 'Sequence', normalizers: [{ type: 'NFKC' }, { type: 'Lowercase' }] },
    pre_tokenizer: { type: 'Whitespace' },
    post_processor: null,
    decoder: { type: 'Sequence', decoders: [{ type: 'ByteFallback' }, { type: 'BPEDecoder', suffix: '</w>' }] },
    model: { type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: '##', end_of_word_suffix: '</w>',
             fuse_unk: false, byte_fallback: true, ignore_merges: false, vocab, merges },
  });
}
// ---- bl_trim: a small byte-level BPE (RoBERTa-like): prefix space, GPT-2 regex, offsets trimmed ----------
{
  const { byteLevelAlphabet } = require('tokenizers');
  const b2c = {};
  {
    // GPT-2's bytes_to_unicode
    const bs = [];
    for (let i = 33; i <= 126; i++) bs.push(i);
    for (let i = 161; i <= 172; i++) bs.push(i);
    for (let i = 174; i <= 255; i++) bs.push(i);
    const cs = bs.slice();
    let n = 0;
    for (let b = 0; b < 256; b++) if (!bs.includes(b)) { bs.push(b); cs.push(256 + n++); }
    bs.forEach((b, i) => { b2c[b] = String.fromCodePoint(cs[i]); });
  }
  void byteLevelAlphabet;
  const bl = (s) => [...Buffer.from(s, 'utf8')].map((b) => b2c[b]).join('');
  const vocab = { '<s>': 0, '</s>': 1, '<unk>': 2 };
  const add = (t) => { if (!(t in vocab)) vocab[t] = Object.keys(vocab).length; };
  for (let b = 0; b < 256; b++) add(b2c[b]);
  const merges = [];
  for (const w of topWords.slice(0, 500)) {
    const cs = [...bl(' ' + w)];
    let left = cs[0];
    for (let i = 1; i < cs.length; i++) {
      const merged = left + cs[i];
      if (!(merged in vocab)) { add(merged); merges.push(left + ' ' + cs[i]); }
      left = merged;
    }
  }
  const n = Object.keys(vocab).length;
  vocab['<mask>'] = n;
  const blc = { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true };
  write('bl_trim', {
    version: '1.0', truncation: null, padding: null,
    added_tokens: [added(0, '<s>'), added(1, '</s>'), added(2, '<unk>'), added(n, '<mask>', { lstrip: true })],
    normalizer: null,
    pre_tokenizer: blc,
    post_processor: { type: 'RobertaProcessing', sep: ['</s>', 1], cls: ['<s>', 0], trim_offsets: true, add_prefix_space: true },
    decoder: blc,
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
             fuse_unk: false, byte_fallback: false, vocab, merges },
  });
}
// ---- sp_first / sp_split: stories260K's BPE behind the Metaspace pre-tokenizer (transformers' newer Llama
// conversion: prepend_scheme "first", split false; and "always" with split) instead of Prepend/Replace.
{
  const src = JSON.parse(fs.readFileSync(path.resolve(__dirname, '../../../../shared/models/stories260K/tokenizer.json'), 'utf8'));
  const llamaDec = src.decoder;
  write('sp_first', { ...src, normalizer: null,
    pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: false },
    decoder: llamaDec });
  write('sp_split', { ...src, normalizer: null,
    added_tokens: [...src.added_tokens, added(512, '<|user|>', { lstrip: true, rstrip: true })],
    pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true },
    decoder: { type: 'Sequence', decoders: [{ type: 'ByteFallback' }, { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true }] } });
}
console.error('wrote bert, t5, misc, bpe_affix, bl_trim, sp_first, sp_split under ' + OUT);
