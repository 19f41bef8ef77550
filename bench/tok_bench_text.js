// bench/tok_bench_text.js: writes the benchmark's mixed text (about SIZE MB: English prose, code, several
// scripts, emoji, numbers), deterministic. Usage: node bench/tok_bench_text.js OUT [SIZE_MB=4]
'use strict';
const fs = require('fs');
const path = require('path');
const { make } = require(path.resolve(__dirname, '../tests/tok/oracle/corpus.js'));
const out = process.argv[2];
const size = (Number(process.argv[3]) || 4) * 1e6;
const corpus = make().filter((e) => e.t !== undefined).map((e) => e.t);
// Mostly the corpus' prose/code-like strings, with the three 100 KB documents (prose, scripts, mixed).
const parts = [];
let n = 0, i = 0;
while (n < size) {
  const s = corpus[i++ % corpus.length];
  parts.push(s, '\n');
  n += Buffer.byteLength(s) + 1;
}
fs.writeFileSync(out, parts.join(''));
