// bench/tok_bench_hf.js: the same measurement as bench/tok_bench.c with Hugging Face tokenizers (npm
// `tokenizers`, its native Rust code): load time of DIR/tokenizer.json and single-thread encode MB/s over
// TEXT_FILE in chunks split at newlines, CPU time of the process, best of ROUNDS.
// Usage (from tests/tok, where the package is installed): node ../../bench/tok_bench_hf.js DIR TEXT [CHUNK] [ROUNDS]
'use strict';
process.env.TOKENIZERS_PARALLELISM = 'false';
process.env.RAYON_NUM_THREADS = '1';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require(require.resolve('tokenizers', { paths: [process.cwd(), path.join(__dirname, '../tests/tok')] }));
const [dir, file] = process.argv.slice(2);
const chunk = Number(process.argv[4]) || 16384;
const rounds = Number(process.argv[5]) || 5;
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };
(async () => {
  let bestLoad = 1e9, tok;
  for (let r = 0; r < 5; r++) {
    const t0 = cpu();
    tok = Tokenizer.fromFile(path.join(dir, 'tokenizer.json'));
    bestLoad = Math.min(bestLoad, cpu() - t0);
  }
  const buf = fs.readFileSync(file);
  const chunks = [];
  for (let pos = 0; pos < buf.length;) {
    let end = Math.min(pos + chunk, buf.length);
    while (end < buf.length && buf[end - 1] !== 10) end++;
    chunks.push(buf.subarray(pos, end).toString('utf8'));
    pos = end;
  }
  let best = 1e9, bestWall = 1e9, ntok = 0;
  const wall = () => Number(process.hrtime.bigint()) / 1e9;
  for (let r = 0; r < rounds; r++) {
    const t0 = cpu(), w0 = wall();
    ntok = 0;
    for (const c of chunks) ntok += (await tok.encode(c, null, { addSpecialTokens: false })).getIds().length;
    best = Math.min(best, cpu() - t0);
    bestWall = Math.min(bestWall, wall() - w0);
  }
  console.log(JSON.stringify({ impl: 'hf-tokenizers', vocab: tok.getVocabSize(true), load_ms: +(bestLoad * 1e3).toFixed(1),
    bytes: buf.length, tokens: ntok, encode_s: +best.toFixed(4), MB_per_s: +(buf.length / best / 1e6).toFixed(2),
    MB_per_s_wall: +(buf.length / bestWall / 1e6).toFixed(2) }));
})();
