// tests/e2e/lib: start/stop `ignis serve`, raw HTTP helpers (node:http, node:net), an SSE reader, and the tiny
// assertion harness the e2e groups share.
import { spawn } from "node:child_process";
import http from "node:http";
import net from "node:net";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, "../..");
export const SHARED = process.env.IG_SHARED_DIR || path.resolve(ROOT, "../shared");
export const MODEL = path.join(SHARED, "models/stories260K");
export const EXPECTED = JSON.parse(fs.readFileSync(path.join(MODEL, "expected.json"), "utf8"));

let failures = 0, checks = 0;
export function check(cond, msg) {
  checks++;
  if (!cond) {
    failures++;
    console.error("  FAIL:", msg);
  }
}
export function eq(a, b, msg) {
  check(a === b, `${msg}: ${JSON.stringify(a)?.slice(0, 300)} !== ${JSON.stringify(b)?.slice(0, 300)}`);
}
export const summary = () => ({ failures, checks });

export async function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

export async function startServer(bin, extraArgs = [], env = {}) {
  const port = await freePort();
  const args = ["serve", "--model-id", MODEL, "--port", String(port), "--hostname", "127.0.0.1", ...extraArgs];
  const proc = spawn(bin, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  proc.stdout.on("data", (d) => (log += d));
  proc.stderr.on("data", (d) => (log += d));
  const exited = new Promise((resolve) => proc.on("exit", (code, sig) => resolve({ code, sig })));
  const url = `http://127.0.0.1:${port}`;
  const t0 = Date.now();
  let sawHealth503 = false;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`ignis serve exited early:\n${log}`);
    try {
      const r = await request("GET", url + "/health");
      if (r.status === 503) sawHealth503 = true;
      if (r.status === 200) break;
    } catch {}
    if (Date.now() - t0 > 120000) throw new Error(`/health never answered 200:\n${log}`);
    await sleep(50);
  }
  return { proc, port, url, exited, sawHealth503, log: () => log };
}

export async function stopServer(srv, signal = "SIGTERM") {
  srv.proc.kill(signal);
  const r = await Promise.race([srv.exited, sleep(30000).then(() => ({ code: "timeout" }))]);
  return r;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// One HTTP request; resolves {status, headers, body (string), raw (Buffer)}.
export function request(method, url, body, headers = {}, timeoutMs = 120000) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const data = body === undefined ? undefined : Buffer.isBuffer(body) ? body : Buffer.from(typeof body === "string" ? body : JSON.stringify(body));
    const req = http.request(
      { method, hostname: u.hostname, port: u.port, path: u.pathname + u.search, agent: false,
        headers: { ...(data ? { "Content-Type": "application/json", "Content-Length": data.length } : {}), ...headers } },
      (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => {
          const raw = Buffer.concat(chunks);
          resolve({ status: res.statusCode, headers: res.headers, body: raw.toString("utf8"), raw });
        });
        res.on("error", reject);
      });
    req.setTimeout(timeoutMs, () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    if (data) req.write(data);
    req.end();
  });
}

export const postJSON = (url, body, headers) => request("POST", url, body, headers);

// Parses an SSE body into the list of data payloads (WHATWG: "data:" with an optional space).
export function sseData(text) {
  const out = [];
  for (const block of text.split(/\r?\n\r?\n/)) {
    const lines = block.split(/\r?\n/).filter((l) => l.startsWith("data:"));
    if (!lines.length) continue;
    out.push(lines.map((l) => l.slice(5).replace(/^ /, "")).join("\n"));
  }
  return out;
}

// Raw socket: writes `payload`, resolves the bytes received until the server closes (or timeout).
export function rawExchange(port, payload, { timeoutMs = 10000, endAfterWrite = false } = {}) {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    const chunks = [];
    let done = false;
    const finish = (why) => {
      if (done) return;
      done = true;
      s.destroy();
      resolve({ data: Buffer.concat(chunks).toString("latin1"), why });
    };
    s.on("data", (c) => chunks.push(c));
    s.on("end", () => finish("end"));
    s.on("close", () => finish("close"));
    s.on("error", () => finish("error"));
    s.setTimeout(timeoutMs, () => finish("timeout"));
    s.on("connect", () => {
      if (payload) s.write(payload);
      if (endAfterWrite) s.end();
    });
  });
}

export function statusOf(raw) {
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(raw);
  return m ? Number(m[1]) : 0;
}

// Parses Prometheus text into {name{labels}: value}.
export function parseMetrics(text) {
  const m = {};
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const i = line.lastIndexOf(" ");
    m[line.slice(0, i)] = Number(line.slice(i + 1));
  }
  return m;
}

// Expected greedy texts of stories260K (from expected.json).
export const PROMPTS = EXPECTED.prompts.map((p) => ({ prompt: p.prompt, text: p.continuation_text, ids: p.continuation_ids }));
