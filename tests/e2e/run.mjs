// tests/e2e/run: `ignis serve --model-id ../shared/models/stories260K` driven by real clients, unchanged
// (@huggingface/inference 4.x, openai 6), a TGI-protocol client (the request/event shapes of Python's
// `text-generation`), curl, and raw sockets for bad input; then metrics after a known workload, a bounded soak
// with random parameters and disconnects, and a graceful SIGTERM. Every text is checked against the greedy
// output in expected.json. Usage: node run.mjs --ignis build/ignis [--only group,group] [--soak N]
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { ROOT, MODEL, PROMPTS, check, eq, summary, startServer, stopServer, request, postJSON, sseData,
  rawExchange, statusOf, parseMetrics, sleep, freePort } from "./lib.mjs";

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : dflt;
};
const BIN = path.resolve(opt("--ignis", process.env.IGNIS_BIN || path.join(ROOT, "build/ignis")));
const ONLY = opt("--only", "") ? opt("--only").split(",") : null;
const SOAK = Number(opt("--soak", process.env.IGNIS_SOAK || "2000"));
if (!fs.existsSync(BIN)) {
  console.error(`e2e: no ignis binary at ${BIN}`);
  process.exit(2);
}
if (!fs.existsSync(MODEL)) {
  console.error(`e2e: no model at ${MODEL}: skipped`);
  process.exit(77);
}
let InferenceClient, OpenAI;
try {
  ({ InferenceClient } = await import("@huggingface/inference"));
  OpenAI = (await import("openai")).default;
} catch (e) {
  console.error("e2e: client packages missing (run `npm ci` in tests/e2e): skipped");
  process.exit(77);
}

const P0 = PROMPTS[0], P1 = PROMPTS[1], P2 = PROMPTS[2];
const isPrefix = (got, p) => typeof got === "string" && got.length > 0 && p.text.startsWith(got);

// ---- groups --------------------------------------------------------------------------------------------------

const groups = {};

groups.tgi = async (url) => {
  // /generate as text-generation's Client.generate sends it (details true)
  let r = await postJSON(url + "/generate", { inputs: P0.prompt, parameters: { max_new_tokens: 200, details: true, decoder_input_details: true, top_n_tokens: 2 } });
  eq(r.status, 200, "/generate status");
  let j = JSON.parse(r.body);
  eq(j.generated_text, P0.text, "/generate greedy text (200 tokens)");
  eq(j.details.finish_reason, "length", "finish_reason");
  eq(j.details.generated_tokens, 200, "generated_tokens");
  eq(j.details.seed, null, "seed null for greedy");
  eq(j.details.tokens.map((t) => t.id).join(","), P0.ids.join(","), "token ids");
  check(j.details.tokens.every((t) => typeof t.logprob === "number" && t.logprob <= 0 && t.special === false), "token logprobs");
  eq(j.details.prefill.length, 5, "prefill length");
  // TGI's response headers: x-compute-type, times in whole ms, token counts, the prompt's characters
  eq(r.headers["x-compute-type"], "cpu", "x-compute-type on the CPU");
  eq(r.headers["x-prompt-tokens"], "5", "x-prompt-tokens");
  eq(r.headers["x-generated-tokens"], "200", "x-generated-tokens");
  eq(r.headers["x-total-tokens"], "205", "x-total-tokens");
  eq(r.headers["x-compute-characters"], String([...P0.prompt].length), "x-compute-characters");
  check(["x-compute-time", "x-total-time", "x-validation-time", "x-queue-time", "x-inference-time", "x-time-per-token"]
    .every((k) => /^\d+$/.test(r.headers[k] ?? "")), "timing headers in whole ms");
  check(Number(r.headers["x-inference-time"]) <= Number(r.headers["x-total-time"]), "inference within the total");
  eq(j.details.prefill[0].logprob, null, "first prefill logprob null");
  eq(j.details.prefill[1].text, "Once", "prefill text");
  eq(j.details.top_tokens.length, 200, "top_tokens per token");
  check(j.details.top_tokens.every((t, i) => t.length >= 2 && t[0].id === j.details.tokens[i].id), "top token 0 is the greedy choice");

  r = await postJSON(url + "/generate", { inputs: P1.prompt, parameters: { max_new_tokens: 200 } });
  j = JSON.parse(r.body);
  eq(j.generated_text, P1.text, "/generate greedy (prompt 2)");
  eq(j.details, undefined, "no details unless asked");

  r = await postJSON(url + "/generate", { inputs: P2.prompt, parameters: { max_new_tokens: 10, return_full_text: true } });
  check(JSON.parse(r.body).generated_text.startsWith(P2.prompt + P2.text.slice(0, 10)), "return_full_text prefixes the prompt");

  // stop sequence: never leaked, finish_reason stop_sequence
  r = await postJSON(url + "/generate", { inputs: P0.prompt, parameters: { max_new_tokens: 50, stop: ["Lily"], details: true } });
  j = JSON.parse(r.body);
  eq(j.generated_text, P0.text.slice(0, P0.text.indexOf("Lily")), "stop sequence cuts before the match");
  eq(j.details.finish_reason, "stop_sequence", "finish_reason stop_sequence");

  // truncate keeps the last tokens
  r = await postJSON(url + "/generate", { inputs: "xx yy zz " + P0.prompt, parameters: { max_new_tokens: 5, truncate: 5, decoder_input_details: true } });
  j = JSON.parse(r.body);
  eq(j.details.prefill.length, 5, "truncate: 5 prompt tokens");

  // seeded sampling is reproducible; best_of returns best_of_sequences
  const samp = { inputs: P0.prompt, parameters: { max_new_tokens: 20, do_sample: true, temperature: 0.9, seed: 7, details: true } };
  const a = JSON.parse((await postJSON(url + "/generate", samp)).body);
  const b = JSON.parse((await postJSON(url + "/generate", samp)).body);
  eq(a.generated_text, b.generated_text, "same seed, same text");
  eq(a.details.seed, 7, "details.seed");
  r = await postJSON(url + "/generate", { inputs: P0.prompt, parameters: { max_new_tokens: 8, best_of: 2, do_sample: true, details: true } });
  j = JSON.parse(r.body);
  eq(r.status, 200, "best_of status");
  eq(j.details.best_of_sequences?.length, 1, "best_of_sequences");
  // watermark and penalties are accepted
  r = await postJSON(url + "/generate", { inputs: P0.prompt, parameters: { max_new_tokens: 8, watermark: true, repetition_penalty: 1.2, frequency_penalty: 0.5, top_k: 10, top_p: 0.9, typical_p: 0.9 } });
  eq(r.status, 200, "all sampling parameters");
  r = await postJSON(url + "/generate", { inputs: P0.prompt, parameters: { max_new_tokens: 300, ignore_eos: true, details: true } });
  eq(JSON.parse(r.body).details.generated_tokens, 300, "ignore_eos extension: exactly max_new_tokens");

  // /generate_stream the way text-generation's Client.generate_stream reads it
  r = await postJSON(url + "/generate_stream", { inputs: P0.prompt, parameters: { max_new_tokens: 200, details: true } });
  eq(r.headers["x-compute-type"], "cpu", "x-compute-type on a stream");
  eq(r.headers["x-accel-buffering"], "no", "x-accel-buffering on a stream");
  eq(r.status, 200, "stream status");
  check(/text\/event-stream/.test(r.headers["content-type"]), "stream content-type");
  const evs = sseData(r.body).map((d) => JSON.parse(d));
  eq(evs.length, 200, "one event per token");
  eq(evs.map((e) => e.token.text).join(""), P0.text, "stream tokens concatenate to the greedy text");
  check(evs.every((e, i) => e.index === i + 1), "indexes 1..n");
  check(evs.slice(0, -1).every((e) => e.generated_text === null && e.details === null), "generated_text only on the last");
  eq(evs.at(-1).generated_text, P0.text, "last event generated_text");
  eq(evs.at(-1).details.finish_reason, "length", "stream details.finish_reason");
  eq(evs.at(-1).details.input_length, 5, "stream details.input_length");

  // the body huggingface_hub's InferenceClient.text_generation (and LangChain through it) sends to "/"
  r = await postJSON(url + "/", { inputs: P0.prompt, stream: false, parameters: { adapter_id: null, best_of: null,
    decoder_input_details: false, details: true, do_sample: false, frequency_penalty: null, grammar: null,
    max_new_tokens: 200, repetition_penalty: null, return_full_text: false, seed: null, stop: [], temperature: null,
    top_k: null, top_n_tokens: null, top_p: null, truncate: null, typical_p: null, watermark: false } });
  eq(r.status, 200, "huggingface_hub body status");
  eq(JSON.parse(r.body)[0]?.generated_text, P0.text, "huggingface_hub body text (a list of one, as TGI's compat route)");

  // a NUL inside the prompt is kept (JSON "\u0000"), not a string end
  r = await postJSON(url + "/generate", { inputs: "Once\u0000 upon", parameters: { max_new_tokens: 2, return_full_text: true, decoder_input_details: true } });
  j = JSON.parse(r.body);
  check(j.generated_text.startsWith("Once\u0000 upon"), "NUL kept in return_full_text");
  check(j.details.prefill.length > 3, "NUL: the whole prompt was tokenized");

  // POST / picks by "stream"; /invocations (SageMaker)
  r = await postJSON(url + "/", { inputs: P1.prompt, parameters: { max_new_tokens: 200 } });
  eq(JSON.parse(r.body)[0]?.generated_text, P1.prompt + P1.text, "POST / non-stream (return_full_text defaults to true)");
  r = await postJSON(url + "/", { inputs: P1.prompt, stream: true, parameters: { max_new_tokens: 20, return_full_text: false } });
  check(isPrefix(JSON.parse(sseData(r.body).at(-1)).generated_text, P1), "POST / stream");
  r = await postJSON(url + "/invocations", { inputs: P2.prompt, parameters: { max_new_tokens: 200, return_full_text: false } });
  eq(JSON.parse(r.body)[0]?.generated_text, P2.text, "/invocations generate");
  r = await postJSON(url + "/invocations", { messages: [{ role: "user", content: P2.prompt }], max_tokens: 200, temperature: 0 });
  eq(JSON.parse(r.body).choices?.[0]?.message?.content, P2.text, "/invocations chat");

  // /tokenize, /info, /health, /ping, /v1/models
  r = await postJSON(url + "/tokenize", { inputs: P0.prompt });
  j = JSON.parse(r.body);
  eq(j.map((t) => t.id).join(","), "1,403,407,261,378", "/tokenize ids");
  eq(j[1].text, "Once", "/tokenize text");
  eq(j[2].start, 4, "/tokenize offsets");
  r = await postJSON(url + "/chat_tokenize", { messages: [{ role: "user", content: P0.prompt }] });
  j = JSON.parse(r.body);
  eq(j.templated_text, "<s>" + P0.prompt, "/chat_tokenize templated_text");
  eq(j.tokenize_response?.map((t) => t.id).join(","), "1,403,407,261,378", "/chat_tokenize ids (the template's BOS, none added)");
  j = JSON.parse((await request("GET", url + "/info")).body);
  eq(j.max_total_tokens, 512, "/info max_total_tokens");
  eq(j.max_input_tokens, 511, "/info max_input_tokens");
  check(typeof j.model_id === "string" && typeof j.version === "string" && j.max_best_of === 2, "/info shape");
  eq((await request("GET", url + "/ping")).status, 200, "/ping");
  j = JSON.parse((await request("GET", url + "/v1/models")).body);
  eq(j.data?.[0]?.object, "model", "/v1/models");
};

groups.curl = async (url) => {
  const r = spawnSync("curl", ["-sS", "-w", "\n%{http_code}", url + "/generate", "-d",
    JSON.stringify({ inputs: P2.prompt, parameters: { max_new_tokens: 200 } })], { encoding: "utf8" });
  if (r.error) {
    console.error("  (curl not found: skipped)");
    return;
  }
  const [body, code] = [r.stdout.slice(0, r.stdout.lastIndexOf("\n")), r.stdout.slice(r.stdout.lastIndexOf("\n") + 1)];
  eq(code, "200", "curl status (no Content-Type header sent)");
  eq(JSON.parse(body).generated_text, P2.text, "curl greedy text");
  const s = spawnSync("curl", ["-sSN", url + "/v1/chat/completions", "-H", "Content-Type: application/json", "-d",
    JSON.stringify({ messages: [{ role: "user", content: P0.prompt }], max_tokens: 200, temperature: 0, stream: true })], { encoding: "utf8" });
  const data = sseData(s.stdout);
  eq(data.at(-1), "[DONE]", "curl chat stream ends with [DONE]");
  check(/\ndata: \[DONE\]\n\n$/.test(s.stdout), "literal data: [DONE]");
  eq(data.slice(0, -1).map((d) => JSON.parse(d).choices[0].delta.content).join(""), P0.text, "curl chat stream text");
};

// lm-evaluation-harness's loglikelihood requests (its local-completions model): prompts of token ids, echo, logprobs 1,
// max_tokens 1 (and 0: the prompt alone); it reads token_logprobs[ctxlen:-1] and checks greediness with top_logprobs
async function scoring(url) {
  const ids = [];
  for (const p of [P0.prompt, P1.prompt]) ids.push(JSON.parse((await postJSON(url + "/tokenize", { inputs: p })).body).map((t) => t.id));
  const pre = [];
  for (const p of [P0.prompt, P1.prompt])
    pre.push(JSON.parse((await postJSON(url + "/generate", { inputs: p, parameters: { max_new_tokens: 1, decoder_input_details: true, details: true } })).body).details.prefill.map((t) => t.logprob));
  const maxOf = (d) => Math.max(...Object.values(d));
  for (const max_tokens of [1, 0]) {
    const what = `scoring (max_tokens ${max_tokens})`;
    const r = await postJSON(url + "/v1/completions", { model: "x", prompt: ids, temperature: 0, max_tokens, logprobs: 1, seed: 1234, echo: true });
    eq(r.status, 200, `${what}: status`);
    const j = JSON.parse(r.body), choices = [...(j.choices ?? [])].sort((a, b) => a.index - b.index);
    eq(choices.map((c) => c.index).join(","), "0,1", `${what}: a choice per prompt, in order`);
    eq(j.usage?.completion_tokens, 2 * max_tokens, `${what}: completion tokens`);
    eq(j.usage?.prompt_tokens, ids[0].length + ids[1].length, `${what}: prompt tokens`);
    choices.forEach((c, i) => {
      const lp = c.logprobs, n = ids[i].length + max_tokens, w = `${what}, prompt ${i}`;
      eq(c.finish_reason, "length", `${w}: finish_reason`);
      check(["tokens", "token_logprobs", "top_logprobs", "text_offset"].every((k) => lp?.[k]?.length === n),
            `${w}: four lists of prompt + generated tokens (${n}): ${JSON.stringify(lp)?.slice(0, 300)}`);
      if (!lp?.top_logprobs) return;
      check(lp.token_logprobs[0] === null && lp.top_logprobs[0] === null, `${w}: the first token has no logprob`);
      check(pre[i].every((x, k) => k === 0 || Math.abs(x - lp.token_logprobs[k]) < 1e-5), `${w}: prompt logprobs are /generate's prefill logprobs`);
      check(lp.top_logprobs.every((d, k) => k === 0 || (d[lp.tokens[k]] !== undefined && maxOf(d) >= lp.token_logprobs[k] && Object.keys(d).length <= 2)),
            `${w}: each top_logprobs holds the token, at most 2 keys, none less likely than the token's`);
      eq(lp.tokens.join(""), c.text, `${w}: the tokens spell the echoed text`);
      check(lp.text_offset.every((o, k) => o === lp.tokens.slice(0, k).join("").length), `${w}: text_offset`);
      if (max_tokens) eq(lp.token_logprobs[n - 1], maxOf(lp.top_logprobs[n - 1]), `${w}: the greedy token's logprob is its top's`);
      // lm-eval's own reading: the continuation (the prompt's last token) scored, greedy when it is the top one
      const ctxlen = ids[i].length - 1, cont = lp.token_logprobs.slice(ctxlen, n - max_tokens);
      check(cont.length === 1 && Math.abs(cont[0] - pre[i][ctxlen]) < 1e-5, `${w}: lm-eval's token_logprobs[ctxlen:-1]`);
    });
  }
  // streamed, each choice's chunks add up to the unstreamed lists (text prompts too, where offsets are the tokenizer's)
  for (const [prompt, max_tokens] of [[ids, 3], [ids, 0], [P0.prompt, 3]]) {
    const body = { prompt, temperature: 0, max_tokens, logprobs: 2, echo: true };
    const whole = JSON.parse((await postJSON(url + "/v1/completions", body)).body);
    const chunks = sseData((await postJSON(url + "/v1/completions", { ...body, stream: true })).body).filter((d) => d !== "[DONE]").map((d) => JSON.parse(d));
    const got = {};
    for (const ch of chunks)
      for (const c of ch.choices) {
        const g = (got[c.index] ??= { text: "", tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] });
        g.text += c.text;
        for (const k of ["tokens", "token_logprobs", "top_logprobs", "text_offset"]) g[k].push(...(c.logprobs?.[k] ?? [NaN]));
      }
    whole.choices.forEach((c) => eq(JSON.stringify(got[c.index]), JSON.stringify({ text: c.text, ...c.logprobs }),
                                    `scoring streamed (${typeof prompt === "string" ? "text" : "ids"}, max_tokens ${max_tokens}): chunks add up to the unstreamed choice ${c.index}`));
    check(whole.choices.every((c) => c.logprobs.top_logprobs.slice(1).every((d) => Object.keys(d).length >= 2)), "logprobs 2: the two most likely tokens and the chosen one");
  }
  // refused: ids outside the vocabulary, negative, not integers, empty; max_tokens 0 without echo; logprobs past the limit
  const bad = [[1, 512], [1, -1], [1, 2.5], [[1], []], [[1], "x"]];
  for (const prompt of bad) {
    const r = await postJSON(url + "/v1/completions", { prompt, max_tokens: 1, echo: true, logprobs: 1 });
    check(r.status === 422 && JSON.parse(r.body).error_type === "validation", `prompt ${JSON.stringify(prompt)} -> 422 validation (${r.status} ${r.body})`);
  }
  eq((await postJSON(url + "/v1/completions", { prompt: ids[0], max_tokens: 0 })).status, 422, "max_tokens 0 without echo -> 422");
  eq((await postJSON(url + "/v1/completions", { prompt: ids[0], max_tokens: 1, logprobs: 6 })).status, 422, "logprobs 6 -> 422");
}

groups.openai = async (url) => {
  const client = new OpenAI({ baseURL: url + "/v1", apiKey: "unused" });
  // n: several choices of one prompt, each its own seeded sequence; the same request gives the same choices, and
  // streamed (chunks carry their choice's index) the same texts; the prompt counts once in usage
  const nreq = { model: "x", messages: [{ role: "user", content: P0.prompt }], max_tokens: 24, temperature: 1, seed: 5, n: 3 };
  const n1 = await client.chat.completions.create(nreq), n2 = await client.chat.completions.create(nreq);
  eq(n1.choices.map((ch) => ch.index).join(","), "0,1,2", "n: three choices");
  eq(JSON.stringify(n2.choices.map((ch) => ch.message.content)), JSON.stringify(n1.choices.map((ch) => ch.message.content)), "n: seeded, the same choices again");
  check(new Set(n1.choices.map((ch) => ch.message.content)).size > 1, "n: the choices are different samples");
  eq(n1.usage.prompt_tokens, 5, "n: the prompt counted once");
  eq(n1.usage.completion_tokens, 72, "n: completion tokens of all choices");
  const nst = await client.chat.completions.create({ ...nreq, stream: true });
  const ntexts = ["", "", ""];
  for await (const ch of nst) for (const c of ch.choices) ntexts[c.index] += c.delta?.content ?? "";
  eq(JSON.stringify(ntexts), JSON.stringify(n1.choices.map((ch) => ch.message.content)), "n: streamed, the same texts");
  const ncomp = JSON.parse((await postJSON(url + "/v1/completions", { prompt: [P0.prompt, P1.prompt], max_tokens: 5, temperature: 0, n: 2 })).body);
  const ncomp1 = JSON.parse((await postJSON(url + "/v1/completions", { prompt: [P0.prompt, P1.prompt], max_tokens: 5, temperature: 0 })).body);
  eq(ncomp.choices?.length, 4, "n: completions, 2 prompts x 2");
  eq(ncomp.choices?.[2]?.text, ncomp1.choices?.[1]?.text, "n: completions, choices prompt by prompt");
  eq(ncomp.usage?.prompt_tokens, ncomp1.usage?.prompt_tokens, "n: completions, each prompt counted once");
  eq((await postJSON(url + "/v1/chat/completions", { ...nreq, n: 65 })).status, 422, "n: 65 -> 422");

  // logit_bias (OpenAI's map of token ids to -100..100): +100 makes greedy take that token; -100 on the first greedy
  // token takes another; the same prompt without it is the plain text; bad maps are 422
  const lb = async (bias) => JSON.parse((await postJSON(url + "/v1/completions", { prompt: P0.prompt, max_tokens: 4, temperature: 0,
    logprobs: true, ...(bias ? { logit_bias: bias } : {}) })).body);
  const first = P0.ids[0], forced = (first + 7) % 500 + 10;
  const forcedText = await lb({ [forced]: 100 });
  const plain = await lb(null), banned = await lb({ [first]: -100 });
  eq(plain.choices[0].text, P0.text.slice(0, plain.choices[0].text.length), "logit_bias absent: the plain greedy text");
  check(banned.choices[0].text !== plain.choices[0].text, `logit_bias -100 on the first greedy token: another text (${JSON.stringify(banned.choices[0].text)})`);
  const fo = await client.completions.create({ model: "x", prompt: P0.prompt, max_tokens: 4, temperature: 0, logit_bias: { [forced]: 100 } });
  eq(fo.choices[0].text, forcedText.choices[0].text, "logit_bias through the OpenAI client");
  const forcedLp = forcedText.choices[0].logprobs.token_logprobs;
  check(fo.choices[0].text.length > 0 && forcedLp.length === 4 && forcedLp.every((x) => x > -1e-3),
        `logit_bias +100: the forced token every time, logprobs ~0 (${JSON.stringify(forcedLp)})`);
  const cb = await client.chat.completions.create({ model: "x", messages: [{ role: "user", content: P0.prompt }], max_tokens: 3,
    temperature: 0, logit_bias: { [forced]: 100 }, logprobs: true });
  check(cb.choices[0].logprobs.content.every((t) => t.logprob > -1e-3), "logit_bias on chat: the forced token every time");
  // echo (completions): the prompt, then the completion; with logprobs the prompt's tokens' first (the first null),
  // equal to TGI's decoder_input_details prefill logprobs for the same prompt; streamed, the prompt is the first chunk
  const ec = JSON.parse((await postJSON(url + "/v1/completions", { prompt: P0.prompt, max_tokens: 6, temperature: 0, echo: true, logprobs: 1 })).body);
  const plain6 = JSON.parse((await postJSON(url + "/v1/completions", { prompt: P0.prompt, max_tokens: 6, temperature: 0, logprobs: 1 })).body);
  eq(ec.choices[0].text, P0.prompt + plain6.choices[0].text, "echo: the prompt before the completion");
  const tg = JSON.parse((await postJSON(url + "/generate", { inputs: P0.prompt, parameters: { max_new_tokens: 1, decoder_input_details: true, details: true } })).body);
  const pre = tg.details.prefill.map((t) => t.logprob);
  const ecLp = ec.choices[0].logprobs.token_logprobs;
  eq(ecLp.length, pre.length + 6, "echo: logprobs of the prompt's tokens and the completion's");
  eq(ecLp[0], null, "echo: the first prompt token has no logprob");
  check(pre.every((x, k) => k === 0 || Math.abs(x - ecLp[k]) < 1e-5), "echo: prompt logprobs are TGI's prefill logprobs");
  check(plain6.choices[0].logprobs.token_logprobs.every((x, k) => Math.abs(x - ecLp[pre.length + k]) < 1e-6), "echo: then the completion's");
  // text_offset: where each token starts in the choice's text (a text prompt's where the tokenizer put them)
  const eo = ec.choices[0].logprobs.text_offset, et = ec.choices[0].logprobs.tokens;
  check(eo.length === ecLp.length && et.every((t, k) => k === 0 || ec.choices[0].text.slice(eo[k], eo[k] + t.length).trim() === t.trim()),
        `echo: text_offset points at each token in the text (${JSON.stringify(eo)} ${JSON.stringify(et)})`);
  await scoring(url);
  const es = await postJSON(url + "/v1/completions", { prompt: P0.prompt, max_tokens: 3, temperature: 0, echo: true, stream: true });
  const ed = sseData(es.body).filter((d) => d !== "[DONE]").map((d) => JSON.parse(d));
  eq(ed[0]?.choices?.[0]?.text, P0.prompt, "echo streamed: the prompt first");
  const ec3 = JSON.parse((await postJSON(url + "/v1/completions", { prompt: P0.prompt, max_tokens: 3, temperature: 0, echo: true })).body);
  eq(ed.map((d) => d.choices?.[0]?.text ?? "").join(""), ec3.choices[0].text, "echo streamed: the same text as unstreamed");
  eq((await postJSON(url + "/v1/completions", { prompt: "x", max_tokens: 2, echo: "yes" })).status, 422, "echo \"yes\" -> 422");
  // vLLM's min_tokens (stop sequences and EOS held off until then) and min_p (1: only the top token, so greedy)
  const cmp = async (extra) => JSON.parse((await postJSON(url + "/v1/completions", { prompt: P0.prompt, max_tokens: 60, temperature: 0, ...extra })).body);
  const stopAt = P0.text.slice(P0.text.indexOf(" ", 8), P0.text.indexOf(" ", 8) + 3);
  const early = await cmp({ stop: [stopAt] }), held = await cmp({ stop: [stopAt], min_tokens: 30 });
  check(early.choices[0].finish_reason === "stop" && early.usage.completion_tokens < 30, `min_tokens: the stop ${JSON.stringify(stopAt)} ends early without it (${early.usage.completion_tokens} tokens)`);
  check(held.usage.completion_tokens >= 30 && held.choices[0].text.startsWith(early.choices[0].text + stopAt),
        `min_tokens 30: the early stop is passed over (${held.usage.completion_tokens} tokens, ${held.choices[0].finish_reason})`);
  const mp = JSON.parse((await postJSON(url + "/v1/completions", { prompt: P0.prompt, max_tokens: 40, temperature: 1, seed: 9, min_p: 1 })).body);
  eq(mp.choices[0].text, P0.text.slice(0, mp.choices[0].text.length), "min_p 1 samples the greedy text");
  check(mp.choices[0].text.length > 20, "min_p 1: a text came back");
  // vLLM's stop_token_ids (the reply ends before the token, finish "stop"; held off by min_tokens) and top_k (1 at
  // temperature 1: the greedy text; temperature 0 stays greedy)
  const sid = P0.ids[3];
  const st = await cmp({ max_tokens: 20, stop_token_ids: [sid] });
  eq(st.choices[0].finish_reason, "stop", "stop_token_ids: finish stop");
  eq(st.usage.completion_tokens, 4, "stop_token_ids: the 4th token ends it");
  eq(st.choices[0].text, (await cmp({ max_tokens: 3 })).choices[0].text, "stop_token_ids: the three tokens before it, its own text not sent");
  const inc = await cmp({ stop: [stopAt], include_stop_str_in_output: true });
  eq(inc.choices[0].text, early.choices[0].text + stopAt, "include_stop_str_in_output: the text ends with the stop");
  eq(inc.choices[0].finish_reason, "stop", "include_stop_str_in_output: finish stop");
  const sm = await cmp({ max_tokens: 20, stop_token_ids: [sid], min_tokens: 10 });
  check(sm.usage.completion_tokens >= 10, `stop_token_ids held off by min_tokens (${sm.usage.completion_tokens} tokens)`);
  const tk1 = JSON.parse((await postJSON(url + "/v1/completions", { prompt: P0.prompt, max_tokens: 30, temperature: 1, seed: 4, top_k: 1 })).body);
  eq(tk1.choices[0].text, P0.text.slice(0, tk1.choices[0].text.length), "top_k 1 samples the greedy text");
  for (const bad of [{ min_p: 1.5 }, { min_p: "x" }, { min_tokens: -1 }, { min_tokens: 10, max_tokens: 5 }, { top_k: -2 },
    { stop_token_ids: [99999] }, { stop_token_ids: ["x"] }, { stop_token_ids: 5 }])
    eq((await postJSON(url + "/v1/completions", { prompt: "x", max_tokens: 5, ...bad })).status, 422, `${JSON.stringify(bad)} -> 422`);
  for (const bad of [{ x: 1 }, { 5: 101 }, { 999999: 1 }, [1.5], "5"])
    eq((await postJSON(url + "/v1/completions", { prompt: "x", max_tokens: 2, logit_bias: bad })).status, 422, `logit_bias ${JSON.stringify(bad)} -> 422`);

  const c = await client.chat.completions.create({ model: "anything", messages: [{ role: "user", content: P0.prompt }], max_tokens: 200, temperature: 0 });
  eq(c.choices[0].message.content, P0.text, "openai chat (non-stream)");
  eq(c.choices[0].finish_reason, "length", "openai finish_reason");
  eq(c.usage.prompt_tokens, 5, "usage.prompt_tokens (template + no extra BOS)");
  eq(c.usage.completion_tokens, 200, "usage.completion_tokens");
  eq(c.object, "chat.completion", "object");
  eq(c.model, "anything", "model echoed");

  const stream = await client.chat.completions.create({ model: "x", messages: [{ role: "user", content: P1.prompt }], max_completion_tokens: 200, temperature: 0, stream: true, stream_options: { include_usage: true } });
  let text = "", finish = null, usage = null, n = 0;
  for await (const ch of stream) {
    n++;
    if (ch.choices.length) {
      text += ch.choices[0].delta.content ?? "";
      if (ch.choices[0].finish_reason) finish = ch.choices[0].finish_reason;
    }
    if (ch.usage) usage = ch.usage;
  }
  eq(text, P1.text, "openai chat stream text");
  eq(finish, "length", "openai stream finish_reason");
  eq(usage?.total_tokens, 205, "stream_options.include_usage");

  const lp = await client.chat.completions.create({ model: "x", messages: [{ role: "user", content: P2.prompt }], max_tokens: 5, temperature: 0, logprobs: true, top_logprobs: 3 });
  eq(lp.choices[0].logprobs.content.length, 5, "logprobs per token");
  eq(lp.choices[0].logprobs.content[0].top_logprobs.length >= 3, true, "top_logprobs");
  eq(lp.choices[0].logprobs.content.map((t) => t.token).join(""), lp.choices[0].message.content, "logprob tokens spell the content");

  const stop = await client.chat.completions.create({ model: "x", messages: [{ role: "user", content: P0.prompt }], max_tokens: 50, temperature: 0, stop: ["Lily"] });
  eq(stop.choices[0].message.content, P0.text.slice(0, P0.text.indexOf("Lily")), "openai stop");
  eq(stop.choices[0].finish_reason, "stop", "openai finish stop");

  const comp = await client.completions.create({ model: "x", prompt: P2.prompt, max_tokens: 200, temperature: 0 });
  eq(comp.choices[0].text, P2.text, "openai completions");
  const multi = await client.completions.create({ model: "x", prompt: [P0.prompt, P1.prompt], max_tokens: 200, temperature: 0 });
  eq(multi.choices.map((c) => c.text).join("|"), P0.text + "|" + P1.text, "completions with a prompt list");
  const cs = await client.completions.create({ model: "x", prompt: P0.prompt, max_tokens: 200, temperature: 0, stream: true });
  let ctext = "";
  for await (const ch of cs) ctext += ch.choices[0]?.text ?? "";
  eq(ctext, P0.text, "openai completions stream");
  const seeded = { model: "x", messages: [{ role: "user", content: P0.prompt }], max_tokens: 20, seed: 3, temperature: 0.8, frequency_penalty: 0.3, presence_penalty: 0.2, top_p: 0.95 };
  const s1 = await client.chat.completions.create(seeded), s2 = await client.chat.completions.create(seeded);
  eq(s1.choices[0].message.content, s2.choices[0].message.content, "openai seeded sampling reproducible");

  const models = await client.models.list();
  eq(models.data.length, 1, "openai models.list");
  try {
    await client.chat.completions.create({ model: "x", messages: [{ role: "user", content: "hi" }], max_tokens: 0 });
    check(false, "max_tokens 0 must fail");
  } catch (e) {
    eq(e.status, 422, "openai error status");
    check(/strictly positive/.test(e.message), "openai error message: " + e.message);
  }
};

groups.hf = async (url) => {
  const client = new InferenceClient(undefined, { endpointUrl: url });
  const g = await client.textGeneration({ inputs: P0.prompt, parameters: { max_new_tokens: 200, temperature: 0 } });
  eq(g.generated_text, P0.text, "hf textGeneration");
  let text = "";
  for await (const ch of client.textGenerationStream({ inputs: P1.prompt, parameters: { max_new_tokens: 200, temperature: 0 } }))
    text += ch.choices?.[0]?.text ?? ch.token?.text ?? "";
  eq(text, P1.text, "hf textGenerationStream");
  const c = await client.chatCompletion({ messages: [{ role: "user", content: P2.prompt }], max_tokens: 200, temperature: 0 });
  eq(c.choices[0].message.content, P2.text, "hf chatCompletion");
  text = "";
  for await (const ch of client.chatCompletionStream({ messages: [{ role: "user", content: P0.prompt }], max_tokens: 200, temperature: 0 }))
    text += ch.choices?.[0]?.delta?.content ?? "";
  eq(text, P0.text, "hf chatCompletionStream");
  try {
    await client.textGeneration({ inputs: P0.prompt, parameters: { max_new_tokens: 0 } });
    check(false, "hf error expected");
  } catch (e) {
    // the client only prints string errors; the OpenAI-shaped body is on the error
    eq(e.httpResponse?.status, 422, "hf client error status");
    check(/strictly positive/.test(JSON.stringify(e.httpResponse?.body)), "hf client error body: " + JSON.stringify(e.httpResponse?.body));
  }
};

// TGI validation rules: [parameters, message]
const RULES = [
  [{ temperature: 0 }, "`temperature` must be strictly positive"],
  [{ repetition_penalty: 0 }, "`repetition_penalty` must be strictly positive"],
  [{ frequency_penalty: 3 }, "`frequency_penalty` must be >= -2.0 and <= 2.0"],
  [{ top_p: 1 }, "`top_p` must be > 0.0 and < 1.0"],
  [{ typical_p: 0 }, "`typical_p` must be > 0.0 and < 1.0"],
  [{ top_k: 0 }, "`top_k` must be strictly positive"],
  [{ max_new_tokens: 0 }, "`max_new_tokens` must be strictly positive"],
  [{ stop: ["a", "b", "c", "d", "e"] }, "`stop` supports up to 4 stop sequences. Given: 5"],
  [{ best_of: 3, do_sample: true }, "`best_of` must be > 0 and <= 2. Given: 3"],
  [{ best_of: 2 }, "you must use sampling when `best_of` is > 1"],
  [{ best_of: 2, do_sample: true, seed: 1 }, "`seed` must not be set when `best_of` > 1"],
  [{ top_n_tokens: 6 }, "`top_n_tokens` must be >= 0 and <= 5. Given: 6"],
  [{ truncate: 0 }, "`truncate` must be strictly positive and less than 511. Given: 0"],
  [{ max_new_tokens: 510 }, "`inputs` tokens + `max_new_tokens` must be <= 512. Given: 5 `inputs` tokens and 510 `max_new_tokens`"],
];

groups.bad = async (url, srv) => {
  const port = srv.port;
  for (const [params, msg] of RULES) {
    const r = await postJSON(url + "/generate", { inputs: P0.prompt, parameters: params });
    eq(r.status, 422, `status for ${JSON.stringify(params)}`);
    let j = {};
    try { j = JSON.parse(r.body); } catch {}
    eq(j.error, msg, `message for ${JSON.stringify(params)}`);
    eq(j.error_type, "validation", "error_type validation");
  }
  let r = await postJSON(url + "/generate_stream", { inputs: P0.prompt, parameters: { best_of: 2, do_sample: true } });
  eq(r.status, 422, "stream + best_of");
  eq(JSON.parse(r.body).error, "`best_of` != 1 is not supported when streaming tokens", "stream + best_of message");
  r = await postJSON(url + "/generate", { inputs: "" });
  eq(JSON.parse(r.body).error, "`inputs` cannot be empty", "empty inputs");
  r = await postJSON(url + "/generate", { inputs: "the ".repeat(600), parameters: { max_new_tokens: 1 } });
  eq(r.status, 422, "too many tokens");
  check(/^`inputs` (tokens \+ `max_new_tokens` must be <= 512|must have less than 511 tokens)/.test(JSON.parse(r.body).error), "too many tokens message");
  r = await postJSON(url + "/generate", '{"inputs": "x", "parameters": {');
  eq(r.status, 400, "malformed JSON");
  check(/^Failed to parse the request body as JSON/.test(JSON.parse(r.body).error), "malformed JSON message");
  r = await postJSON(url + "/generate", { inputs: 42 });
  eq(r.status, 422, "wrong type");
  eq(JSON.parse(r.body).error, "Failed to deserialize the JSON body into the target type: inputs: invalid type: integer `42`, expected a string", "wrong type message");
  r = await postJSON(url + "/generate", { inputs: "x", parameters: { max_new_tokens: "5" } });
  eq(r.status, 422, "string for an integer");
  r = await postJSON(url + "/generate", Buffer.from([0x7b, 0x22, 0x69, 0x6e, 0x70, 0x75, 0x74, 0x73, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d]));
  eq(r.status, 400, "invalid UTF-8");
  r = await postJSON(url + "/v1/chat/completions", { messages: "hi" });
  eq(r.status, 422, "chat wrong type");
  check(typeof JSON.parse(r.body).error?.message === "string", "OpenAI error shape");
  r = await postJSON(url + "/v1/completions", { prompt: ["a", "b", "c", "d", "e"] });
  eq(r.status, 422, "too many prompts");
  eq(JSON.parse(r.body).error_type, "batch size exceeded", "too many prompts error_type");
  eq((await request("GET", url + "/nope")).status, 404, "unknown route");
  eq((await request("DELETE", url + "/generate")).status, 405, "wrong method");
  eq((await request("GET", url + "/generate")).status, 405, "GET on a POST route");
  eq((await request("POST", url + "/info", "{}")).status, 405, "POST on a GET route");
  const garbage = await rawExchange(port, "BLAH / HTTP/1.1\r\nHost: x\r\n\r\n");
  check(statusOf(garbage.data) >= 400 || garbage.data === "", "garbage method rejected: " + garbage.data.slice(0, 40));
  const bad = await rawExchange(port, "this is not http\r\n\r\n");
  check(statusOf(bad.data) === 400 || bad.data === "", "not HTTP: " + bad.data.slice(0, 40));

  if (process.env.E2E_DEBUG) console.log("  bad: 100 MB body");
  // 100 MB body: 413 without reading it all. The reply comes once the headers are read; the client stops sending when
  // it has the status line (as clients do): a loaded machine that sends slowly past --client-timeout would otherwise
  // get the connection reset, and a reset can drop the unread 413 on the client's side (seen under ctest -j8 on 2 cores)
  const big = await new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    let got = "";
    s.on("data", (d) => {
      got += d.toString("latin1");
      if (/^HTTP\/1\.[01] \d{3}/.test(got)) s.destroy();
    });
    s.on("error", () => {});
    s.on("close", () => resolve(got));
    s.on("connect", () => {
      s.write(`POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${100 * 1024 * 1024}\r\n\r\n`);
      const chunk = Buffer.alloc(1 << 20, 0x20);
      let sent = 0;
      const pump = () => {
        while (sent < 100 && !s.destroyed) {
          sent++;
          if (!s.write(chunk)) return s.once("drain", pump);
        }
      };
      pump();
    });
    s.setTimeout(20000, () => s.destroy());
  });
  eq(statusOf(big), 413, "100 MB body -> 413");
  // chunked 100 MB (no Content-Length) too
  eq((await request("GET", url + "/health")).status, 200, "still healthy after the big body");

  if (process.env.E2E_DEBUG) console.log("  bad: slow loris");
  // slow loris: headers trickled slower than --client-timeout allows are cut off; others are served meanwhile
  const loris = new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    const t0 = Date.now();
    let i = 0;
    const parts = "POST /generate HTTP/1.1\r\nHost: x\r\nX-Slow: ".split("");
    const timer = setInterval(() => {
      if (s.destroyed) return;
      s.write(parts[i++ % parts.length]);
    }, 300);
    s.on("error", () => {});
    s.on("close", () => {
      clearInterval(timer);
      resolve(Date.now() - t0);
    });
    s.setTimeout(20000, () => s.destroy());
  });
  r = await postJSON(url + "/generate", { inputs: P0.prompt, parameters: { max_new_tokens: 10 } });
  check(isPrefix(JSON.parse(r.body).generated_text, P0), "served during slow loris");
  const lorisMs = await loris;
  check(lorisMs < 15000, `slow loris cut off after ${lorisMs} ms`);

  if (process.env.E2E_DEBUG) console.log("  bad: idle");
  // 1,000 idle connections, and the server still answers
  const idle = [];
  await Promise.all(Array.from({ length: 1000 }, () => new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1", resolve);
    s.on("error", resolve);
    idle.push(s);
  })));
  r = await postJSON(url + "/generate", { inputs: P1.prompt, parameters: { max_new_tokens: 200 } });
  eq(JSON.parse(r.body).generated_text, P1.text, "served with 1,000 idle connections open");
  idle.forEach((s) => s.destroy());

  // auth is checked in its own server (below); CORS preflight here
  r = await request("OPTIONS", url + "/generate", undefined, { Origin: "http://example.com", "Access-Control-Request-Method": "POST" });
  check(r.status === 204 || r.status === 200, "CORS preflight");
  eq(r.headers["access-control-allow-origin"], "*", "CORS allow origin");
};

groups.cancel = async (url) => {
  // a client that goes away mid-stream: the server cancels and keeps serving
  for (let i = 0; i < 20; i++) {
    await new Promise((resolve) => {
      const s = net.connect(new URL(url).port, "127.0.0.1");
      const body = JSON.stringify({ inputs: P0.prompt, parameters: { max_new_tokens: 400, ignore_eos: true } });
      s.on("connect", () => s.write(`POST /generate_stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`));
      let n = 0;
      s.on("data", () => {
        if (++n === 3) s.destroy();
      });
      s.on("close", resolve);
      s.on("error", resolve);
    });
  }
  const r = await postJSON(url + "/generate", { inputs: P2.prompt, parameters: { max_new_tokens: 200 } });
  eq(JSON.parse(r.body).generated_text, P2.text, "served after 20 cancelled streams");
};

groups.metrics = async (url) => {
  await sleep(200);
  const before = parseMetrics((await request("GET", url + "/metrics")).body);
  for (let i = 0; i < 5; i++) await postJSON(url + "/generate", { inputs: P0.prompt, parameters: { max_new_tokens: 7 } });
  for (let i = 0; i < 2; i++) await postJSON(url + "/generate", { inputs: P0.prompt, parameters: { top_k: -1 } });
  const r = await request("GET", url + "/metrics");
  check(/text\/plain/.test(r.headers["content-type"]), "metrics content-type");
  const after = parseMetrics(r.body);
  const d = (k) => (after[k] ?? NaN) - (before[k] ?? 0);
  eq(d("tgi_request_count"), 7, "tgi_request_count delta");
  eq(d("tgi_request_success"), 5, "tgi_request_success delta");
  eq(d('tgi_request_failure{err="validation"}'), 2, "tgi_request_failure{err=validation} delta");
  eq(d("tgi_request_generated_tokens_count"), 5, "generated_tokens histogram count");
  eq(d("tgi_request_generated_tokens_sum"), 35, "generated_tokens histogram sum");
  eq(d("tgi_request_input_length_sum"), 25, "input_length histogram sum");
  eq(d("tgi_request_duration_count"), 5, "duration histogram count");
  // TGI's batch metrics: 5 requests of 7 tokens one after another: 5 prompt steps and 30 decode steps (the first token
  // comes from the prompt step), each of one sequence
  eq(d('tgi_batch_inference_count{method="prefill"}'), 5, "tgi_batch_inference_count{prefill} delta");
  eq(d('tgi_batch_inference_count{method="decode"}'), 30, "tgi_batch_inference_count{decode} delta");
  eq(d('tgi_batch_inference_success{method="decode"}'), 30, "tgi_batch_inference_success{decode} delta");
  eq(d('tgi_batch_inference_duration_count{method="decode"}'), 30, "tgi_batch_inference_duration count");
  eq(d('tgi_batch_forward_duration_bucket{method="prefill",le="+Inf"}'), 5, "tgi_batch_forward_duration +Inf bucket");
  check(d('tgi_batch_forward_duration_sum{method="decode"}') > 0 &&
        d('tgi_batch_forward_duration_sum{method="decode"}') <= d('tgi_batch_inference_duration_sum{method="decode"}'),
        "the forward within the step");
  eq(d('tgi_batch_next_size_bucket{le="1"}'), 35, "tgi_batch_next_size: one sequence per step");
  eq(d("tgi_batch_next_size_sum"), 35, "tgi_batch_next_size_sum");
  check(after["ignis_kv_blocks_total"] > 0, "ignis_kv_blocks_total");
  check(after["ignis_uptime_seconds"] > 0, "ignis_uptime_seconds");
  for (const k of ["tgi_queue_size", "tgi_batch_current_size", "tgi_batch_current_max_tokens", "ignis_kv_blocks_used", "ignis_preemptions_total",
    "tgi_request_queue_duration_count", "tgi_request_inference_duration_count", "tgi_request_mean_time_per_token_duration_count", "tgi_request_validation_duration_count"])
    check(k in after, "metric present: " + k);
  // closed connections are let go within a tick of their watch (it used to hold each for --client-timeout, 60 s:
  // ~16 KB of RSS per request under load); every request here is a connection of its own (agent: false)
  for (let i = 0; i < 30; i++) await request("GET", url + "/health");
  await sleep(2500);
  const wm = parseMetrics((await request("GET", url + "/metrics")).body);
  const held = wm["ignis_http_connection_watches"] - wm["ignis_http_connections"];
  check(held >= 0 && held <= 2, `closed connections still held 2.5 s after 30 closed: ${held} (${wm["ignis_http_connection_watches"]} watches, ${wm["ignis_http_connections"]} open)`);
};

groups.concurrent = async (url) => {
  // 32 concurrent streams of different prompts and lengths: each gives what it gives alone
  const jobs = Array.from({ length: 32 }, (_, i) => ({ p: PROMPTS[i % 3], n: 20 + (i * 37) % 180 }));
  const res = await Promise.all(jobs.map((j) => postJSON(url + "/generate_stream", { inputs: j.p.prompt, parameters: { max_new_tokens: j.n } })));
  res.forEach((r, i) => {
    const evs = sseData(r.body).map((d) => JSON.parse(d));
    const text = evs.at(-1)?.generated_text;
    eq(evs.length, jobs[i].n, `stream ${i}: token count`);
    check(isPrefix(text, jobs[i].p), `stream ${i}: greedy prefix`);
  });
};

groups.soak = async (url, srv) => {
  // random parameters, random disconnects, 50 clients; every completed response must be well formed
  let seed = 12345;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const pick = (a) => a[Math.floor(rnd() * a.length)];
  let done = 0, ok = 0, aborted = 0, errors = 0, next = 0;
  const one = async () => {
    const kind = pick(["gen", "stream", "chat", "chatstream", "compl", "bad"]);
    const p = pick(PROMPTS);
    const n = 1 + Math.floor(rnd() * 40);
    const params = { max_new_tokens: n };
    if (rnd() < 0.5) Object.assign(params, { do_sample: true, temperature: 0.5 + rnd(), top_k: 1 + Math.floor(rnd() * 50), seed: Math.floor(rnd() * 1e6) + 1 });
    if (rnd() < 0.2) params.top_n_tokens = Math.floor(rnd() * 5);
    if (rnd() < 0.2) params.stop = [pick([" the", ".", "Lily", "zzz"])];
    if (rnd() < 0.2) params.details = true;
    let route, body;
    switch (kind) {
      case "gen": route = "/generate"; body = { inputs: p.prompt, parameters: params }; break;
      case "stream": route = "/generate_stream"; body = { inputs: p.prompt, parameters: params }; break;
      case "chat": case "chatstream":
        route = "/v1/chat/completions";
        body = { messages: [{ role: "user", content: p.prompt }], max_tokens: n, temperature: rnd() < 0.5 ? 0 : 0.7, stream: kind === "chatstream", logprobs: rnd() < 0.3, top_logprobs: 2 };
        break;
      case "compl": route = "/v1/completions"; body = { prompt: p.prompt, max_tokens: n, stream: rnd() < 0.5 }; break;
      default: route = "/generate"; body = pick(['{"inputs":', { inputs: p.prompt, parameters: { top_p: 7 } }, { inputs: [] }]); break;
    }
    const abortAfter = rnd() < 0.15 ? Math.floor(rnd() * 30) : -1;
    const payload = typeof body === "string" ? body : JSON.stringify(body);
    const res = await new Promise((resolve) => {
      const s = net.connect(new URL(url).port, "127.0.0.1");
      const chunks = [];
      let settled = false;
      const fin = (v) => { if (!settled) { settled = true; s.destroy(); resolve(v); } };
      s.on("connect", () => {
        s.write(`POST ${route} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(payload)}\r\n\r\n${payload}`);
        if (abortAfter === 0) fin({ aborted: true });
        else if (abortAfter > 0) setTimeout(() => fin({ aborted: true }), abortAfter);
      });
      s.on("data", (c) => chunks.push(c));
      // latin1 keeps one char per byte, so chunk sizes can be counted on the string
      s.on("end", () => fin({ raw: Buffer.concat(chunks).toString("latin1") }));
      s.on("error", () => fin({ raw: Buffer.concat(chunks).toString("latin1"), err: true }));
      s.setTimeout(120000, () => fin({ timeout: true }));
    });
    done++;
    if (res.aborted) return aborted++;
    if (!res.raw) return errors++;
    const status = statusOf(res.raw);
    const bodyText = res.raw.slice(res.raw.indexOf("\r\n\r\n") + 4);
    let good = false;
    try {
      if (kind === "bad") good = status === 400 || status === 422;
      else if (status !== 200) good = false;
      else if (/chunked/i.test(res.raw.slice(0, res.raw.indexOf("\r\n\r\n")))) {
        // de-chunk, then every data line must be JSON (or [DONE])
        let rest = bodyText, out = "";
        for (;;) {
          const nl = rest.indexOf("\r\n");
          const len = parseInt(rest.slice(0, nl), 16);
          if (!len) break;
          out += rest.slice(nl + 2, nl + 2 + len);
          rest = rest.slice(nl + 2 + len + 2);
        }
        const ds = sseData(Buffer.from(out, "latin1").toString("utf8"));
        good = ds.length > 0 && ds.every((d) => d === "[DONE]" || typeof JSON.parse(d) === "object");
        if (route === "/generate_stream") good = good && typeof JSON.parse(ds.at(-1)).generated_text === "string";
        else good = good && ds.at(-1) === "[DONE]";
      } else {
        const j = JSON.parse(Buffer.from(bodyText, "latin1").toString("utf8"));
        good = typeof j.generated_text === "string" || Array.isArray(j.choices);
      }
    } catch { good = false; }
    if (good) ok++;
    else {
      errors++;
      if (errors < 5) console.error("  soak: bad response", kind, status, JSON.stringify(body), JSON.stringify(res.raw.slice(-600)));
    }
  };
  const rss = () => {
    try { return Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${srv.proc.pid}/status`, "utf8"))[1]) / 1024; } catch { return NaN; }
  };
  const rss0 = rss();
  let rssMid = NaN;
  const t0 = Date.now();
  await Promise.all(Array.from({ length: 50 }, async () => {
    while (next < SOAK) {
      next++;
      if (next === SOAK >> 1) rssMid = rss();
      await one();
    }
  }));
  const rssEnd = rss();
  console.log(`  soak: server RSS ${rss0.toFixed(0)} MiB before, ${rssMid.toFixed(0)} MiB half-way, ${rssEnd.toFixed(0)} MiB after`);
  // memory flat after warm-up; under ASan the allocator's quarantine grows RSS by design (leaks are checked at exit)
  let asan = false;
  try { asan = /libasan/.test(fs.readFileSync(`/proc/${srv.proc.pid}/maps`, "utf8")); } catch {}
  if (!asan && Number.isFinite(rssMid) && SOAK >= 1000) check(rssEnd - rssMid < 16, `RSS flat in the second half of the soak: +${(rssEnd - rssMid).toFixed(1)} MiB`);
  console.log(`  soak: ${done} requests in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${ok} ok, ${aborted} disconnected on purpose, ${errors} bad`);
  eq(errors, 0, "soak: every completed response well formed");
  const r = await postJSON(url + "/generate", { inputs: P0.prompt, parameters: { max_new_tokens: 200 } });
  eq(JSON.parse(r.body).generated_text, P0.text, "greedy output unchanged after the soak");
  await sleep(300);
  const m = parseMetrics((await request("GET", url + "/metrics")).body);
  eq(m["ignis_kv_blocks_used"], 0, "no KV blocks held after the soak");
};

// JSON mode (TGI's grammar {"type": "json", "value": {}}, OpenAI's response_format json_object): the text is one JSON
// object when the request ends on EOS, the same bytes every time for a seeded request; what it cannot do is a 422
groups.json = async (url) => {
  const ask = (extra) => postJSON(url + "/generate", { inputs: P0.prompt, parameters: { max_new_tokens: 300,
    grammar: { type: "json", value: {} }, details: true, ...extra } });
  let closed = 0;
  for (const extra of [{}, { do_sample: true, seed: 3, temperature: 1.2 }, { do_sample: true, seed: 4 }, { repetition_penalty: 1.3 }]) {
    const r = await ask(extra);
    eq(r.status, 200, "json mode: status");
    const j = JSON.parse(r.body);
    const t = j.generated_text;
    check(/^\s*\{/.test(t), `json mode: starts an object: ${JSON.stringify(t).slice(0, 80)}`);
    if (j.details.finish_reason === "eos_token") {
      closed++;
      let v = null;
      try { v = JSON.parse(t); } catch (e) { check(false, `json mode: ${e} in ${JSON.stringify(t).slice(0, 200)}`); }
      check(v !== null && typeof v === "object" && !Array.isArray(v), "json mode: an object");
    } else {
      eq(j.details.finish_reason, "length", "json mode: otherwise the length ran out");
    }
    if (extra.seed) eq(JSON.parse((await ask(extra)).body).generated_text, t, "json mode: seeded, the same text again");
  }
  console.log(`  json mode: ${closed} of 4 objects closed within 300 tokens (stories260K likes whitespace and long strings)`);
  const bad = await postJSON(url + "/generate", { inputs: "x", parameters: { grammar: { type: "json", value: { type: "integer", minimum: 3 } } } });
  eq(bad.status, 422, "json schema with 'minimum' -> 422");
  check(/grammar: schema: .*minimum/.test(JSON.parse(bad.body).error), "its message: " + bad.body);
};

// Regex grammars (TGI's {"type": "regex"}): a bounded pattern must be matched to its end by any model, so each reply
// is checked whole against JavaScript's own RegExp (anchored) and must end on EOS.
groups.regex = async (url) => {
  const PATS = [
    "(yes|no), [0-9]{1,3} (cats|dogs)\\.",
    "[A-Z][a-z]{2,8}( [a-z]{1,6}){0,3}!",
    "\\d{4}-\\d{2}-\\d{2}",
    "(red|green|blue|caf\u00e9)(, (red|green|blue|caf\u00e9)){0,2}",
  ];
  for (const [k, pat] of PATS.entries()) {
    const re = new RegExp("^(?:" + pat + ")$", "u");
    for (const extra of [{}, { do_sample: true, seed: 11 + k, temperature: 1.3 }]) {
      const body = { inputs: PROMPTS[k % PROMPTS.length].prompt, parameters: { max_new_tokens: 64, grammar: { type: "regex", value: pat }, details: true, ...extra } };
      const r = await postJSON(url + "/generate", body);
      eq(r.status, 200, `regex ${pat}: status`);
      const j = JSON.parse(r.body);
      check(re.test(j.generated_text), `regex ${pat}: ${JSON.stringify(j.generated_text)} matches`);
      eq(j.details.finish_reason, "eos_token", `regex ${pat}: the match is complete, then EOS`);
      if (extra.seed) eq(JSON.parse((await postJSON(url + "/generate", body)).body).generated_text, j.generated_text, `regex ${pat}: seeded, the same text again`);
    }
  }
  // streamed, and through the chat route (TGI's response_format takes a regex too)
  const st = await postJSON(url + "/generate_stream", { inputs: P0.prompt, parameters: { max_new_tokens: 64, grammar: { type: "regex", value: PATS[0] } } });
  const ev = sseData(st.body).map((d) => JSON.parse(d));
  const last = ev[ev.length - 1];
  check(new RegExp("^(?:" + PATS[0] + ")$").test(last.generated_text ?? ""), "regex stream: " + JSON.stringify(last.generated_text));
  const c = await postJSON(url + "/v1/chat/completions", { messages: [{ role: "user", content: P1.prompt }], max_tokens: 64,
    response_format: { type: "regex", value: PATS[2] } });
  eq(c.status, 200, "regex chat: status");
  check(/^\d{4}-\d{2}-\d{2}$/.test(JSON.parse(c.body).choices[0].message.content), "regex chat: " + c.body.slice(0, 200));
  // vLLM's guided_* fields (OpenAI clients send them as extra_body): the choice is one of the strings exactly, its
  // punctuation taken literally
  const CHOICES = ["yes.", "no (maybe)", "a|b*", "caf\u00e9?"];
  for (const seed of [1, 2, 3]) {
    const g = await postJSON(url + "/v1/chat/completions", { messages: [{ role: "user", content: P0.prompt }], max_tokens: 20, seed,
      temperature: 1.2, guided_choice: CHOICES });
    eq(g.status, 200, "guided_choice: status");
    check(CHOICES.includes(JSON.parse(g.body).choices[0].message.content), "guided_choice: " + g.body.slice(0, 300));
  }
  const gr = await postJSON(url + "/v1/completions", { prompt: P1.prompt, max_tokens: 30, guided_regex: "[0-9]{3}-[a-z]{2}" });
  check(/^[0-9]{3}-[a-z]{2}$/.test(JSON.parse(gr.body).choices?.[0]?.text), "guided_regex: " + gr.body.slice(0, 300));
  // what the automaton cannot do is a 422 that says why
  for (const [pat, why] of [["(a)\\1", /backreference/], ["(?=a)b", /lookahead|lookaround/], ["a{5000}", /1000|repetition|count/], ["(a", /\)|parenthes|group/]]) {
    const bad = await postJSON(url + "/generate", { inputs: "x", parameters: { grammar: { type: "regex", value: pat } } });
    eq(bad.status, 422, `regex ${pat} -> 422`);
    check(/^grammar: regex: /.test(JSON.parse(bad.body).error) && why.test(bad.body), `regex ${pat}: ${bad.body}`);
  }
  // compiling a grammar is a validation worker's job, not the event loop's: /health, asked after a request whose
  // pattern takes long to refuse (nested counted repeats: ~0.2 s in a release build, seconds under ASan), answers
  // before it. When the loop compiled while parsing, the 422 went out first and /health waited for it.
  const SLOW = "[-a]+(\\W{2}|[-a][^\\w]+(?:[^a]{1,3}\\S){1,3}){1,3}";
  let slowAt = 0;
  const slow = postJSON(url + "/generate", { inputs: "x", parameters: { max_new_tokens: 3, grammar: { type: "regex", value: SLOW } } })
    .then((r) => ((slowAt = Date.now()), r));
  await sleep(30);
  const h = await request("GET", url + "/health");
  const healthAt = Date.now();
  const sr = await slow;
  eq(h.status, 200, "/health while a grammar compiles");
  eq(sr.status, 422, "the slow pattern: 422");
  check(/^grammar: regex: /.test(JSON.parse(sr.body).error ?? ""), "the slow pattern's reason: " + sr.body.slice(0, 200));
  check(healthAt < slowAt, `/health answered ${slowAt - healthAt} ms before the slow pattern's 422 (the loop did not compile it)`);
  // the constrained rows' masks show in /metrics: needed, walked (not cached), kept
  const gm = parseMetrics((await request("GET", url + "/metrics")).body);
  check(gm["ignis_grammar_masks_total"] > 0, "ignis_grammar_masks_total " + gm["ignis_grammar_masks_total"]);
  check(gm["ignis_grammar_mask_walks_total"] > 0 && gm["ignis_grammar_mask_walks_total"] < gm["ignis_grammar_masks_total"],
    `mask walks ${gm["ignis_grammar_mask_walks_total"]} of ${gm["ignis_grammar_masks_total"]} masks`);
  check(gm["ignis_grammar_mask_cache_entries"] > 0, "ignis_grammar_mask_cache_entries " + gm["ignis_grammar_mask_cache_entries"]);
};

// JSON schemas and tool calls: a schema whose documents are all short (enums, booleans, bounded arrays) must be
// followed to its end by any model, so each reply is checked as a whole: it parses, keys in the schema's order,
// every value allowed, and the request ended on EOS.
const SCHEMA = {
  type: "object",
  properties: {
    mood: { enum: ["happy", "sad", "sleepy"] },
    ok: { type: "boolean" },
    n: { enum: [1, 2, 12] },
    pets: { type: "array", items: { enum: ["cat", "dog"] }, minItems: 1, maxItems: 3 },
    note: { anyOf: [{ type: "null" }, { enum: ["hi", "bye"] }] },
  },
  required: ["mood", "ok", "n", "pets"],
  additionalProperties: false,
};
function followsSchema(v, what) {
  check(v !== null && typeof v === "object" && !Array.isArray(v), `${what}: an object`);
  const keys = Object.keys(v ?? {});
  const order = Object.keys(SCHEMA.properties);
  check(keys.every((k, i) => order.includes(k) && (i === 0 || order.indexOf(keys[i - 1]) < order.indexOf(k))), `${what}: keys in order: ${keys}`);
  check(SCHEMA.required.every((k) => keys.includes(k)), `${what}: required keys: ${keys}`);
  check(SCHEMA.properties.mood.enum.includes(v?.mood), `${what}: mood ${v?.mood}`);
  check(typeof v?.ok === "boolean", `${what}: ok`);
  check([1, 2, 12].includes(v?.n), `${what}: n ${v?.n}`);
  check(Array.isArray(v?.pets) && v.pets.length >= 1 && v.pets.length <= 3 && v.pets.every((p) => p === "cat" || p === "dog"), `${what}: pets ${JSON.stringify(v?.pets)}`);
  check(!("note" in (v ?? {})) || v.note === null || v.note === "hi" || v.note === "bye", `${what}: note`);
}
const WEATHER = { type: "function", function: { name: "get_weather", description: "The weather in a city", parameters: { type: "object", properties: { city: { enum: ["Paris", "Oslo"] }, unit: { enum: ["C", "F"] } }, required: ["city", "unit"] } } };
const TIME = { type: "function", function: { name: "get_time", parameters: { type: "object", properties: { zone: { enum: ["UTC", "CET"] } }, required: ["zone"] } } };
function isCall(c, what, names = ["get_weather", "get_time"]) {
  check(c?.type === "function" && /^call_/.test(c?.id ?? ""), `${what}: a function call with an id`);
  check(names.includes(c?.function?.name), `${what}: tool name ${c?.function?.name}`);
  let a = null;
  try { a = JSON.parse(c?.function?.arguments); } catch (e) { check(false, `${what}: arguments ${e}`); }
  if (c?.function?.name === "get_weather") check(["Paris", "Oslo"].includes(a?.city) && ["C", "F"].includes(a?.unit), `${what}: weather arguments ${c?.function?.arguments}`);
  else check(["UTC", "CET"].includes(a?.zone), `${what}: time arguments ${c?.function?.arguments}`);
}
groups.schema = async (url) => {
  for (const extra of [{}, { do_sample: true, seed: 5, temperature: 1.5 }, { repetition_penalty: 1.5 }]) {
    const r = await postJSON(url + "/generate", { inputs: P0.prompt, parameters: { max_new_tokens: 300, grammar: { type: "json", value: SCHEMA }, details: true, ...extra } });
    eq(r.status, 200, "schema: status");
    const j = JSON.parse(r.body);
    eq(j.details.finish_reason, "eos_token", "schema: the document is complete, then EOS");
    let v = null;
    try { v = JSON.parse(j.generated_text); } catch (e) { check(false, `schema: ${e} in ${JSON.stringify(j.generated_text)}`); }
    followsSchema(v, "schema /generate");
    if (extra.seed) {
      const again = await postJSON(url + "/generate", { inputs: P0.prompt, parameters: { max_new_tokens: 300, grammar: { type: "json", value: SCHEMA }, ...extra } });
      eq(JSON.parse(again.body).generated_text, j.generated_text, "schema: seeded, the same text again");
    }
  }
  const client = new OpenAI({ baseURL: url + "/v1", apiKey: "unused" });
  const c = await client.chat.completions.create({ model: "x", messages: [{ role: "user", content: P1.prompt }], max_tokens: 300,
    response_format: { type: "json_schema", json_schema: { name: "pets", strict: true, schema: SCHEMA } } });
  eq(c.choices[0].finish_reason, "stop", "schema chat: finish");
  let v = null;
  try { v = JSON.parse(c.choices[0].message.content); } catch (e) { check(false, `schema chat: ${e}`); }
  followsSchema(v, "schema chat");
  // several requests with the schema at once, and with other traffic, each alone valid
  const many = await Promise.all([0, 1, 2, 3, 4, 5].map((k) => postJSON(url + "/generate", { inputs: PROMPTS[k % PROMPTS.length].prompt,
    parameters: k % 2 ? { max_new_tokens: 40 } : { max_new_tokens: 300, do_sample: true, seed: k, grammar: { type: "json", value: SCHEMA } } })));
  many.forEach((r, k) => { if (k % 2 === 0) followsSchema(JSON.parse(JSON.parse(r.body).generated_text), `schema concurrent ${k}`); });
  // "pattern": the string contains a match (a search, as JSON Schema says; ^ and $ anchor it)
  const PSCHEMA = { type: "object", properties: { code: { type: "string", pattern: "^[A-Z]{3}-[0-9]{2,4}$" }, note: { type: "string", pattern: "ok" } }, required: ["code", "note"] };
  for (const seed of [1, 2]) {
    const r = await postJSON(url + "/generate", { inputs: P2.prompt, parameters: { max_new_tokens: 300, do_sample: true, seed, grammar: { type: "json", value: PSCHEMA }, details: true } });
    eq(r.status, 200, "pattern: status");
    const j = JSON.parse(r.body);
    if (j.details.finish_reason === "eos_token") {
      let v = null;
      try { v = JSON.parse(j.generated_text); } catch (e) { check(false, `pattern: ${e} in ${JSON.stringify(j.generated_text)}`); }
      check(/^[A-Z]{3}-[0-9]{2,4}$/.test(v?.code) && /ok/.test(v?.note), "pattern: " + j.generated_text);
    } else {
      eq(j.details.finish_reason, "length", "pattern: otherwise the length ran out");
    }
  }
  const bad = await postJSON(url + "/v1/chat/completions", { messages: [{ role: "user", content: "x" }],
    response_format: { type: "json_schema", json_schema: { name: "s", schema: { type: "string", format: "date" } } } });
  eq(bad.status, 422, "schema with a format -> 422");
  check(/format/.test(bad.body), "its message names the keyword: " + bad.body);
};

groups.tools = async (url) => {
  const client = new OpenAI({ baseURL: url + "/v1", apiKey: "unused" });
  // stories260K's template does not read `tools`, so they go into the last message; TGI's tool_prompt set short
  // keeps the prompt within the model's 512 tokens
  const tool_prompt = "Tools:";
  const messages = [{ role: "user", content: "What is the weather in Paris?" }];
  // required: the reply is a call of one of the tools
  for (const extra of [{}, { temperature: 1.3, seed: 9 }]) {
    const c = await client.chat.completions.create({ model: "x", messages, max_tokens: 150, tool_prompt, tools: [WEATHER, TIME], tool_choice: "required", ...extra });
    eq(c.choices[0].finish_reason, "tool_calls", "tools required: finish_reason");
    check(c.choices[0].message.content === null, "tools required: content null");
    eq(c.choices[0].message.tool_calls?.length, 1, "tools required: one call");
    isCall(c.choices[0].message.tool_calls?.[0], "tools required");
  }
  // OpenAI's legacy functions / function_call: taken as tools / tool_choice, answered as message.function_call with
  // finish_reason "function_call" (streamed: one chunk with delta.function_call); legacy turns (an assistant's
  // function_call, a "function" message) reach the template
  const legacy = { messages, max_tokens: 150, tool_prompt, seed: 3, functions: [WEATHER.function, TIME.function], function_call: { name: "get_weather" } };
  const lf = JSON.parse((await postJSON(url + "/v1/chat/completions", legacy)).body);
  eq(lf.choices?.[0]?.finish_reason, "function_call", "legacy functions: finish_reason function_call");
  eq(lf.choices?.[0]?.message?.function_call?.name, "get_weather", "legacy functions: message.function_call.name");
  check(typeof JSON.parse(lf.choices?.[0]?.message?.function_call?.arguments ?? "null")?.city === "string", "legacy functions: arguments a JSON string");
  check(!("tool_calls" in (lf.choices?.[0]?.message ?? {})), "legacy functions: no tool_calls");
  const ls = await postJSON(url + "/v1/chat/completions", { ...legacy, stream: true });
  const lsd = sseData(ls.body).filter((d) => d !== "[DONE]").map((d) => JSON.parse(d));
  const lfc = lsd.find((d) => d.choices?.[0]?.delta?.function_call)?.choices[0];
  eq(lfc?.finish_reason, "function_call", "legacy functions streamed: one function_call chunk");
  eq(lfc?.delta?.function_call?.arguments, lf.choices?.[0]?.message?.function_call?.arguments, "legacy functions streamed: the same arguments");
  const lh = await postJSON(url + "/v1/chat/completions", { tool_prompt, max_tokens: 5, functions: [WEATHER.function], messages: [...messages,
    { role: "assistant", content: null, function_call: { name: "get_weather", arguments: '{"city":"Paris","unit":"C"}' } },
    { role: "function", name: "get_weather", content: "sunny" }] });
  eq(lh.status, 200, "legacy turns in the history");
  eq((await postJSON(url + "/v1/chat/completions", { ...legacy, function_call: 5 })).status, 422, "function_call 5 -> 422");
  // parallel_tool_calls false is taken (a reply's first call only; a required call is one anyway), a non-boolean a 422
  const np = await client.chat.completions.create({ model: "x", messages, max_tokens: 150, tool_prompt, tools: [WEATHER, TIME], tool_choice: "required", parallel_tool_calls: false });
  eq(np.choices[0].message.tool_calls?.length, 1, "parallel_tool_calls false: one call");
  eq((await postJSON(url + "/v1/chat/completions", { messages, max_tokens: 5, tools: [WEATHER], parallel_tool_calls: "no" })).status, 422, "parallel_tool_calls \"no\" -> 422");
  // a named function
  const named = await client.chat.completions.create({ model: "x", messages, max_tokens: 150, tool_prompt, tools: [WEATHER, TIME], tool_choice: { type: "function", function: { name: "get_time" } } });
  isCall(named.choices[0].message.tool_calls?.[0], "tools named", ["get_time"]);
  // streamed: the call arrives in delta.tool_calls, finish_reason tool_calls, then [DONE]
  // as it is written: the id and name in a first delta, then the arguments in pieces; joined, the call the
  // non-streamed request with the same seed gives
  const SAME = { temperature: 1.3, seed: 9 };
  const stream = await client.chat.completions.create({ model: "x", messages, max_tokens: 150, tool_prompt, tools: [WEATHER], tool_choice: "required", stream: true, ...SAME });
  const whole = await client.chat.completions.create({ model: "x", messages, max_tokens: 150, tool_prompt, tools: [WEATHER], tool_choice: "required", ...SAME });
  const calls = [];
  let finish = null, content = "", callChunks = 0;
  for await (const ch of stream) {
    const d = ch.choices[0]?.delta ?? {};
    content += d.content ?? "";
    if (d.tool_calls?.length) callChunks++;
    for (const tc of d.tool_calls ?? []) {
      const slot = (calls[tc.index] ??= { id: "", type: "function", function: { name: "", arguments: "" } });
      if (tc.id) slot.id = tc.id;
      if (tc.function?.name) slot.function.name += tc.function.name;
      if (tc.function?.arguments) slot.function.arguments += tc.function.arguments;
    }
    if (ch.choices[0]?.finish_reason) finish = ch.choices[0].finish_reason;
  }
  eq(finish, "tool_calls", "tools stream: finish_reason");
  eq(content, "", "tools stream: no text");
  eq(calls.length, 1, "tools stream: one call");
  isCall(calls[0], "tools stream", ["get_weather"]);
  check(callChunks >= 3, `tools stream: the call came in ${callChunks} chunks`);
  const wc = whole.choices[0].message.tool_calls?.[0];
  eq(calls[0]?.function.name, wc?.function.name, "tools stream: the same name as unstreamed");
  eq(JSON.stringify(JSON.parse(calls[0]?.function.arguments ?? "null")), JSON.stringify(JSON.parse(wc?.function.arguments ?? "null")),
    "tools stream: the same arguments as unstreamed");
  // auto: stories260K answers in prose, which stays text (streamed and not)
  const auto = await client.chat.completions.create({ model: "x", messages: [{ role: "user", content: P0.prompt }], max_tokens: 30, temperature: 0, tool_prompt, tools: [WEATHER] });
  check(typeof auto.choices[0].message.content === "string" && auto.choices[0].message.content.length > 0, "tools auto: text reply");
  check(!auto.choices[0].message.tool_calls?.length, "tools auto: no calls");
  const autoStream = await client.chat.completions.create({ model: "x", messages: [{ role: "user", content: P0.prompt }], max_tokens: 30, temperature: 0, tool_prompt, tools: [WEATHER], stream: true });
  let autoText = "";
  for await (const ch of autoStream) autoText += ch.choices[0]?.delta?.content ?? "";
  eq(autoText, auto.choices[0].message.content, "tools auto: the stream gives the same text");
  // a conversation that carries a call and its result back in
  const follow = await client.chat.completions.create({ model: "x", max_tokens: 10, temperature: 0, tool_prompt, tools: [WEATHER], messages: [...messages,
    { role: "assistant", content: null, tool_calls: [{ id: "call_1", type: "function", function: { name: "get_weather", arguments: "{\"city\":\"Paris\",\"unit\":\"C\"}" } }] },
    { role: "tool", tool_call_id: "call_1", content: "21 C and sunny" }] });
  check(typeof follow.choices[0].message.content === "string", "tools: a follow-up turn after a tool result");
  const bad = await postJSON(url + "/v1/chat/completions", { messages, tools: [WEATHER], tool_choice: { type: "function", function: { name: "nope" } } });
  eq(bad.status, 422, "tools: an unknown named function -> 422");
  check(/no tool is named 'nope'/.test(bad.body), "its message: " + bad.body);

  // a model whose template reads `tools` and asks for {"name": ..., "parameters": ...} (as Llama 3.1's does): the
  // tools reach the template, and a required call is written with "parameters"
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ignis-tools-"));
  for (const f of fs.readdirSync(MODEL)) if (f !== "tokenizer_config.json") fs.symlinkSync(path.resolve(MODEL, f), path.join(dir, f));
  const tc = JSON.parse(fs.readFileSync(path.join(MODEL, "tokenizer_config.json"), "utf8"));
  tc.chat_template = "{{ bos_token }}{% if tools %}Tools: {{ tools | length }}. Reply as {\"name\": function name, \"parameters\": " +
    "its arguments}.\n{% endif %}{% for message in messages %}{{ message['content'] }}{% endfor %}";
  fs.writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify(tc));
  const srv2 = await startServer(BIN, ["--model-id", dir]);
  try {
    const c2 = new OpenAI({ baseURL: srv2.url + "/v1", apiKey: "unused" });
    const r = await c2.chat.completions.create({ model: "x", messages, max_tokens: 150, tools: [WEATHER, TIME], tool_choice: "required", logprobs: true });
    eq(r.choices[0].finish_reason, "tool_calls", "tools, template asking for parameters: finish_reason");
    isCall(r.choices[0].message.tool_calls?.[0], "tools, template asking for parameters");
    const raw = (r.choices[0].logprobs?.content ?? []).map((t) => t.token).join("");
    check(/"parameters"/.test(raw) && !/"arguments"/.test(raw), `the call was written with "parameters": ${JSON.stringify(raw).slice(0, 200)}`);
    // the template read the tools (2 of them) instead of getting them appended to the message
    const plain = await c2.chat.completions.create({ model: "x", messages, max_tokens: 1, tools: [WEATHER, TIME], tool_choice: "none" });
    const none = await c2.chat.completions.create({ model: "x", messages, max_tokens: 1 });
    check(plain.usage.prompt_tokens > none.usage.prompt_tokens && plain.usage.prompt_tokens < none.usage.prompt_tokens + 120, /* the tools as JSON would be 300+ */
      `the template's short tool line, not the appended tools: ${plain.usage.prompt_tokens} vs ${none.usage.prompt_tokens} prompt tokens`);
  } finally {
    await stopServer(srv2);
    fs.rmSync(dir, { recursive: true, force: true });
  }
};

// vLLM's chat template fields: chat_template_kwargs, add_generation_prompt, continue_final_message, documents, and a
// request's own chat_template (refused unless the server runs with --trust-request-chat-template), on /chat_tokenize
// (its templated_text) and on /v1/chat/completions (the same prompt: its token count, its continuation)
groups.chattemplate = async (url) => {
  const tok = async (u, body) => {
    const r = await postJSON(u + "/chat_tokenize", body);
    const j = JSON.parse(r.body);
    return { status: r.status, text: j.templated_text, n: j.tokenize_response?.length, error: j.error, etype: j.error_type };
  };
  const chat = async (u, body) => JSON.parse((await postJSON(u + "/v1/chat/completions", { max_tokens: 12, temperature: 0, ...body })).body);
  const hi = [{ role: "user", content: "Hi" }];
  const cont = [...hi, { role: "assistant", content: "Once upon a time" }];
  const refused = async (u, body, msg, what) => {
    for (const route of ["/v1/chat/completions", "/chat_tokenize"]) {
      const r = await postJSON(u + route, body);
      eq(r.status, 422, `${what}: 422 on ${route}`);
      const j = JSON.parse(r.body);
      eq(typeof j.error === "string" ? j.error : j.error?.message, msg, `${what}: its message on ${route}`);
    }
  };
  // the default server (stories260K's template, request templates not trusted)
  await refused(url, { messages: hi, chat_template: "{{ messages[0].content }}" },
    "Chat template is passed with request, but --trust-request-chat-template is not set. Refused request with untrusted chat template.",
    "an untrusted chat_template");
  await refused(url, { messages: cont, continue_final_message: true },
    "Cannot set both `continue_final_message` and `add_generation_prompt` to True.", "continue_final_message alone");
  await refused(url, { messages: hi, chat_template_kwargs: [1] },
    "Failed to deserialize the JSON body into the target type: chat_template_kwargs: invalid type: sequence, expected a map",
    "chat_template_kwargs a list");
  await refused(url, { messages: hi, chat_template_kwargs: { chat_template: "x" } },
    "Found unexpected chat template kwargs from request: {'chat_template'}", "chat_template among the kwargs");
  await refused(url, { messages: hi, documents: [{ title: "A" }, 3] },
    "Failed to deserialize the JSON body into the target type: documents[1]: invalid type: integer `3`, expected a map",
    "a document not an object");
  // a continued message: the prompt ends with its text, and the reply continues it exactly as /v1/completions does
  // the same text
  const ct = await tok(url, { messages: cont, add_generation_prompt: false, continue_final_message: true });
  eq(ct.text, "<s>Hi\nOnce upon a time", "continue_final_message: the prompt ends with the message's text");
  const client = new OpenAI({ baseURL: url + "/v1", apiKey: "unused" });
  const cc = await client.chat.completions.create({ model: "x", messages: cont, max_tokens: 12, temperature: 0,
    add_generation_prompt: false, continue_final_message: true });
  const pc = await client.completions.create({ model: "x", prompt: "Hi\nOnce upon a time", max_tokens: 12, temperature: 0 });
  eq(cc.choices[0].message.content, pc.choices[0].text, "continue_final_message: the reply continues the message");
  eq(cc.usage.prompt_tokens, ct.n, "continue_final_message: the chat prompt is the templated text");
  const cs = await postJSON(url + "/v1/chat/completions", { messages: cont, max_tokens: 12, temperature: 0,
    add_generation_prompt: false, continue_final_message: true, stream: true });
  eq(sseData(cs.body).filter((d) => d !== "[DONE]").map((d) => JSON.parse(d).choices?.[0]?.delta?.content ?? "").join(""),
    cc.choices[0].message.content, "continue_final_message streamed: the same reply");

  // a model whose template prints what it is given (--tokenizer-config-path), with request templates trusted
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ignis-chattemplate-"));
  const T = "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}</{{ m.role }}>{% endfor %}" +
    "{% for d in documents or [] %}[doc {{ d.title }}: {{ d.text }}]{% endfor %}" +
    "{% if enable_thinking is defined %}[thinking={{ enable_thinking }}]{% endif %}" +
    "{% if tools %}[{{ tools | length }} tools]{% endif %}{% if add_generation_prompt %}<assistant>{% endif %}";
  fs.writeFileSync(path.join(dir, "tc.json"), JSON.stringify({ bos_token: "<s>", eos_token: "</s>", chat_template: [
    { name: "default", template: T }, { name: "rag", template: "RAG{% for d in documents %}({{ d.text }}){% endfor %}" }] }));
  const srv2 = await startServer(BIN, ["--tokenizer-config-path", path.join(dir, "tc.json"), "--trust-request-chat-template"]);
  try {
    const u = srv2.url;
    const cases = [
      ["chat_template_kwargs", { messages: hi, chat_template_kwargs: { enable_thinking: false } }, "<s><user>Hi</user>[thinking=False]<assistant>"],
      ["the request's fields win over kwargs of the same names", { messages: hi, chat_template_kwargs: { add_generation_prompt: false, enable_thinking: true } },
        "<s><user>Hi</user>[thinking=True]<assistant>"],
      ["add_generation_prompt false", { messages: hi, add_generation_prompt: false }, "<s><user>Hi</user>"],
      ["continue_final_message", { messages: cont, add_generation_prompt: false, continue_final_message: true }, "<s><user>Hi</user><assistant>Once upon a time"],
      ["continue_final_message, trailing space kept", { messages: [...hi, { role: "assistant", content: "Once upon " }], add_generation_prompt: false,
        continue_final_message: true }, "<s><user>Hi</user><assistant>Once upon "],
      ["documents", { messages: hi, documents: [{ title: "A", text: "alpha" }, { title: "B", text: "beta" }] },
        "<s><user>Hi</user>[doc A: alpha][doc B: beta]<assistant>"],
      ["a request's chat_template", { messages: cont, chat_template: "{{ messages | map(attribute='content') | join('|') }}{{ x }}!", chat_template_kwargs: { x: 7 } },
        "Hi|Once upon a time7!"],
      ["a request's chat_template, continued", { messages: cont, chat_template: "{% for m in messages %}[{{ m.content }}]{% endfor %}",
        add_generation_prompt: false, continue_final_message: true }, "[Hi][Once upon a time"],
      ["a chat_template naming one of the model's", { messages: hi, chat_template: "rag", documents: [{ text: "d1" }, { text: "d2" }] }, "RAG(d1)(d2)"],
      ["an empty chat_template: the model's", { messages: hi, chat_template: "" }, "<s><user>Hi</user><assistant>"],
      ["tools read by the template, with kwargs", { messages: hi, tools: [WEATHER, TIME], chat_template_kwargs: { enable_thinking: true } },
        "<s><user>Hi</user>[thinking=True][2 tools]<assistant>"],
      ["tools with a request template that does not read them: in the last message", { messages: hi, tools: [TIME], tool_prompt: "T:",
        chat_template: "({{ messages[-1].content }})" }, `(Hi\n\nT:\n${JSON.stringify([TIME])})`],
      ["... and in the one before a continued message", { messages: cont, tools: [TIME], tool_prompt: "T:", add_generation_prompt: false,
        continue_final_message: true, chat_template: "{% for m in messages %}({{ m.content }}){% endfor %}" },
        `(Hi\n\nT:\n${JSON.stringify([TIME])})(Once upon a time`],
    ];
    for (const [what, body, want] of cases) {
      const t = await tok(u, body);
      eq(t.text, want, `${what}: templated_text`);
      const c = await chat(u, body); // the chat route renders the same prompt
      eq(c.usage?.prompt_tokens, t.n, `${what}: the chat prompt (${c.error?.message ?? ""})`);
    }
    // the template's errors: 422 template_error, with the parse error or the message; the limits of a model's template
    for (const [what, body, msg] of [
      ["a chat_template that does not parse", { messages: hi, chat_template: "{{ messages[0].content " },
        "Template error: chat_template: template syntax error, line 1: unexpected end of template, expected '}}'"],
      ["raise_exception", { messages: hi, chat_template: "{{ raise_exception('no system role') }}" }, "Template error: no system role"],
      ["the step limit", { messages: hi, chat_template: "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}" },
        "Template error: template exceeded the step limit (1000000)"],
      ["a continued message the template drops", { messages: cont, add_generation_prompt: false, continue_final_message: true, chat_template: "{{ messages[0].content }}" },
        "Template error: continue_final_message is set but the final message does not appear in the chat after applying the chat template! This can happen if the chat template deletes portions of the final message. Please verify the chat template and final message in your chat to ensure they are compatible."],
      ["a final message without text", { messages: [...hi, { role: "assistant", content: null, tool_calls: [{ id: "c", type: "function", function: { name: "get_time", arguments: "{}" } }] }],
        add_generation_prompt: false, continue_final_message: true }, "Template error: continue_final_message is set but we could not find any text to continue in the final message!"],
    ]) {
      const t = await tok(u, body);
      check(t.status === 422 && t.error === msg && t.etype === "template_error", `${what}: /chat_tokenize ${t.status} ${t.error}`);
      const r = await postJSON(u + "/v1/chat/completions", body);
      check(r.status === 422 && JSON.parse(r.body).error?.message === msg, `${what}: chat ${r.status} ${r.body.slice(0, 200)}`);
    }
    // a required tool call with the fields: still a call
    const tc = new OpenAI({ baseURL: u + "/v1", apiKey: "unused" });
    const r = await tc.chat.completions.create({ model: "x", messages: hi, max_tokens: 150, tools: [WEATHER], tool_choice: "required",
      chat_template_kwargs: { enable_thinking: false }, documents: [{ title: "A", text: "a" }] });
    eq(r.choices[0].finish_reason, "tool_calls", "tools required with kwargs and documents: finish_reason");
    isCall(r.choices[0].message.tool_calls?.[0], "tools required with kwargs and documents", ["get_weather"]);
  } finally {
    await stopServer(srv2);
    fs.rmSync(dir, { recursive: true, force: true });
  }
};

// ---- main ------------------------------------------------------------------------------------------------------

const order = ["tgi", "curl", "openai", "hf", "bad", "cancel", "metrics", "concurrent", "json", "schema", "regex", "tools", "chattemplate",
  "soak"];
const t0 = Date.now();
const srv = await startServer(BIN, ["--client-timeout", "3"]);
for (const g of order) {
  if (ONLY && !ONLY.includes(g)) continue;
  const tg = Date.now();
  try {
    await groups[g](srv.url, srv);
  } catch (e) {
    check(false, `${g}: ${e.stack || e}`);
  }
  check(srv.proc.exitCode === null, `${g}: the server is still running`);
  console.log(`${g}: ${((Date.now() - tg) / 1000).toFixed(1)} s, ${summary().failures} failure(s) so far`);
}
// graceful shutdown: an in-flight stream finishes, then exit 0
if (!ONLY || ONLY.includes("shutdown")) {
  // a stream that has started (its first event read) is in flight for sure when SIGTERM comes
  let started;
  const first = new Promise((resolve) => (started = resolve));
  const inflight = new Promise((resolve) => {
    const body = JSON.stringify({ inputs: P0.prompt, parameters: { max_new_tokens: 400, ignore_eos: true } });
    const s = net.connect(srv.port, "127.0.0.1");
    const got = [];
    s.on("connect", () => s.write(`POST /generate_stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: ${body.length}\r\n\r\n${body}`));
    s.on("data", (d) => {
      got.push(d);
      started();
    });
    s.on("error", () => {});
    s.on("close", () => {
      const text = Buffer.concat(got).toString("utf8");
      resolve({ status: statusOf(text), body: text });
    });
  });
  await first;
  const ex = await stopServer(srv, "SIGTERM");
  const r = await inflight;
  check(/"generated_text":"/.test(r.body) && /"index":400,/.test(r.body), "the in-flight stream ran to its end: " + r.body.slice(-300));
  eq(r.status, 200, "in-flight request finished during shutdown");
  eq(ex.code, 0, "exit code 0 after SIGTERM");
  if (ex.code !== 0) console.error(srv.log().slice(-3000));
} else {
  await stopServer(srv);
}
// API key: its own server
if (!ONLY || ONLY.includes("auth")) {
  const a = await startServer(BIN, [], { API_KEY: "s3cret", IGNIS_TEST_LOAD_DELAY_MS: "500" });
  check(a.sawHealth503, "/health answered 503 while the model was loading");
  eq((await postJSON(a.url + "/generate", { inputs: "x", parameters: { max_new_tokens: 1 } })).status, 401, "no key -> 401");
  eq((await postJSON(a.url + "/generate", { inputs: "x", parameters: { max_new_tokens: 1 } }, { Authorization: "Bearer wrong" })).status, 401, "wrong key -> 401");
  eq((await postJSON(a.url + "/generate", { inputs: "x", parameters: { max_new_tokens: 1 } }, { Authorization: "Bearer s3cret" })).status, 200, "right key -> 200");
  eq((await request("GET", a.url + "/health")).status, 200, "/health stays open");
  const oc = new OpenAI({ baseURL: a.url + "/v1", apiKey: "s3cret" });
  const c = await oc.completions.create({ model: "x", prompt: P0.prompt, max_tokens: 5, temperature: 0 });
  check(isPrefix(c.choices[0].text, P0), "openai client sends the key");
  eq((await stopServer(a, "SIGINT")).code, 0, "exit 0 after SIGINT");
}
// a small KV budget: sequences get preempted (recomputed) and every output is still exact
if (!ONLY || ONLY.includes("preempt")) {
  const p = await startServer(BIN, ["--max-batch-total-tokens", "1024", "--max-batch-prefill-tokens", "600"]);
  const seeded = { do_sample: true, temperature: 0.8, top_k: 40, seed: 99 };
  const alone = JSON.parse((await postJSON(p.url + "/generate", { inputs: P1.prompt, parameters: { max_new_tokens: 150, ...seeded } })).body).generated_text;
  const jobs = Array.from({ length: 24 }, (_, i) => (i % 4 === 3
    ? { body: { inputs: P1.prompt, parameters: { max_new_tokens: 150, ...seeded } }, want: alone }
    : { body: { inputs: PROMPTS[i % 3].prompt, parameters: { max_new_tokens: 200 } }, want: PROMPTS[i % 3].text }));
  const res = await Promise.all(jobs.map((j) => postJSON(p.url + "/generate_stream", j.body)));
  res.forEach((r, i) => {
    const last = sseData(r.body).map((d) => JSON.parse(d)).at(-1);
    eq(last?.generated_text, jobs[i].want, `preempt: request ${i} exact under a 1024-token KV budget`);
  });
  const m = parseMetrics((await request("GET", p.url + "/metrics")).body);
  check(m["ignis_preemptions_total"] > 0, `preemptions happened: ${m["ignis_preemptions_total"]}`);
  eq(m["ignis_kv_blocks_used"], 0, "every block freed afterwards");
  eq((await stopServer(p)).code, 0, "preempt server exits 0");
  console.log(`preempt: ${m["ignis_preemptions_total"]} preemptions, ${summary().failures} failure(s) so far`);
}
// the prefix cache (on by default, PREFIX_CACHING=1 here): every output the same as a server without it
// (--prefix-caching false), the cache found (metrics, OpenAI's usage.prompt_tokens_details.cached_tokens), every
// block given back
if (!ONLY || ONLY.includes("prefix")) {
  const cold = await startServer(BIN, ["--prefix-caching", "false"]);
  const warm = await startServer(BIN, ["--max-batch-total-tokens", "2048"], { PREFIX_CACHING: "1" });
  const gen = async (u, inputs, extra = {}) =>
    JSON.parse((await postJSON(u + "/generate", { inputs, parameters: { max_new_tokens: 60, ...extra } })).body).generated_text;
  const long = P0.prompt + P0.text.slice(0, 400);
  const turn2 = (t) => long + t + " Then";
  const seeded = { do_sample: true, temperature: 0.9, top_k: 30, seed: 7 };
  const ref1 = await gen(cold.url, long), ref1s = await gen(cold.url, long, seeded);
  const ref2 = await gen(cold.url, turn2(ref1));
  eq(await gen(warm.url, long), ref1, "prefix: first request (nothing cached)");
  eq(await gen(warm.url, long), ref1, "prefix: the same prompt again, found cached");
  eq(await gen(warm.url, long, seeded), ref1s, "prefix: seeded sampling, found cached");
  eq(await gen(warm.url, turn2(ref1)), ref2, "prefix: the next turn (its prompt and generated blocks found)");
  const jobs = Array.from({ length: 12 }, (_, i) => (i % 3 === 0 ? [long, {}, ref1] : i % 3 === 1 ? [long, seeded, ref1s] : [turn2(ref1), {}, ref2]));
  const got = await Promise.all(jobs.map(([inp, ex]) => gen(warm.url, inp, ex)));
  got.forEach((g, i) => eq(g, jobs[i][2], `prefix: concurrent request ${i}`));
  const oc = new OpenAI({ baseURL: warm.url + "/v1", apiKey: "x" });
  const c = await oc.completions.create({ model: "x", prompt: long, max_tokens: 5, temperature: 0 });
  const ct = c.usage?.prompt_tokens_details?.cached_tokens;
  check(ct > 0 && ct < c.usage.prompt_tokens, `usage.prompt_tokens_details.cached_tokens ${ct} of ${c.usage?.prompt_tokens}`);
  await sleep(200);
  const m = parseMetrics((await request("GET", warm.url + "/metrics")).body);
  check(m["ignis_prefix_cache_hits_total"] > 0 && m["ignis_prefix_cache_hits_total"] < m["ignis_prefix_cache_queries_total"],
        `prefix cache hits ${m["ignis_prefix_cache_hits_total"]} of ${m["ignis_prefix_cache_queries_total"]} tokens`);
  check(m["ignis_kv_blocks_cached"] > 0, `blocks kept: ${m["ignis_kv_blocks_cached"]}`);
  eq(m["ignis_kv_blocks_used"], 0, "prefix: every block given back");
  const mc = parseMetrics((await request("GET", cold.url + "/metrics")).body);
  eq(mc["ignis_prefix_cache_hits_total"], 0, "no prefix cache with --prefix-caching false");
  const cc = await new OpenAI({ baseURL: cold.url + "/v1", apiKey: "x" }).completions.create({ model: "x", prompt: long, max_tokens: 5, temperature: 0 });
  eq(cc.usage?.prompt_tokens_details?.cached_tokens, 0, "cached_tokens 0 without the cache");
  eq((await stopServer(warm)).code, 0, "prefix server exits 0");
  eq((await stopServer(cold)).code, 0, "cold server exits 0");
  // the CPU's default: no prefix cache (its prompt rows' last bits depend on how they are chunked), so the same
  // request gives the same logprobs every time
  const dflt = await startServer(BIN, []);
  const lps = [];
  for (let i = 0; i < 3; i++) {
    const r = JSON.parse((await postJSON(dflt.url + "/generate", { inputs: long, parameters: { max_new_tokens: 8, details: true } })).body);
    lps.push(JSON.stringify(r.details.tokens.map((t) => t.logprob)));
  }
  check(lps[0] === lps[1] && lps[1] === lps[2], `CPU default: the same request's logprobs every time (${lps[0].slice(0, 60)}...)`);
  check(/prefix caching is off on the CPU unless asked for/.test(dflt.log()) && /prefix caching off/.test(dflt.log()),
        "CPU default: prefix caching off, said at startup");
  eq((await stopServer(dflt)).code, 0, "default CPU server exits 0");
  console.log(`prefix: ${m["ignis_prefix_cache_hits_total"]} of ${m["ignis_prefix_cache_queries_total"]} tokens found cached, ${summary().failures} failure(s) so far`);
}
// TGI's other launcher flags: a deployment's flags start ignis unchanged; each does what TGI's does, is said to
// have no effect, or is refused with one line
if (!ONLY || ONLY.includes("tgiflags")) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ig_tgiflags_"));
  const gen = async (u, inputs, extra = {}) =>
    JSON.parse((await postJSON(u + "/generate", { inputs, parameters: { max_new_tokens: 30, ...extra } })).body).generated_text;
  const pp = await freePort();
  const tc = path.join(tmp, "tc.json");
  fs.writeFileSync(tc, JSON.stringify({ bos_token: "<s>", eos_token: "</s>", chat_template: "[{{ messages[0]['content'] }}]" }));
  const t = await startServer(BIN, ["--trust-remote-code", "--disable-custom-kernels", "--usage-stats", "off", "--speculate", "2",
    "--otlp-endpoint", "http://127.0.0.1:4317", "-e", "--prometheus-port", String(pp), "--sharded", "false",
    "--graceful-termination-timeout", "5", "--max-batch-size", "2", "--disable-grammar-support", "--master-port", "29500",
    "--shard-uds-path", "/tmp/x", "--enable-prefill-logprobs", "--tokenizer-config-path", tc],
    { TRUST_REMOTE_CODE: "true", HUGGINGFACE_HUB_CACHE: tmp });
  const pm = await request("GET", `http://127.0.0.1:${pp}/metrics`);
  check(pm.status === 200 && /tgi_request_count/.test(pm.body), `--prometheus-port: /metrics there (${pm.status})`);
  eq((await request("GET", `http://127.0.0.1:${pp}/health`)).status, 404, "--prometheus-port serves /metrics alone");
  // --max-batch-size 2: eight requests at once all come back exact (two run at a time)
  const got = await Promise.all(PROMPTS.concat(PROMPTS, PROMPTS).slice(0, 8).map((p) => gen(t.url, p.prompt)));
  got.forEach((g, i) => check(PROMPTS[i % PROMPTS.length].text.startsWith(g) && g.length > 0, `--max-batch-size 2: request ${i} exact`));
  // --disable-grammar-support: TGI's 422
  const g1 = await postJSON(t.url + "/generate", { inputs: "x", parameters: { max_new_tokens: 5, grammar: { type: "json", value: {} } } });
  eq(g1.status, 422, "--disable-grammar-support: a grammar -> 422");
  check(/"error":"grammar is not supported","error_type":"validation"/.test(g1.body), `TGI's message: ${g1.body}`);
  const g2 = await postJSON(t.url + "/v1/chat/completions", { messages: [{ role: "user", content: "hi" }], max_tokens: 5,
    response_format: { type: "json_object" } });
  eq(g2.status, 422, "--disable-grammar-support: response_format -> 422");
  eq((await postJSON(t.url + "/generate", { inputs: "x", parameters: { max_new_tokens: 3 } })).status, 200, "plain requests still 200");
  // --tokenizer-config-path: its template renders chats
  const ct = await postJSON(t.url + "/chat_tokenize", { messages: [{ role: "user", content: "Once" }] });
  check(ct.status === 200 && JSON.parse(ct.body).templated_text === "[Once]", `--tokenizer-config-path template: ${ct.body.slice(0, 200)}`);
  const log = t.log();
  check(/payload \d+ bytes, speculate 2/.test(log) && /engine: KV cache .*speculate 2/.test(log), "--speculate 2: in the startup lines");
  check(!/speculative decoding is not implemented/.test(log), "--speculate: no longer warned about");
  check(/--otlp-endpoint .*exports no traces/.test(log), "--otlp-endpoint: warned");
  check(/--trust-remote-code given: no effect/.test(log), "--trust-remote-code: said to have no effect");
  check(/env: ignis /.test(log), "-e: the environment logged");
  check(/max_batch_size 2/.test(log) && /grammars refused/.test(log), "limits line names max_batch_size and grammars");
  eq((await stopServer(t)).code, 0, "TGI-flags server exits 0");
  // --huggingface-hub-cache: org/name is looked up there (a cache made of links to the model's files)
  const snap = path.join(tmp, "hub", "models--org--tiny", "snapshots", "abc");
  fs.mkdirSync(snap, { recursive: true });
  fs.mkdirSync(path.join(tmp, "hub", "models--org--tiny", "refs"));
  fs.writeFileSync(path.join(tmp, "hub", "models--org--tiny", "refs", "main"), "abc");
  for (const f of fs.readdirSync(MODEL)) fs.symlinkSync(path.join(MODEL, f), path.join(snap, f));
  // (with Kubernetes service links for Services named "prometheus" and "master" in the environment: skipped, logged)
  const hc = await startServer(BIN, ["--model-id", "org/tiny", "--huggingface-hub-cache", path.join(tmp, "hub")],
                               { HF_HOME: path.join(tmp, "elsewhere"), HF_HUB_CACHE: "",
                                 PROMETHEUS_PORT: "tcp://10.96.0.5:9090", MASTER_PORT: "tcp://10.96.0.7:29500" });
  const hg = await gen(hc.url, PROMPTS[0].prompt);
  check(hg.length > 0 && PROMPTS[0].text.startsWith(hg), `--huggingface-hub-cache: the cached model serves (${JSON.stringify(hg)})`);
  check(/ignoring PROMETHEUS_PORT=tcp:\/\/10\.96\.0\.5:9090: a Kubernetes service link/.test(hc.log()) &&
        /ignoring MASTER_PORT=tcp:/.test(hc.log()), "service-link PROMETHEUS_PORT / MASTER_PORT: skipped and logged");
  check(!/metrics also on/.test(hc.log()), "no metrics listener from a service link");
  eq((await stopServer(hc)).code, 0, "hub-cache server exits 0");
  const nohc = spawnSync(BIN, ["serve", "--model-id", "org/tiny"], { encoding: "utf8", timeout: 20000,
    env: { ...process.env, HF_HOME: path.join(tmp, "elsewhere"), HF_HUB_CACHE: "", HUGGINGFACE_HUB_CACHE: "" } });
  check(nohc.status !== 0 && /org\/tiny/.test(nohc.stderr), `without it: not found (${nohc.stderr.trim()})`);
  // --rope-scaling linear --rope-factor 2 == a checkpoint whose config says so; != the plain model
  const rd = path.join(tmp, "rope");
  fs.mkdirSync(rd);
  for (const f of fs.readdirSync(MODEL)) if (f !== "config.json") fs.symlinkSync(path.join(MODEL, f), path.join(rd, f));
  const cj = JSON.parse(fs.readFileSync(path.join(MODEL, "config.json"), "utf8"));
  cj.rope_scaling = { type: "linear", factor: 2.0 };
  fs.writeFileSync(path.join(rd, "config.json"), JSON.stringify(cj));
  const rf = await startServer(BIN, ["--rope-scaling", "linear", "--rope-factor", "2"]);
  const rc = await startServer(BIN, ["--model-id", rd]);
  const P = PROMPTS[0];
  const a = await gen(rf.url, P.prompt, { max_new_tokens: 60 }), b = await gen(rc.url, P.prompt, { max_new_tokens: 60 });
  eq(a, b, "--rope-scaling linear --rope-factor 2 == rope_scaling {linear, 2} in config.json");
  check(a !== P.text.slice(0, a.length) || a.length === 0, `rope scaling changes the text: ${JSON.stringify(a.slice(0, 60))}`);
  eq((await stopServer(rf)).code, 0, "rope server exits 0");
  eq((await stopServer(rc)).code, 0, "rope config server exits 0");
  // --kv-cache-dtype (or KV_CACHE_DTYPE): FP8-rounded keys and values (on the CPU); the startup line names the format
  check(/KV cache dtype auto \(the compute dtype\)/.test(rf.log()), "without --kv-cache-dtype: the startup line says auto");
  for (const [args, env, name] of [[["--kv-cache-dtype", "fp8_e4m3fn"], {}, "fp8_e4m3fn"],
                                   [[], { KV_CACHE_DTYPE: "fp8_e5m2" }, "fp8_e5m2"]]) {
    const k = await startServer(BIN, args, env);
    const kt = await gen(k.url, P.prompt, { max_new_tokens: 20 });
    check(typeof kt === "string" && kt.length > 0, `--kv-cache-dtype ${name}: generates (${JSON.stringify(kt)})`);
    check(new RegExp(`KV cache dtype ${name} \\(values rounded`).test(k.log()), `--kv-cache-dtype ${name}: named at start`);
    eq((await stopServer(k)).code, 0, `--kv-cache-dtype ${name} server exits 0`);
  }
  // refused, each with one line and exit 2
  for (const bad of [["--quantize", "awq"], ["--quantize", "int3"], ["--kv-cache-dtype", "bogus"], ["--lora-adapters", "a/b"],
    ["--ngrok"], ["--usage-stats", "maybe"], ["--rope-scaling", "yarn"], ["--rope-factor", "0"], ["--sharded", "true", "--num-shard", "1"],
    ["--sharded", "false", "--num-shard", "2"], ["--weights-cache-override", tmp], ["--tokenizer-config-path", path.join(tmp, "none.json")],
    ["--watermark-gamma", "1.5"], ["--watermark-delta", "0"], ["--max-batch-size", "0"], ["--prometheus-port", "70000"]]) {
    const r = spawnSync(BIN, ["serve", "--model-id", MODEL, ...bad], { encoding: "utf8", timeout: 20000 });
    eq(r.status, 2, `${bad.join(" ")} exits 2`);
    check(r.stderr.trim().split("\n").length === 1 && r.stderr.includes(bad[0]), `${bad.join(" ")}: one line naming it (${r.stderr.trim()})`);
  }
  const re = spawnSync(BIN, ["serve", "--model-id", MODEL], { encoding: "utf8", timeout: 20000, env: { ...process.env, QUANTIZE: "gptq" } });
  eq(re.status, 2, "QUANTIZE=gptq in the environment exits 2 too");
  const rp = spawnSync(BIN, ["serve", "--model-id", MODEL], { encoding: "utf8", timeout: 20000, env: { ...process.env, PROMETHEUS_PORT: "9o9o" } });
  check(rp.status === 2 && /PROMETHEUS_PORT/.test(rp.stderr), `PROMETHEUS_PORT=9o9o (not a service link) exits 2 naming it (${rp.stderr.trim()})`);
  fs.rmSync(tmp, { recursive: true, force: true });
  console.log(`tgiflags: ${summary().failures} failure(s) so far`);
}
const bp = spawnSync(BIN, ["serve", "--prefix-caching=sometimes"], { encoding: "utf8" });
eq(bp.status, 2, "--prefix-caching=sometimes exits 2");
// bad flags
const bf = spawnSync(BIN, ["serve", "--no-such-flag"], { encoding: "utf8" });
eq(bf.status, 2, "unknown flag exits 2");
eq(bf.stderr.trim().split("\n").length, 1, "one-line error");
const bv = spawnSync(BIN, ["serve", "--port", "x"], { encoding: "utf8" });
eq(bv.status, 2, "bad value exits 2");
for (const g of ["1,x", "1,,2", "-4", "99999"]) {
  const bg = spawnSync(BIN, ["serve", "--cuda-graphs", g], { encoding: "utf8" });
  eq(bg.status, 2, `--cuda-graphs ${g} exits 2`);
  check(/invalid value .* for --cuda-graphs/.test(bg.stderr) && bg.stderr.trim().split("\n").length === 1,
        `--cuda-graphs ${g}: one-line message (${bg.stderr.trim()})`);
}
const bb = spawnSync(BIN, ["serve", "--batch-invariant=maybe"], { encoding: "utf8" });
eq(bb.status, 2, "--batch-invariant=maybe exits 2");
check(/invalid value 'maybe' for --batch-invariant: expected true or false/.test(bb.stderr) &&
      bb.stderr.trim().split("\n").length === 1, `--batch-invariant=maybe: one-line message (${bb.stderr.trim()})`);

const { failures, checks } = summary();
console.log(`e2e: ${checks} checks, ${failures} failed, ${((Date.now() - t0) / 1000).toFixed(1)} s`);
process.exit(failures ? 1 : 0);
