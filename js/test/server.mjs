// Test helpers: the longpoll binary, a server process, and small HTTP calls.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { createHmac } from "node:crypto";

const here = dirname(fileURLToPath(import.meta.url));
export const repo = join(here, "..", "..");

// Servers still running when this process ends are killed with it, also
// when it is interrupted.
const running = new Set();
process.on("exit", () => { for (const p of running) p.kill("SIGKILL"); });
for (const sig of ["SIGINT", "SIGTERM"]) process.once(sig, () => process.exit(130));

let built;
/** The binary: $LONGPOLL_BIN (the Go test builds it), else built once here. */
export function binary() {
  if (process.env.LONGPOLL_BIN) return process.env.LONGPOLL_BIN;
  if (!built) {
    built = join(mkdtempSync(join(tmpdir(), "longpoll-js-")), "longpoll");
    execFileSync("go", ["build", "-o", built, "./cmd/longpoll"], { cwd: repo, stdio: "inherit" });
  }
  return built;
}

export function tempDir(prefix = "longpoll-js-") {
  return mkdtempSync(join(tmpdir(), prefix));
}

/**
 * Starts `longpoll serve` on addr (default a free port) and resolves once
 * its "longpoll listening" line names the address. args default to the
 * memory store.
 */
export function startServer(args = [], addr = "127.0.0.1:0") {
  const full = ["serve", "--addr", addr, "--shutdown-grace", "3s", ...args];
  if (!args.includes("--store")) full.push("--store", "memory");
  const proc = spawn(binary(), full, { stdio: ["ignore", "ignore", "pipe"] });
  running.add(proc);
  proc.once("exit", () => running.delete(proc));
  let stderr = "";
  let started = false;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { proc.kill("SIGKILL"); reject(new Error("longpoll serve did not start:\n" + stderr)); }, 20000);
    proc.stderr.on("data", (b) => {
      stderr += b;
      const m = /msg="longpoll listening" addr=(\S+)/.exec(stderr);
      if (m && !started) {
        started = true;
        clearTimeout(timer);
        const exited = new Promise((r) => proc.once("exit", (code, sig) => r({ code, sig })));
        resolve({
          proc, addr: m[1], url: "http://" + m[1], exited,
          get stderr() { return stderr; },
          /** Stops the server (SIGTERM: gracefully) and waits for its exit. */
          async stop(sig = "SIGTERM") {
            if (proc.exitCode === null && proc.signalCode === null) proc.kill(sig);
            return exited;
          },
        });
      }
    });
    proc.once("exit", (code) => { clearTimeout(timer); if (!started) reject(new Error(`longpoll serve exited ${code}:\n${stderr}`)); });
  });
}

export async function publishRaw(url, topic, data, headers = {}) {
  const res = await fetch(url + "/v1/publish", {
    method: "POST", headers: { "Content-Type": "application/json", ...headers }, body: JSON.stringify({ topic, data }),
  });
  const body = await res.json();
  if (res.status !== 200) throw new Error(`publish ${res.status}: ${JSON.stringify(body)}`);
  return body.messages[0];
}

export async function publishMany(url, topic, datas) {
  const res = await fetch(url + "/v1/publish", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ messages: datas.map((data) => ({ topic, data })) }),
  });
  if (res.status !== 200) throw new Error(`publish ${res.status}: ${await res.text()}`);
  return (await res.json()).messages;
}

export async function topicInfo(url, topic, headers = {}) {
  const res = await fetch(url + "/v1/topics/" + encodeURIComponent(topic), { headers });
  return res.json();
}

/** Resolves when cond() is truthy, polling every 20 ms; rejects after ms with what. */
export async function until(cond, what, ms = 10000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > end) throw new Error("timed out waiting for " + what);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const b64 = (o) => Buffer.from(typeof o === "string" ? o : JSON.stringify(o)).toString("base64url");

/** An HS256 JWT over claims, valid for ttl seconds (negative: expired). */
export function jwt(secret, claims, ttl = 3600) {
  const now = Math.floor(Date.now() / 1000);
  const body = b64({ header: undefined, sub: "test", iat: now, exp: now + ttl, ...claims });
  const head = b64({ alg: "HS256", typ: "JWT" });
  const sig = createHmac("sha256", secret).update(head + "." + body).digest("base64url");
  return `${head}.${body}.${sig}`;
}

/** A StorageLike over a Map. */
export class MemoryStorage {
  m = new Map();
  getItem(k) { return this.m.has(k) ? this.m.get(k) : null; }
  setItem(k, v) { this.m.set(k, String(v)); }
  removeItem(k) { this.m.delete(k); }
}

export { existsSync };

/**
 * Starts a redis-server of its own on a free loopback port, keeping
 * nothing on disk; resolves to { url, stop } once it answers, or to null
 * when redis-server is not installed (outside CI; the caller skips).
 */
export async function startRedis() {
  try {
    execFileSync("redis-server", ["--version"], { stdio: "ignore" });
  } catch {
    if (process.env.CI === "true") throw new Error("redis-server is not installed, and CI=true");
    return null;
  }
  const { createServer, connect } = await import("node:net");
  const port = await new Promise((resolve, reject) => {
    const s = createServer().listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => resolve(p)); });
    s.once("error", reject);
  });
  const dir = tempDir("longpoll-redis-");
  const proc = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir],
    { stdio: "ignore" });
  running.add(proc);
  proc.once("exit", () => running.delete(proc));
  await until(() => new Promise((resolve) => {
    const c = connect(port, "127.0.0.1");
    c.once("connect", () => { c.end(); resolve(true); });
    c.once("error", () => resolve(false));
  }), "redis-server to accept connections");
  const exited = new Promise((r) => proc.once("exit", r));
  return {
    url: `redis://127.0.0.1:${port}/0`,
    async stop() { if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGTERM"); await exited; },
  };
}

/** nginx: $NGINX_PATH, else nginx on the PATH or in /usr/sbin; null when there is none. */
export function nginxPath() {
  for (const p of [process.env.NGINX_PATH, "nginx", "/usr/sbin/nginx"]) {
    if (!p) continue;
    try {
      execFileSync(p, ["-v"], { stdio: "ignore" });
      return p;
    } catch { /* next */ }
  }
  return null;
}

async function freePort() {
  const { createServer } = await import("node:net");
  return new Promise((resolve, reject) => {
    const s = createServer().listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => resolve(p)); });
    s.once("error", reject);
  });
}

// nginxConf is a proxy to upstream, as docs/deployment.md sets one up,
// except while the file flag exists: then it is a proxy that buffers
// whole replies and ignores the server's X-Accel-Buffering: no, as some
// do (and, as HTTP/1.0 to the server, sends nothing of a stream, not even
// its head). The flag switches it without a reload, whose old worker would
// go on serving the connections it has. Every reply names the mode in
// X-Test-Proxy.
function nginxConf(port, upstream, flag) {
  const proxy = `
            proxy_pass http://longpoll;
            proxy_set_header Host $host;
            proxy_read_timeout 70s;
            proxy_send_timeout 70s;`;
  return `
worker_processes 1;
error_log stderr warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path body;
    proxy_temp_path proxy;
    fastcgi_temp_path fastcgi;
    uwsgi_temp_path uwsgi;
    scgi_temp_path scgi;
    upstream longpoll {
        server ${upstream};
        keepalive 16;
    }
    server {
        listen 127.0.0.1:${port};
        location / {
            # A test's "nostream" file makes streams fail, as a proxy that serves no streams does.
            set $nostream "";
            if (-f ${flag}-nostream) {
                set $nostream "x";
            }
            set $probe "\${nostream}:\${uri}";
            if ($probe = "x:/v1/stream") {
                return 502;
            }
            if (-f ${flag}) {
                rewrite ^ /_buffering$uri last;
            }${proxy}
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            add_header X-Test-Proxy streaming always;
        }
        location /_buffering/ {
            internal;
            rewrite ^/_buffering(.*)$ $1 break;${proxy}
            proxy_http_version 1.0;
            proxy_buffering on;
            proxy_ignore_headers X-Accel-Buffering;
            add_header X-Test-Proxy buffering always;
        }
    }
}
`;
}

/**
 * Starts an nginx of its own in front of the longpoll server at upstream
 * (host:port): a free loopback port, a prefix in a temporary directory,
 * in the foreground. Resolves to { url, setBuffering(on), stop }, or to
 * null when nginx is not installed (outside CI; the caller skips).
 */
export async function startNginx(upstream, { buffering = false } = {}) {
  const nginx = nginxPath();
  if (!nginx) {
    if (process.env.CI === "true") throw new Error("nginx is not installed, and CI=true");
    return null;
  }
  const { writeFileSync, rmSync } = await import("node:fs");
  const port = await freePort();
  const dir = tempDir("longpoll-nginx-");
  const conf = join(dir, "nginx.conf");
  const flag = join(dir, "buffering");
  writeFileSync(conf, nginxConf(port, upstream, flag));
  if (buffering) writeFileSync(flag, "");
  const proc = spawn(nginx, ["-p", dir + "/", "-c", conf, "-e", "stderr", "-g", `daemon off; master_process off; pid ${join(dir, "nginx.pid")};`],
    { stdio: ["ignore", "ignore", "pipe"] });
  running.add(proc);
  let stderr = "";
  proc.stderr.on("data", (b) => { stderr += b; });
  const exited = new Promise((r) => proc.once("exit", (code, sig) => { running.delete(proc); r({ code, sig }); }));
  const url = `http://127.0.0.1:${port}`;
  const mode = async () => {
    try { return (await fetch(url + "/healthz")).headers.get("X-Test-Proxy"); } catch { return null; }
  };
  const want = (b) => (b ? "buffering" : "streaming");
  await Promise.race([
    until(async () => (await mode()) === want(buffering), "nginx to answer", 10000),
    exited.then((x) => { throw new Error(`nginx exited ${JSON.stringify(x)}:\n${stderr}`); }),
  ]);
  return {
    url,
    get stderr() { return stderr; },
    /** Turns buffering on or off and resolves once nginx answers so. */
    async setBuffering(on) {
      if (on) writeFileSync(flag, "");
      else rmSync(flag, { force: true });
      await until(async () => (await mode()) === want(on), "nginx to switch buffering", 10000);
    },
    /** Makes GET /v1/stream answer 502, or no longer. */
    setStreamFailing(on) {
      if (on) writeFileSync(flag + "-nostream", "");
      else rmSync(flag + "-nostream", { force: true });
    },
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGTERM");
      await exited;
    },
  };
}
