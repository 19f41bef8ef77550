// tests/e2e/fake: the server's failure paths that a healthy model never takes, against tests/server/fake_serve
// (the real server over a fake engine): 424 generation errors (mid-stream too), 429 overload, disconnects
// while a request is still being validated or generated, and shutdown cancelling what outlives the grace period; long
// final replies written by a validation worker (a stream beside one keeps its pace, the same bytes as the loop's, the
// client going away and shutdown while one is written).
// Usage: node fake.mjs --fake-serve build/tests/server/fake_serve
import { spawn } from "node:child_process";
import http from "node:http";
import net from "node:net";
import { check, eq, summary, request, postJSON, sseData, sleep } from "./lib.mjs";

// A stream's events' arrival times (performance.now(), ms).
function timedStream(url, body) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const data = Buffer.from(JSON.stringify(body));
    const times = [];
    const req = http.request({ method: "POST", hostname: u.hostname, port: u.port, path: u.pathname, agent: false,
      headers: { "Content-Type": "application/json", "Content-Length": data.length } }, (res) => {
      let buf = "";
      res.on("data", (c) => {
        buf += c;
        for (let i; (i = buf.indexOf("\n\n")) >= 0; buf = buf.slice(i + 2)) times.push(performance.now());
      });
      res.on("end", () => resolve(times));
    });
    req.on("error", reject);
    req.end(data);
  });
}

const argv = process.argv.slice(2);
const BIN = argv[argv.indexOf("--fake-serve") + 1];

async function start(args = []) {
  const proc = spawn(BIN, ["0", ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  proc.stderr.on("data", (d) => (log += d));
  const port = await new Promise((resolve, reject) => {
    proc.stdout.on("data", (d) => {
      const m = /listening on (\d+)/.exec(String(d));
      if (m) resolve(Number(m[1]));
    });
    proc.on("exit", () => reject(new Error("fake_serve exited:\n" + log)));
  });
  const exited = new Promise((resolve) => proc.on("exit", (code) => resolve(code)));
  return { proc, url: `http://127.0.0.1:${port}`, port, exited, log: () => log };
}

const s = await start(["--max-conc", "4"]);
let r = await postJSON(s.url + "/generate", { inputs: "FAIL", parameters: { max_new_tokens: 10 } });
eq(r.status, 424, "generation error -> 424");
eq(JSON.parse(r.body).error_type, "generation", "error_type generation");
r = await postJSON(s.url + "/generate_stream", { inputs: "FAIL", parameters: { max_new_tokens: 10 } });
const evs = sseData(r.body).map((d) => JSON.parse(d));
eq(evs.length, 3, "two tokens then an error event");
eq(evs.at(-1).error_type, "generation", "stream error event");
r = await postJSON(s.url + "/v1/chat/completions", { messages: [{ role: "user", content: "RAISE" }] });
eq(r.status, 422, "template raise -> 422");
check(/^Template error: Conversation roles/.test(JSON.parse(r.body).error.message), "template message");

// overload: 4 slow requests fill the engine, the 5th gets 429
const slow = Array.from({ length: 4 }, () => postJSON(s.url + "/generate", { inputs: "SLOW", parameters: { max_new_tokens: 15 } }));
await sleep(100);
r = await postJSON(s.url + "/generate", { inputs: "x", parameters: { max_new_tokens: 2 } });
eq(r.status, 429, "overloaded -> 429");
eq(JSON.parse(r.body).error, "Model is overloaded", "overloaded message");
r = await postJSON(s.url + "/v1/completions", { prompt: "x", max_tokens: 2 });
eq(r.status, 429, "openai overloaded -> 429");
eq((await Promise.all(slow)).every((x) => x.status === 200), true, "slow requests complete");

// disconnects: right after sending (still validating), and mid-stream of a slow generation
for (let i = 0; i < 30; i++) {
  await new Promise((resolve) => {
    const c = net.connect(s.port, "127.0.0.1");
    const body = JSON.stringify({ inputs: i % 2 ? "SLOW" : "hello", parameters: { max_new_tokens: 30 } });
    c.on("connect", () => {
      c.write(`POST /generate${i % 3 ? "_stream" : ""} HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
      setTimeout(() => c.destroy(), i % 5);
    });
    c.on("close", resolve);
    c.on("error", resolve);
  });
}
await sleep(300);
const m = (await request("GET", s.url + "/metrics")).body;
check(/tgi_request_failure\{err="cancelled"\} [1-9]/.test(m), "cancelled requests counted");
check(/tgi_request_failure\{err="overloaded"\} [1-9]\d*/.test(m), "overloaded counted: " + /tgi_request_failure\{err="overloaded"\} \d+/.exec(m));
check(/tgi_request_failure\{err="generation"\} 2/.test(m), "generation failures counted");
r = await postJSON(s.url + "/generate", { inputs: "hello", parameters: { max_new_tokens: 3 } });
eq(r.status, 200, "still serving");

// shutdown: a request longer than the grace period (2 s) is cancelled; the process exits 0 with no leak
const long = postJSON(s.url + "/generate", { inputs: "SLOW", parameters: { max_new_tokens: 1000 } }).catch((e) => ({ status: 0 }));
await sleep(100);
s.proc.kill("SIGTERM");
r = await long;
eq(r.status, 500, "cancelled at shutdown -> 500 incomplete generation");
eq(await s.exited, 0, "fake_serve exit 0 (no engine request leaked)");
if (summary().failures) console.error(s.log().slice(-2000));

// the server's own max_concurrent_requests: the third request is refused before it reaches the engine
const s2 = await start(["--max-requests", "2"]);
const two = [0, 1].map(() => postJSON(s2.url + "/generate", { inputs: "SLOW", parameters: { max_new_tokens: 10 } }));
await sleep(50);
r = await postJSON(s2.url + "/generate", { inputs: "x", parameters: { max_new_tokens: 2 } });
eq(r.status, 429, "beyond --max-concurrent-requests -> 429 at once");
eq((await Promise.all(two)).map((x) => x.status).join(","), "200,200", "the admitted two complete");
eq((await postJSON(s2.url + "/generate", { inputs: "x", parameters: { max_new_tokens: 2 } })).status, 200, "admitted again after");
// a request of more sequences than that could never start: a 422 that says why, not a 429 to retry forever
r = await postJSON(s2.url + "/v1/completions", { prompt: ["a", "b"], n: 2, max_tokens: 2 });
eq(r.status, 422, "4 sequences beyond --max-concurrent-requests 2 -> 422");
check(/4 sequences .*max_concurrent_requests \(2\)/.test(r.body), "the 422 names the limit: " + r.body.slice(0, 200));
eq((await postJSON(s2.url + "/v1/completions", { prompt: "a", n: 2, max_tokens: 2 })).status, 200, "n = 2 within the limit -> 200");
s2.proc.kill("SIGTERM");
eq(await s2.exited, 0, "second fake_serve exits 0");

// Long final replies are written by a validation worker, off the loop. A scoring request (/v1/completions, echo,
// logprobs) whose prompt ends in 100 tokens that take 1 ms a decode in the fake (FAKE_SLOW_ID) takes ~0.3 s to write:
// a stream served by the same loop keeps its pace meanwhile (one token per 20 ms), instead of stalling that long.
const SLOW_ID = 0x7f + 3;
const scoring = { prompt: [...Array(200).fill(100), ...Array(100).fill(SLOW_ID)], echo: true, logprobs: 1, max_tokens: 0 };
const s3 = await start();
const s4 = await start(["--render-worker-entries", "0"]); // every body written on the loop, as before
// The largest gap between a stream's events while a scoring reply is written, on server srv.
async function streamGap(srv) {
  const stamp = performance.now();
  const streamed = timedStream(srv.url + "/generate_stream", { inputs: "SLOW", parameters: { max_new_tokens: 60 } });
  await sleep(150);
  const t0 = performance.now() - stamp;
  const rr = await postJSON(srv.url + "/v1/completions", scoring);
  const t1 = performance.now() - stamp;
  const times = (await streamed).map((t) => t - stamp);
  eq(rr.status, 200, "long scoring reply -> 200");
  eq(JSON.parse(rr.body).choices[0].logprobs.tokens.length, 300, "long scoring reply: every prompt token listed");
  let gap = 0;
  for (let i = 1; i < times.length; i++) if (times[i] > t0 && times[i - 1] < t1) gap = Math.max(gap, times[i] - times[i - 1]);
  return { gap, took: t1 - t0 };
}
const worker = await streamGap(s3), onLoop = await streamGap(s4);
console.log(`scoring reply written by a worker: ${worker.took.toFixed(0)} ms, a stream's largest gap meanwhile ` +
            `${worker.gap.toFixed(0)} ms; written on the loop: ${onLoop.took.toFixed(0)} ms, gap ${onLoop.gap.toFixed(0)} ms`);
check(worker.took > 250, `the scoring reply took long to write (${worker.took.toFixed(0)} ms)`);
check(worker.gap < 150, `a stream beside the scoring reply kept its pace: largest gap ${worker.gap.toFixed(0)} ms while it was written`);
// the premise: written on the loop, the same reply stalls the stream that long
check(onLoop.gap > 200, `with the body written on the loop the stream stalls (largest gap ${onLoop.gap.toFixed(0)} ms)`);
// the bytes are those the loop writes: the same requests to a server that writes every body on the loop
const anon = (b) => b.replace(/"id":"(chat)?cmpl-\d+"/g, '"id":""').replace(/"created":\d+/g, '"created":0');
for (const [route, body] of [
  ["/v1/completions", scoring],
  ["/v1/completions", { prompt: ["EOS and more", "x".repeat(300)], echo: true, logprobs: 3, max_tokens: 5, n: 2, seed: 7 }],
  ["/generate", { inputs: "y".repeat(400), parameters: { max_new_tokens: 20, details: true, decoder_input_details: true, top_n_tokens: 3 } }],
  ["/", { inputs: "z".repeat(400), parameters: { max_new_tokens: 3, details: true, decoder_input_details: true } }],
  ["/v1/chat/completions", { messages: [{ role: "user", content: "hi" }], max_tokens: 100, logprobs: true, top_logprobs: 4, seed: 7 }],
]) {
  const [a, b] = await Promise.all([postJSON(s3.url + route, body), postJSON(s4.url + route, body)]);
  eq(a.status, 200, `${route} written by a worker: 200`);
  eq(anon(a.body), anon(b.body), `${route}: a worker writes the loop's bytes`);
}
// the client goes away while its reply is being written: the job outlives it until the worker is done, then is freed
for (let i = 0; i < 4; i++) {
  await new Promise((resolve) => {
    const c = net.connect(s3.port, "127.0.0.1");
    const body = JSON.stringify(scoring);
    c.on("connect", () => {
      c.write(`POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
      setTimeout(() => c.destroy(), 60 + 60 * i);
    });
    c.on("close", resolve);
    c.on("error", resolve);
  });
}
await sleep(800);
eq(/ignis_requests_in_flight (\d+)/.exec((await request("GET", s3.url + "/metrics")).body)?.[1], "0", "no job left after disconnects mid-write");
eq((await postJSON(s3.url + "/generate", { inputs: "x", parameters: { max_new_tokens: 2 } })).status, 200, "serving after disconnects mid-write");
// shutdown while a reply is being written: it is still sent, and the server exits clean
const late = postJSON(s3.url + "/v1/completions", scoring);
await sleep(100);
s3.proc.kill("SIGTERM");
r = await late;
eq(r.status, 200, "reply being written at shutdown still sent");
eq(JSON.parse(r.body).choices[0].logprobs.tokens.length, 300, "that reply whole");
eq(await s3.exited, 0, "fake_serve exits 0 after shutdown mid-write");
s4.proc.kill("SIGTERM");
eq(await s4.exited, 0, "fake_serve (bodies on the loop) exits 0");
if (summary().failures) console.error(s3.log().slice(-3000));

const { failures, checks } = summary();
console.log(`fake: ${checks} checks, ${failures} failed`);
process.exit(failures ? 1 : 0);
