// The client against a real longpoll serve process (node --test).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { subscribe, publish, Client, backoffDelay, parseRetryAfter, LongpollError, EventStreamParser } from "../dist/longpoll.js";
import { startServer, startNginx, publishMany, publishRaw, topicInfo, until, jwt, MemoryStorage, tempDir } from "./server.mjs";

let srv; // a memory-store server shared by the tests that need nothing special
before(async () => { srv = await startServer(["--retention-messages", "5"]); });
after(async () => { await srv?.stop(); });

const open = new Set(); // subscriptions a failed test left open
after(() => { for (const s of open) s.close(); });

/** A subscription that records its events: "gap:topic:reason[:missed]", "msg:topic:seq", and statuses. */
function recorder(url, topics, opts = {}) {
  const events = [];
  const statuses = [];
  const sub = subscribe(topics, (m) => events.push(`msg:${m.topic}:${m.seq}`), {
    baseUrl: url, backoffBase: 50, backoffCap: 200, ...opts,
    onGap: (g) => events.push(`gap:${g.topic}:${g.reason}${g.missed ? ":" + g.missed : ""}`),
    onStatus: (s) => statuses.push(s),
  });
  open.add(sub);
  return { sub, events, statuses, msgs: () => events.filter((e) => e.startsWith("msg:")) };
}

const seqs = (topic, from, to) => Array.from({ length: to - from + 1 }, (_, i) => `msg:${topic}:${from + i}`);

test("backoff: full jitter below the doubling ceiling, Retry-After as floor, capped", () => {
  const top = () => 0.9999999;
  const ceilings = [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000];
  ceilings.forEach((c, i) => assert.equal(backoffDelay(i, 500, 30000, 0, top), c - 1));
  assert.equal(backoffDelay(0, 500, 30000, 0, () => 0), 0);
  assert.equal(backoffDelay(3, 500, 30000, 10000, () => 0), 10000, "the floor wins");
  assert.equal(backoffDelay(1000, 500, 30000, 0, top), 29999, "no overflow");
  assert.equal(backoffDelay(0, 500, 30000, 1e12), 3600000, "a huge floor is capped at an hour");
  const buckets = new Array(10).fill(0);
  for (let i = 0; i < 10000; i++) buckets[Math.floor(backoffDelay(0, 1000, 1000) / 100)]++;
  for (const n of buckets) assert.ok(n > 800 && n < 1200, `uneven spread ${buckets}`);
  assert.equal(parseRetryAfter("3"), 3000);
  assert.equal(parseRetryAfter("junk"), 0);
  assert.equal(parseRetryAfter(null), 0);
  const d = parseRetryAfter(new Date(Date.now() + 90000).toUTCString());
  assert.ok(d > 85000 && d <= 90000, `date: ${d}`);
});

test("messages in order, gaps before the messages of their reply", async () => {
  const r = recorder(srv.url, "order", { since: "earliest" });
  await publishMany(srv.url, "order", [1, 2, 3]);
  await until(() => r.events.length === 3, "three messages");
  const cursor = r.sub.cursor;
  r.sub.close();
  // Retention keeps 5: of 4..13, 4..8 expire before the cursor reads them.
  await publishMany(srv.url, "order", [4, 5, 6, 7, 8, 9, 10, 11, 12, 13]);
  const r2 = recorder(srv.url, "order", { cursor });
  await until(() => r2.events.length === 6, "gap and five messages");
  assert.deepEqual(r2.events, ["gap:order:expired:5", ...seqs("order", 9, 13)]);
  r2.sub.close();
});

test("a stored cursor resumes without loss or duplicates", async () => {
  const storage = new MemoryStorage();
  const r = recorder(srv.url, ["st.a", "st.b"], { since: "earliest", storage });
  await publishMany(srv.url, "st.a", [1, 2]);
  await until(() => r.events.length === 2, "two messages");
  r.sub.close();
  assert.equal(storage.m.size, 1, "one entry");
  await publishMany(srv.url, "st.a", [3]);
  await publishMany(srv.url, "st.b", [1]);
  const r2 = recorder(srv.url, ["st.b", "st.a"], { since: "earliest", storage });
  await until(() => r2.events.length === 2, "the two new messages");
  await new Promise((res) => setTimeout(res, 100));
  assert.deepEqual(r2.events.sort(), ["msg:st.a:3", "msg:st.b:1"]);
  r2.sub.close();
});

test("invalid_cursor: a reset gap per topic, then start again per since", async () => {
  await publishMany(srv.url, "ic.a", [1]);
  const r = recorder(srv.url, ["ic.a", "ic.b"], { since: "earliest", cursor: "bm90LWEtY3Vyc29y" });
  await until(() => r.events.length === 3, "two gaps and a message");
  assert.deepEqual(r.events, ["gap:ic.a:reset", "gap:ic.b:reset", "msg:ic.a:1"]);
  assert.equal(r.statuses.at(-1).state, "live");
  r.sub.close();
});

test("fatal answers stop the subscription with a clear error", async () => {
  const small = await startServer(["--max-topics-per-poll", "2"]);
  try {
    for (const [url, topics, status, code] of [
      [small.url, ["a", "b", "c"], 400, "too_many_topics"],
      [small.url + "/nope", ["a"], 404, "not_found"],
    ]) {
      const errors = [];
      const r = recorder(url, topics, { onError: (e) => errors.push(e) });
      const err = await r.sub.done;
      assert.ok(err instanceof LongpollError, String(err));
      assert.equal(err.status, status);
      assert.equal(err.code, code);
      assert.match(err.message, new RegExp(`${status} ${code}`));
      assert.deepEqual(errors, [err], "onError once");
      assert.equal(r.statuses.at(-1).state, "closed");
      assert.equal(r.statuses.at(-1).error, err);
    }
  } finally {
    await small.stop();
  }
});

test("auth: 401 and 403 stop; token_expired gets a new token and loses nothing", async () => {
  const dir = tempDir();
  const secret = "0123456789abcdef0123456789abcdef-secret";
  writeFileSync(join(dir, "secret"), secret);
  const s = await startServer(["--auth", "jwt", "--jwt-secret-file", join(dir, "secret"), "--rate-poll", "0", "--rate-publish", "0"]);
  const grants = { longpoll: { subscribe: ["au.*"], publish: ["au.*"] } };
  try {
    const none = recorder(s.url, "au.x");
    assert.equal((await none.sub.done)?.code, "unauthorized");
    const other = recorder(s.url, "other", { getToken: () => jwt(secret, grants) });
    assert.equal((await other.sub.done)?.code, "forbidden");

    // The first token has expired: the server says so, getToken is asked again.
    let calls = 0;
    const getToken = () => (calls++ === 0 ? jwt(secret, grants, -60) : jwt(secret, grants));
    const r = recorder(s.url, "au.x", { getToken, since: "earliest" });
    await until(() => r.sub.status.state === "live", "live");
    assert.equal(calls, 2);
    let pubCalls = 0;
    const rc = await publish("au.x", { hi: 1 }, { baseUrl: s.url, getToken: () => (pubCalls++ === 0 ? jwt(secret, grants, -60) : jwt(secret, grants)) });
    assert.equal(pubCalls, 2);
    assert.equal(rc.seq, 1);
    await until(() => r.events.length === 1, "the message");
    r.sub.close();
    // A getToken that fails stops at once.
    const bad = recorder(s.url, "au.x", { getToken: () => { throw new Error("no session"); } });
    const err = await bad.sub.done;
    assert.equal(err?.code, "token");
    assert.match(err.message, /no session/);
  } finally {
    await s.stop();
  }
});

test("token_revoked is handled like token_expired: one new token, then on; a new token refused too stops", async () => {
  const dir = tempDir();
  const secret = "0123456789abcdef0123456789abcdef-revoke";
  writeFileSync(join(dir, "secret"), secret);
  const s = await startServer(["--auth", "jwt", "--jwt-secret-file", join(dir, "secret"), "--rate-poll", "0", "--rate-publish", "0"]);
  const grants = { longpoll: { subscribe: ["rv.*"], publish: ["rv.*"] } };
  try {
    // ann's tokens issued before a minute ago are revoked; hers of two minutes ago is one of them.
    const now = Math.floor(Date.now() / 1000);
    const old = jwt(secret, { sub: "ann", iat: now - 120, ...grants });
    const res = await fetch(s.url + "/v1/admin/disconnect", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: "Bearer " + jwt(secret, { sub: "ops", longpoll: { admin: true } }) },
      body: JSON.stringify({ sub: "ann", before: new Date((now - 60) * 1000).toISOString() }),
    });
    assert.equal(res.status, 200, await res.text());
    const refused = await fetch(s.url + "/v1/poll?topic=rv.x&timeout=0", { headers: { Authorization: "Bearer " + old } });
    assert.equal(refused.status, 401);
    assert.equal((await refused.json()).error.code, "token_revoked", "the server refuses the old token as revoked");

    let calls = 0;
    const getToken = () => (calls++ === 0 ? old : jwt(secret, { sub: "ann", ...grants }));
    const r = recorder(s.url, "rv.x", { getToken, since: "earliest" });
    await until(() => r.sub.status.state === "live", "live");
    assert.equal(calls, 2, "asked once more after token_revoked");
    let pubCalls = 0;
    const rc = await publish("rv.x", { hi: 1 }, { baseUrl: s.url, getToken: () => (pubCalls++ === 0 ? old : jwt(secret, { sub: "ann", ...grants })) });
    assert.equal(pubCalls, 2);
    assert.equal(rc.seq, 1);
    await until(() => r.events.length === 1, "the message");
    r.sub.close();

    // A token source that has nothing newer: asked once more, then the publish fails with token_revoked.
    let n = 0;
    await assert.rejects(publish("rv.x", 2, { baseUrl: s.url, getToken: () => { n++; return old; } }),
      (e) => e instanceof LongpollError && e.status === 401 && e.code === "token_revoked");
    assert.equal(n, 2, "the token source is asked once more, not again");
  } finally {
    await s.stop();
  }
});

test("a long topic list polls with POST", async () => {
  const topics = Array.from({ length: 60 }, (_, i) => `long.${i}.` + "x".repeat(90));
  const methods = [];
  const f = (u, init) => { methods.push(init.method); return fetch(u, init); };
  const r = recorder(srv.url, topics, { fetch: f });
  await until(() => r.sub.status.state === "live", "live");
  await publishMany(srv.url, topics[59], ["last"]);
  await until(() => r.events.length === 1, "the message");
  assert.deepEqual(r.events, [`msg:${topics[59]}:1`]);
  assert.ok(methods.length >= 2 && methods.every((m) => m === "POST"), methods.join());
  r.sub.close();
  // A short one uses GET.
  const r2 = recorder(srv.url, "short", { fetch: f });
  await until(() => r2.sub.status.state === "live", "live");
  r2.sub.close();
  assert.equal(methods.at(-1), "GET");
});

test("Retry-After is the floor of the next wait", async () => {
  const s = await startServer(["--max-held-polls", "1", "--retry-after", "3s"]);
  try {
    const a = recorder(s.url, "ra", {});
    await until(async () => (await topicInfo(s.url, "ra")).waiting === 1, "a held poll");
    const b = recorder(s.url, "ra", {});
    const w = await until(() => b.statuses.find((x) => x.state === "waiting"), "b waiting");
    assert.equal(w.error.code, "overloaded");
    assert.ok(w.error.retryAfter >= 1500 && w.error.retryAfter < 4500, `retry_after_ms ${w.error.retryAfter}`);
    assert.ok(w.delay >= w.error.retryAfter, `waits ${w.delay} < ${w.error.retryAfter}`);
    a.sub.close();
    b.sub.close();
  } finally {
    await s.stop();
  }
});

test("server shutdown: wait retry_after_ms, resume on the restarted server without a gap", async () => {
  const dir = tempDir();
  const args = ["--store", "disk", "--data-dir", dir];
  let s = await startServer(args);
  const addr = s.addr;
  const r = recorder(s.url, "sd", { since: "earliest", backoffBase: 200, backoffCap: 400 });
  await publishRaw(s.url, "sd", 1);
  await until(() => r.events.length === 1, "first message");
  await until(async () => (await topicInfo(s.url, "sd")).waiting === 1, "held");
  await s.stop("SIGTERM");
  const w = await until(() => r.statuses.find((x) => x.state === "waiting"), "waiting");
  assert.equal(w.error, undefined, "a 200 with retry_after_ms, not an error");
  assert.ok(w.delay >= 1000 && w.delay < 3000, `delay ${w.delay}: want retry_after_ms, 2 s spread`);
  s = await startServer(args, addr);
  try {
    await publishRaw(s.url, "sd", 2);
    await until(() => r.events.length === 2, "the message after the restart", 15000);
    assert.deepEqual(r.events, ["msg:sd:1", "msg:sd:2"]);
    assert.equal(r.sub.status.state, "live");
    r.sub.close();
  } finally {
    await s.stop();
  }
});

test("a request without an answer is given up at the hold plus the margin", async () => {
  const sockets = [];
  const mute = net.createServer((c) => sockets.push(c)); // accepts, never answers
  await new Promise((res) => mute.listen(0, "127.0.0.1", res));
  const url = `http://127.0.0.1:${mute.address().port}`;
  const started = Date.now();
  const r = recorder(url, "mute", { timeout: 100, margin: 300 });
  const w = await until(() => r.statuses.find((x) => x.state === "waiting"), "waiting", 5000);
  assert.equal(w.error.code, "deadline");
  const took = Date.now() - started;
  assert.ok(took >= 290 && took < 2000, `gave up after ${took} ms`);
  r.sub.close();
  sockets.forEach((c) => c.destroy());
  await new Promise((res) => mute.close(res));
});

test("close aborts the poll in flight and leaves no timer", async () => {
  const timers = () => process.getActiveResourcesInfo().filter((x) => x === "Timeout").length;
  const before = timers();
  const r = recorder(srv.url, "cl", { timeout: 20000 });
  await until(async () => (await topicInfo(srv.url, "cl")).waiting === 1, "held");
  assert.ok(timers() > before, "the deadline timer runs");
  r.sub.close();
  assert.equal(await r.sub.done, undefined);
  assert.equal(r.statuses.at(-1).state, "closed");
  await until(async () => (await topicInfo(srv.url, "cl")).waiting === 0, "the poll gone from the server");
  await until(() => timers() === before, "no timer left");
  // Messages after close are not delivered.
  await publishRaw(srv.url, "cl", 1);
  await new Promise((res) => setTimeout(res, 50));
  assert.deepEqual(r.events, []);
});

test("publish: retried through a restart with the same id; duplicates reported", async () => {
  const dir = tempDir();
  let s = await startServer(["--store", "disk", "--data-dir", dir]);
  const addr = s.addr;
  await s.stop();
  const c = new Client({ baseUrl: s.url, backoffBase: 100, backoffCap: 300 });
  const pending = c.publish("pub", { n: 1 }, { id: "k1", retryFor: 15000 });
  await new Promise((res) => setTimeout(res, 400));
  s = await startServer(["--store", "disk", "--data-dir", dir], addr);
  try {
    const rc = await pending;
    assert.deepEqual(rc, { topic: "pub", seq: 1, id: "k1", duplicate: false });
    assert.deepEqual(await c.publish("pub", { n: 1 }, { id: "k1" }), { topic: "pub", seq: 1, id: "k1", duplicate: true });
    const rs = await c.publishBatch([{ topic: "pub", data: 2 }, { topic: "pub", data: null }]);
    assert.deepEqual(rs.map((x) => x.seq), [2, 3]);
    assert.ok(rs[0].id && rs[0].id !== rs[1].id, "random ids");
    await assert.rejects(c.publish("_longpoll.x", 1), (e) => e.status === 403 && e.code === "reserved_topic");
    await assert.rejects(c.publish("bad topic", 1), TypeError);
  } finally {
    await s.stop();
  }
});

// ---- the stream

/** Every event of input, parsed whole. */
const parseAll = (input) => new EventStreamParser().push(input);

test("event stream parser: the WHATWG rules, however the input is cut", () => {
  const cases = [
    ["data: a\n\n", [{ type: "message", data: "a", id: "" }]],
    ["event: gap\nid: C1\ndata: {\"x\":1}\n\n", [{ type: "gap", data: '{"x":1}', id: "C1" }]],
    ["data:a\r\ndata:  b\r\n\r\n", [{ type: "message", data: "a\n b", id: "" }]],
    ["data: a\rdata: b\r\r", [{ type: "message", data: "a\nb", id: "" }]],
    ["\uFEFFdata: bom\n\n", [{ type: "message", data: "bom", id: "" }]],
    [": ping\n\nretry: 2315\n\n: ping\n\n", []],
    ["id: A\n\ndata: after an id alone\n\n", [{ type: "message", data: "after an id alone", id: "A" }]],
    ["id: A\ndata: 1\n\nid: B\u0000\ndata: 2\n\n", [{ type: "message", data: "1", id: "A" }, { type: "message", data: "2", id: "A" }]],
    ["event: x\n\ndata: 1\n\n", [{ type: "message", data: "1", id: "" }]],
    ["data\n\n", [{ type: "message", data: "", id: "" }]],
    ["data: no end", []],
    ["data: a\n\ndata: cut before the blank line\n", [{ type: "message", data: "a", id: "" }]],
    ["field without a colon\nevent\ndata: x\n\n", [{ type: "message", data: "x", id: "" }]],
  ];
  for (const [input, want] of cases) {
    assert.deepEqual(parseAll(input), want, JSON.stringify(input));
    // Cut at every place, and byte by byte: the same events.
    for (let i = 0; i <= input.length; i++) {
      const p = new EventStreamParser();
      assert.deepEqual([...p.push(input.slice(0, i)), ...p.push(input.slice(i))], want, `${JSON.stringify(input)} cut at ${i}`);
    }
    const p = new EventStreamParser();
    assert.deepEqual([...input].flatMap((c) => p.push(c)), want, `${JSON.stringify(input)} a character at a time`);
  }
  const p = new EventStreamParser();
  p.push("retry: 1500\n\nretry: 2x\n\nretry: -1\n\n");
  assert.equal(p.retry, 1500, "a retry of digits only");
  assert.equal(p.lines, 6);
  // "\r" then "\n" in the next chunk is one line end, not a blank line.
  const q = new EventStreamParser();
  assert.deepEqual([...q.push("data: x\r"), ...q.push("\ndata: y\r"), ...q.push("\n\r\n")], [{ type: "message", data: "x\ny", id: "" }]);
  // Bounded: an event past max characters is refused, not held.
  const small = new EventStreamParser(64);
  assert.throws(() => small.push("data: " + "x".repeat(100)), /larger than 64/);
  const lines = new EventStreamParser(64);
  assert.throws(() => { for (let i = 0; i < 20; i++) lines.push("data: 12345\n"); }, /larger than 64/);
});

/** A fetch that logs each request: its path ("/v1/stream", "/v1/poll") and when it was sent. */
function logged() {
  const log = [];
  const f = (u, init) => { log.push({ path: new URL(u).pathname, at: Date.now() }); return fetch(u, init); };
  return { fetch: f, log, streams: () => log.filter((x) => x.path === "/v1/stream").length };
}

test("auto: messages come over a stream; a stream's id and a poll's cursor resume each other", async () => {
  const f = logged();
  const a = recorder(srv.url, ["sx.a", "sx.b"], { since: "earliest", fetch: f.fetch });
  await until(() => a.sub.transport === "stream" && a.sub.status.state === "live", "a live stream");
  assert.equal(a.statuses.at(-1).transport, "stream");
  await until(async () => (await topicInfo(srv.url, "sx.a")).waiting === 1, "the stream held on the server");
  await publishMany(srv.url, "sx.a", [1, 2]);
  await publishMany(srv.url, "sx.b", [1]);
  await until(() => a.events.length === 3, "three messages");
  assert.deepEqual(a.events, [...seqs("sx.a", 1, 2), "msg:sx.b:1"]);
  assert.equal(f.streams(), 1, "one stream carried them");
  assert.deepEqual(f.log.map((x) => x.path), ["/v1/poll", "/v1/stream"], "a poll answered at once for the position, then the stream");
  a.sub.close();
  await a.sub.done;

  // The stream's last id, as a poll's cursor.
  await publishMany(srv.url, "sx.a", [3]);
  const b = recorder(srv.url, ["sx.a", "sx.b"], { cursor: a.sub.cursor, transport: "poll" });
  await until(() => b.events.length === 1, "the message after the stream's last id");
  await publishMany(srv.url, "sx.b", [2]);
  await until(() => b.events.length === 2, "and the next");
  assert.deepEqual(b.events, ["msg:sx.a:3", "msg:sx.b:2"]);
  assert.equal(b.sub.transport, "poll");
  b.sub.close();

  // A poll's cursor, as a stream's start.
  await publishMany(srv.url, "sx.a", [4]);
  const c = recorder(srv.url, ["sx.a", "sx.b"], { cursor: b.sub.cursor, transport: "sse" });
  await until(() => c.events.length === 1, "the message after the poll's cursor");
  await until(() => c.sub.transport === "stream", "the stream");
  await publishMany(srv.url, "sx.a", [5]);
  await until(() => c.events.length === 2, "and the next");
  assert.deepEqual(c.events, seqs("sx.a", 4, 5));
  c.sub.close();
});

test("the stream's end (max_stream): it reconnects from the last id, nothing lost or repeated", async () => {
  const s = await startServer(["--max-stream", "700ms"]);
  try {
    const f = logged();
    const r = recorder(s.url, "ms", { since: "earliest", fetch: f.fetch });
    for (let i = 1; i <= 12; i++) {
      await publishRaw(s.url, "ms", i);
      await new Promise((res) => setTimeout(res, 150));
    }
    await until(() => r.events.length === 12, "twelve messages");
    assert.deepEqual(r.events, seqs("ms", 1, 12));
    assert.ok(f.streams() >= 3, `${f.streams()} streams: want a new one every 700 ms`);
    assert.equal(r.sub.transport, "stream");
    r.sub.close();
  } finally {
    await s.stop();
  }
});

test("stream auth: token_revoked in an error event asks getToken once; refused again, a wait with backoff; then on without loss", async () => {
  const dir = tempDir();
  const secret = "0123456789abcdef0123456789abcdef-stream";
  writeFileSync(join(dir, "secret"), secret);
  const s = await startServer(["--auth", "jwt", "--jwt-secret-file", join(dir, "secret"), "--rate-poll", "0", "--rate-publish", "0"]);
  const grants = { longpoll: { subscribe: ["sa.*"], publish: ["sa.*"] } };
  const pub = (n) => publishRaw(s.url, "sa.x", n, { Authorization: "Bearer " + jwt(secret, grants) });
  try {
    // The first two tokens were issued two minutes ago; an admin revokes them while the stream holds the first.
    const now = Math.floor(Date.now() / 1000);
    let calls = 0;
    const getToken = () => (++calls <= 2 ? jwt(secret, { sub: "ann", iat: now - 120, ...grants }) : jwt(secret, { sub: "ann", ...grants }));
    const f = logged();
    const r = recorder(s.url, "sa.x", { getToken, since: "earliest", fetch: f.fetch, backoffBase: 1000, backoffCap: 1000 });
    await until(() => r.sub.transport === "stream" && r.sub.status.state === "live", "a live stream");
    await pub(1);
    await until(() => r.events.length === 1, "the first message");
    assert.equal(calls, 1);
    const res = await fetch(s.url + "/v1/admin/disconnect", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: "Bearer " + jwt(secret, { sub: "ops", longpoll: { admin: true } }) },
      body: JSON.stringify({ sub: "ann", before: new Date((now - 60) * 1000).toISOString() }),
    });
    assert.equal(res.status, 200, await res.text());
    // The stream ends with token_revoked; the new stream's token is refused too: a wait, having asked once.
    const w = await until(() => r.statuses.find((x) => x.state === "waiting"), "a wait after the second refusal", 5000);
    assert.equal(w.error?.code, "token_revoked");
    assert.equal(calls, 2, "asked once when the stream ended");
    assert.equal(f.streams(), 2);
    await pub(2);
    // After the wait: asked again, a token issued now, the stream from the last id.
    await until(() => r.events.length === 2, "the message after the new token", 10000);
    assert.deepEqual(r.events, seqs("sa.x", 1, 2));
    assert.equal(calls, 3);
    assert.equal(r.sub.transport, "stream");
    assert.ok(!r.statuses.some((x) => x.state === "closed"), JSON.stringify(r.statuses));
    r.sub.close();
  } finally {
    await s.stop();
  }
});

test("auto behind a buffering nginx: long polls after fallbackAfter, nothing lost; back to the stream when it gets through", async (t) => {
  const ng = await startNginx(srv.addr, { buffering: true });
  if (!ng) { t.skip("nginx is not installed: skipping the proxy tests"); return; }
  try {
    const f = logged();
    await publishMany(srv.url, "bf", [1, 2]);
    const r = recorder(ng.url, "bf", { since: "earliest", fetch: f.fetch, fallbackAfter: 1500, streamRetry: 1500 });
    await until(() => r.events.length === 2, "the messages before, from the first poll");
    await until(() => f.streams() === 1, "a stream tried");
    await publishMany(srv.url, "bf", [3]); // held by the proxy in the stream
    const sent = f.log.find((x) => x.path === "/v1/stream").at;
    await until(() => f.log.some((x) => x.path === "/v1/poll" && x.at > sent), "a poll after the stream", 5000);
    const back = f.log.find((x) => x.path === "/v1/poll" && x.at > sent).at - sent;
    assert.ok(back >= 1000 && back < 2500, `fell back after ${back} ms, want 1500`);
    await until(() => r.events.length === 3, "the message the proxy held, from the poll");
    assert.equal(r.sub.transport, "poll");
    await publishMany(srv.url, "bf", [4]);
    await until(() => r.events.length === 4, "a message while polling");
    await ng.setBuffering(false);
    const off = Date.now();
    await until(() => r.sub.transport === "stream" && r.sub.status.state === "live", "back on a stream", 10000);
    const took = Date.now() - off;
    // The next try is at most streamRetry (doubled once if a try met the buffering) away.
    assert.ok(took < 3000 + 500, `back on a stream after ${took} ms`);
    await publishMany(srv.url, "bf", [5, 6]);
    await until(() => r.events.length === 6, "messages over the stream");
    assert.deepEqual(r.events, seqs("bf", 1, 6));
    r.sub.close();
  } finally {
    await ng.stop();
  }
});

test("auto: two failed streams in a row, then long polls; the stream again after streamRetry", async (t) => {
  const ng = await startNginx(srv.addr);
  if (!ng) { t.skip("nginx is not installed: skipping the proxy tests"); return; }
  try {
    ng.setStreamFailing(true);
    const f = logged();
    const r = recorder(ng.url, "ff", { fetch: f.fetch, streamRetry: 1500, backoffBase: 50, backoffCap: 100 });
    await until(() => f.log.filter((x) => x.path === "/v1/poll").length >= 2 && f.streams() === 2, "two streams, then polls");
    const second = f.log.filter((x) => x.path === "/v1/stream")[1].at;
    assert.ok(f.log.some((x) => x.path === "/v1/poll" && x.at >= second), "a poll after the second failure");
    await publishMany(srv.url, "ff", [1]);
    await until(() => r.events.length === 1, "a message over polls");
    assert.equal(r.sub.transport, "poll");
    assert.equal(f.streams(), 2, "no third stream within streamRetry");
    ng.setStreamFailing(false);
    await until(() => r.sub.transport === "stream" && r.sub.status.state === "live", "back on a stream", 5000);
    await publishMany(srv.url, "ff", [2]);
    await until(() => r.events.length === 2, "a message over the stream");
    assert.deepEqual(r.events, seqs("ff", 1, 2));
    r.sub.close();
  } finally {
    await ng.stop();
  }
});
