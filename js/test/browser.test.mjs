// The demo, the dashboard and the client in a real browser: Debian's
// chromium driven by playwright-core (node --test). $CHROMIUM_PATH names
// the browser (default /usr/bin/chromium); screenshots go to
// $LONGPOLL_ARTIFACTS (default js/test-artifacts).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { startServer, startRedis, startNginx, publishMany, publishRaw, topicInfo, until, jwt, tempDir } from "./server.mjs";

const artifacts = process.env.LONGPOLL_ARTIFACTS || join(dirname(fileURLToPath(import.meta.url)), "..", "test-artifacts");
mkdirSync(artifacts, { recursive: true });
const shot = (page, name) => page.screenshot({ path: join(artifacts, name + ".png"), fullPage: false });

let browser;
before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
});
after(async () => { await browser?.close(); });

async function newPage(ctx, viewport = { width: 1100, height: 760 }) {
  const page = await (ctx ?? (await browser.newContext({ viewport }))).newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e));
  page.errors = errors;
  return page;
}

const seqsOf = (page) => page.$$eval("#messages li[data-seq]", (els) => els.map((e) => Number(e.dataset.seq)));
const gapsOf = (page) => page.$$eval("#messages li.gap", (els) => els.length);
const range = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

async function waitSeqs(page, want, what) {
  try {
    await until(async () => JSON.stringify(await seqsOf(page)) === JSON.stringify(want), what, 20000);
  } catch (e) {
    throw new Error(`${e.message}: page shows ${JSON.stringify(await seqsOf(page))}, want ${JSON.stringify(want)}`);
  }
}

const waitStatus = (page, state, role) =>
  page.waitForSelector(`#status[data-state="${state}"]${role ? `[data-role="${role}"]` : ""}`, { timeout: 20000 });

// The demo's transport badge, once the page is live.
const waitTransport = (page, transport) =>
  page.waitForSelector(`#status[data-state="live"] ~ #transport[data-transport="${transport}"]`, { timeout: 20000 });

async function send(page, text) {
  await page.fill("#text", text);
  await page.press("#text", "Enter");
}

test("demo: two pages chat; a server restart shows reconnecting, then both catch up without loss or gap", async () => {
  const dir = tempDir();
  const args = ["--store", "disk", "--data-dir", dir];
  let srv = await startServer(args);
  const a = await newPage(), b = await newPage(); // two browsers' worth: separate contexts
  try {
    await a.goto(srv.url + "/?topic=room1");
    await b.goto(srv.url + "/?topic=room1");
    await waitStatus(a, "live");
    await waitStatus(b, "live");
    await send(a, "hello from A");
    await waitSeqs(b, [1], "B sees A's message");
    await send(b, "hi from B, a reply that is long enough to wrap on a phone screen and still look tidy");
    await waitSeqs(a, [1, 2], "A sees B's reply");
    await waitSeqs(b, [1, 2], "B sees its reply");
    await shot(a, "demo-desktop");

    await srv.stop("SIGTERM");
    for (const p of [a, b]) {
      await p.waitForFunction(() => /reconnecting in \d+ s/.test(document.getElementById("status").textContent), null, { timeout: 10000 });
    }
    await send(b, "sent while the server was down");
    await shot(a, "demo-reconnecting");
    srv = await startServer(args, srv.addr);
    await publishRaw(srv.url, "room1", { name: "node", text: "published after the restart" });
    await waitSeqs(a, [1, 2, 3, 4], "A catches up");
    await waitSeqs(b, [1, 2, 3, 4], "B catches up");
    assert.equal(await gapsOf(a), 0, "the disk store keeps the log: no gap");
    assert.equal(await gapsOf(b), 0);
    await waitStatus(a, "live");
    const texts = await a.$$eval("#messages li .text", (els) => els.map((e) => e.textContent));
    assert.ok(texts.includes("sent while the server was down") && texts.includes("published after the restart"), texts.join("|"));
    await shot(a, "demo-after-restart");
    assert.deepEqual([...a.errors, ...b.errors], []);
  } finally {
    await a.context().close();
    await b.context().close();
    await srv.stop();
  }
});

test("tab sharing: two tabs hold one poll; closing the leader loses nothing; hidden tabs pause", async () => {
  const srv = await startServer([]);
  const ctx = await browser.newContext({ viewport: { width: 1100, height: 760 } });
  try {
    const p1 = await newPage(ctx);
    await p1.goto(srv.url + "/?topic=shared");
    await waitStatus(p1, "live", "leader");
    const p2 = await newPage(ctx);
    await p2.goto(srv.url + "/?topic=shared");
    await waitStatus(p2, "live", "follower");
    // The leader's stream carries the messages of both; the follower's badge says so too.
    await waitTransport(p1, "stream");
    await waitTransport(p2, "stream");
    await until(async () => (await topicInfo(srv.url, "shared")).waiting === 1, "one held poll");
    await new Promise((r) => setTimeout(r, 600)); // and it stays one
    assert.equal((await topicInfo(srv.url, "shared")).waiting, 1, "two tabs, one poll");

    await publishMany(srv.url, "shared", range(1, 5).map((n) => ({ name: "node", text: "m" + n })));
    await waitSeqs(p1, range(1, 5), "leader shows 1..5");
    await waitSeqs(p2, range(1, 5), "follower shows 1..5");
    await shot(p2, "share-follower");

    await p1.close(); // the leader goes; its lock goes with it
    await publishMany(srv.url, "shared", range(6, 10).map((n) => ({ name: "node", text: "m" + n })));
    await waitSeqs(p2, range(1, 10), "the new leader shows 1..10 once each");
    await waitStatus(p2, "live", "leader");
    await until(async () => (await topicInfo(srv.url, "shared")).waiting === 1, "the new leader's poll");

    // Every tab hidden: no poll; visible again: the messages meanwhile arrive.
    const setHidden = (hidden) => p2.evaluate((h) => {
      Object.defineProperty(document, "visibilityState", { configurable: true, get: () => (h ? "hidden" : "visible") });
      document.dispatchEvent(new Event("visibilitychange"));
    }, hidden);
    await setHidden(true);
    await waitStatus(p2, "paused");
    await until(async () => (await topicInfo(srv.url, "shared")).waiting === 0, "no poll while hidden");
    await publishRaw(srv.url, "shared", { name: "node", text: "while hidden" });
    await setHidden(false);
    await waitSeqs(p2, range(1, 11), "the message sent while hidden");
    await waitStatus(p2, "live", "leader");
    assert.deepEqual(p2.errors, []);
  } finally {
    await ctx.close();
    await srv.stop();
  }
});

test("a reloaded page resumes from its stored cursor", async () => {
  const srv = await startServer([]);
  const page = await newPage();
  try {
    await page.goto(srv.url + "/?topic=reload");
    await waitStatus(page, "live");
    await publishMany(srv.url, "reload", range(1, 3));
    await waitSeqs(page, range(1, 3), "1..3");
    const polls = [];
    page.on("request", (r) => { if (r.url().includes("/v1/poll")) polls.push(new URL(r.url()).searchParams); });
    await Promise.all([page.reload(), publishMany(srv.url, "reload", range(4, 6))]);
    await waitSeqs(page, range(1, 6), "1..6 once each after the reload");
    assert.ok(polls[0]?.get("cursor"), "the reloaded page's first poll carries the stored cursor");
    await publishMany(srv.url, "reload", [7]);
    await waitSeqs(page, range(1, 7), "live again");
  } finally {
    await page.context().close();
    await srv.stop();
  }
});

test("dashboard: the numbers move under load; phone and laptop screens", async () => {
  const srv = await startServer(["--stats-interval", "500ms"]);
  const page = await newPage();
  const phone = await newPage(null, { width: 390, height: 844 });
  try {
    await page.goto(srv.url + "/dashboard");
    await waitStatus(page, "live");
    const raw = (m) => page.$eval(`[data-metric="${m}"] .value`, (e) => e.dataset.raw);
    await until(async () => (await raw("pub")) === "0", "an idle publish rate of 0");
    // Load: a subscriber and batches of publishes for about two seconds.
    const ac = new AbortController();
    const reader = fetch(srv.url + "/v1/poll?topic=load&timeout=10", { signal: ac.signal }).catch(() => {});
    for (let i = 0; i < 10; i++) {
      await publishMany(srv.url, "load", range(1, 50));
      await new Promise((r) => setTimeout(r, 200));
    }
    await until(async () => Number(await raw("pub")) > 0, "a publish rate above 0");
    await until(async () => (await page.$eval('[data-metric="pub"] .sub', (e) => e.textContent)).startsWith("500 "), "500 published");
    await until(async () => Number(await raw("held")) >= 0 && (await page.$eval('[data-metric="del"] .sub', (e) => e.textContent)) !== "0 messages in all", "deliveries");
    await shot(page, "dashboard-desktop");
    ac.abort();
    await reader;
    await phone.goto(srv.url + "/dashboard");
    await waitStatus(phone, "live");
    await phone.waitForSelector('[data-metric="pub"] .value[data-raw]:not([data-raw=""])');
    await shot(phone, "dashboard-phone");
    await phone.goto(srv.url + "/?topic=load");
    await phone.waitForSelector("#messages li[data-seq]");
    await shot(phone, "demo-phone");
    assert.deepEqual([...page.errors, ...phone.errors], []);
  } finally {
    await page.context().close();
    await phone.context().close();
    await srv.stop();
  }
});

test("dashboard: topics, nodes, latencies, outcomes and refusals go live under traffic; delete asks first; a phone screen", async () => {
  const srv = await startServer(["--stats-interval", "500ms", "--rate-publish", "20", "--rate-publish-burst", "20"]);
  const page = await newPage();
  const phone = await newPage(null, { width: 390, height: 844 });
  const ac = new AbortController();
  let held, load, reader;
  const admin = (method, path) => fetch(srv.url + "/v1/admin/" + path, { method }).then(async (r) => ({ status: r.status, body: await r.json() }));
  try {
    await page.goto(srv.url + "/dashboard?refresh=500");
    await waitStatus(page, "live");
    // Traffic: two polls held on adm.wait (a topic the store has), a
    // steady stream of publishes to adm.busy, three messages on adm.gone,
    // then a burst past the rate limit.
    await publishMany(srv.url, "adm.wait", [0]);
    held = Promise.all([1, 2].map(() => fetch(srv.url + "/v1/poll?topic=adm.wait&timeout=60", { signal: ac.signal }).catch(() => {})));
    await until(async () => (await topicInfo(srv.url, "adm.wait")).waiting === 2, "two polls held on adm.wait");
    await publishMany(srv.url, "adm.gone", [1, 2, 3]);
    load = (async () => {
      while (!ac.signal.aborted) {
        await publishMany(srv.url, "adm.busy", range(1, 10)).catch(() => {});
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    // A reader of adm.busy, by polls: the outcome "answered with messages" (the page itself reads over a stream).
    reader = (async () => {
      let cursor = "";
      while (!ac.signal.aborted) {
        const r = await fetch(`${srv.url}/v1/poll?topic=adm.busy&timeout=5${cursor ? "&cursor=" + cursor : ""}`, { signal: ac.signal }).catch(() => null);
        const body = await r?.json().catch(() => null);
        if (body?.cursor) cursor = body.cursor;
        else await new Promise((res) => setTimeout(res, 100));
      }
    })();
    await Promise.all(range(1, 40).map(() => publishRaw(srv.url, "adm.burst", 1).catch(() => {})));

    const cell = (topic, col) => page.$eval(`#topics tr[data-topic="${topic}"] td[data-col="${col}"]`, (e) => e.dataset.raw ?? e.textContent).catch(() => null);
    await until(async () => (await cell("adm.wait", "waiting")) === "2", "the held polls in the topics table", 10000);
    await until(async () => Number(await cell("adm.busy", "rate")) > 0, "a publish rate for adm.busy", 10000);
    assert.equal(await cell("adm.gone", "head"), "3");
    await page.selectOption("#sort", "rate");
    await until(async () => (await page.$eval("#topics tbody tr", (e) => e.dataset.topic)) === "adm.busy", "adm.busy first by publish rate");
    await page.selectOption("#sort", "waiting");
    assert.equal(await page.$eval("#topics tbody tr", (e) => e.dataset.topic), "adm.wait", "adm.wait first by held polls");

    const series = (chart, name) => page.$eval(`#chart-${chart} li[data-series="${name}"]`, (e) => e.dataset.last).catch(() => null);
    await until(async () => Number(await page.$eval("#chart-delivery", (e) => e.dataset.n)) > 0 && (await series("delivery", "p99")) !== "", "delivery latency percentiles", 10000);
    await until(async () => Number(await page.$eval("#chart-publish", (e) => e.dataset.n)) > 0 && (await series("publish", "p50")) !== "", "publish latency percentiles", 10000);
    await until(async () => Number(await series("outcomes", "answered with messages")) > 0, "polls answered with messages", 10000);
    await until(async () => (await series("refusals", "rate_limited")) !== null, "rate_limited refusals", 10000);

    const node = (col) => page.$eval(`#nodes tbody tr td[data-col="${col}"]`, (e) => e.textContent).catch(() => null);
    await until(async () => Number(await node("held")) >= 3 && (await node("ready")) === "ready" && (await node("draining")) === "no", "the node, its held polls, ready", 10000);
    assert.equal((await admin("POST", "drain")).body.draining, true);
    await until(async () => (await node("draining")) === "draining", "the node shown draining", 10000);
    assert.equal((await admin("DELETE", "drain")).body.draining, false);
    await until(async () => (await node("draining")) === "no", "the node shown taking polls again", 10000);
    await shot(page, "dashboard-admin-desktop");

    // Delete: asked first; dismissed, nothing is sent; accepted, the topic goes.
    await page.fill("#prefix", "adm.g");
    await until(async () => (await page.$$eval("#topics tbody tr", (es) => es.map((e) => e.dataset.topic))).join() === "adm.gone", "only adm.gone under the prefix");
    const deletes = [];
    page.on("request", (r) => { if (r.method() === "DELETE") deletes.push(r.url()); });
    const dialogs = [];
    page.once("dialog", (d) => { dialogs.push(d.message()); d.dismiss(); });
    await page.click('#topics tr[data-topic="adm.gone"] button.delete');
    await until(() => dialogs.length === 1, "the confirmation");
    assert.match(dialogs[0], /adm\.gone/);
    assert.match(dialogs[0], /3 messages/);
    page.once("dialog", (d) => { dialogs.push(d.message()); d.accept(); });
    await page.click('#topics tr[data-topic="adm.gone"] button.delete');
    await until(async () => (await page.$('#topics tr[data-topic="adm.gone"]')) === null, "adm.gone gone from the table", 10000);
    assert.deepEqual(deletes, [srv.url + "/v1/admin/topics/adm.gone"], "one DELETE, after the accepted confirmation");
    assert.deepEqual((await admin("GET", "topics?prefix=adm.gone")).body.topics, []);

    await phone.goto(srv.url + "/dashboard?refresh=500");
    await waitStatus(phone, "live");
    await phone.waitForSelector('#topics tr[data-topic="adm.busy"]', { timeout: 10000 });
    await phone.waitForSelector("#nodes[data-loaded]");
    await phone.waitForFunction(() => Number(document.getElementById("chart-delivery").dataset.n) > 0, null, { timeout: 10000 });
    const widths = await phone.evaluate(() => ({ doc: document.documentElement.scrollWidth, view: window.innerWidth }));
    assert.ok(widths.doc <= widths.view, `the page is ${widths.doc} px wide on a ${widths.view} px screen`);
    const box = await phone.locator('#topics tr[data-topic="adm.busy"] button.delete').boundingBox();
    assert.ok(box && box.x >= 0 && box.x + box.width <= widths.view, `a topic's Delete button is off the screen: ${JSON.stringify(box)}`);
    await shot(phone, "dashboard-admin-phone");
    await phone.evaluate(() => document.querySelector('[data-panel="delivery"]').scrollIntoView());
    await shot(phone, "dashboard-admin-phone-charts");
    assert.deepEqual([...page.errors, ...phone.errors], []);
  } finally {
    ac.abort();
    await Promise.all([held, load, reader]);
    await page.context().close();
    await phone.context().close();
    await srv.stop();
  }
});

test("dashboard: two nodes on one Redis are added up", async (t) => {
  const redis = await startRedis();
  if (!redis) {
    t.skip("redis-server is not installed");
    return;
  }
  const args = ["--store", redis.url, "--stats-interval", "300ms"];
  const a = await startServer(args);
  const b = await startServer(args);
  const page = await newPage();
  const ac = new AbortController();
  let polls = [];
  try {
    await page.goto(a.url + "/dashboard");
    await waitStatus(page, "live");
    const raw = (m) => page.$eval(`[data-metric="${m}"] .value`, (e) => e.dataset.raw);
    const sub = (m) => page.$eval(`[data-metric="${m}"] .sub`, (e) => e.textContent);
    // Two polls held on b, and the dashboard's own on a.
    polls = [1, 2].map(() => fetch(b.url + "/v1/poll?topic=idle&timeout=30", { signal: ac.signal }).catch(() => {}));
    await until(async () => (await raw("held")) === "3" && (await sub("held")) === "polls waiting now on 2 nodes",
      "3 polls held on 2 nodes", 20000);
    // Both nodes publish every 300 ms: each snapshot shows the sum, not
    // the node that sent it (the dashboard's poll on a may be between two
    // polls when a snapshot is taken).
    for (let i = 0; i < 10; i++) {
      const held = Number(await raw("held"));
      assert.ok(held === 2 || held === 3, `held ${held}, want the sum over both nodes`);
      await new Promise((r) => setTimeout(r, 150));
    }
    await publishMany(b.url, "n", range(1, 40));
    await publishMany(a.url, "n", range(41, 50));
    await until(async () => (await sub("pub")).startsWith("50 "), "50 published over both nodes", 20000);
    // The nodes panel lists both, each with its held polls.
    await until(async () => (await page.$$("#nodes tbody tr[data-node]")).length === 2, "both nodes in the nodes panel", 20000);
    // The other node's count comes with its heartbeat, every 5 s.
    const held = () => page.$$eval('#nodes tbody td[data-col="held"]', (es) => es.map((e) => Number(e.textContent)));
    try {
      await until(async () => (await held()).reduce((a, b) => a + b, 0) >= 3, "both nodes' held polls", 12000);
    } catch (e) {
      throw new Error(`${e.message}: held polls per node: ${await held()}`);
    }
    assert.deepEqual(page.errors, []);
  } finally {
    ac.abort();
    await Promise.all(polls);
    await page.context().close();
    await a.stop();
    await b.stop();
    await redis.stop();
  }
});

test("close() leaves no timer, listener, BroadcastChannel or lock behind", async () => {
  const srv = await startServer([]);
  const page = await newPage();
  try {
    await page.route(srv.url + "/blank", (r) => r.fulfill({ contentType: "text/html", body: "<!doctype html><title>blank</title>" }));
    await page.addInitScript(() => {
      const w = window;
      const timers = new Set();
      const st = w.setTimeout.bind(w), ct = w.clearTimeout.bind(w), si = w.setInterval.bind(w), ci = w.clearInterval.bind(w);
      w.__wait = (ms) => new Promise((r) => st(r, ms));
      w.setTimeout = (fn, ms, ...a) => { const id = st(() => { timers.delete("t" + id); fn(...a); }, ms); timers.add("t" + id); return id; };
      w.clearTimeout = (id) => { timers.delete("t" + id); ct(id); };
      w.setInterval = (fn, ms, ...a) => { const id = si(fn, ms, ...a); timers.add("i" + id); return id; };
      w.clearInterval = (id) => { timers.delete("i" + id); ci(id); };
      const listeners = new Set();
      const add = EventTarget.prototype.addEventListener, rm = EventTarget.prototype.removeEventListener;
      const name = (t) => (t === w ? "window" : t === document ? "document" : null);
      EventTarget.prototype.addEventListener = function (type, fn, o) { if (name(this)) listeners.add(name(this) + ":" + type + ":" + (fn.__id ??= Math.random())); return add.call(this, type, fn, o); };
      EventTarget.prototype.removeEventListener = function (type, fn, o) { if (name(this) && fn) listeners.delete(name(this) + ":" + type + ":" + fn.__id); return rm.call(this, type, fn, o); };
      const channels = [];
      const BC = w.BroadcastChannel;
      w.BroadcastChannel = class extends BC { constructor(n) { super(n); this.open = true; channels.push(this); } close() { this.open = false; super.close(); } };
      w.__leaks = async () => {
        const q = await navigator.locks.query();
        return { timers: [...timers], listeners: [...listeners], channels: channels.filter((c) => c.open).length, made: channels.length, held: q.held.length, pending: q.pending.length };
      };
    });
    await page.goto(srv.url + "/blank");
    const during = await page.evaluate(async (base) => {
      const lp = await import(base + "/longpoll.js");
      const opts = { baseUrl: base, share: true, pauseWhenHidden: true, storage: "session" };
      // Two subscriptions of the same topics in one page share as two tabs would: a leader and a follower.
      window.__subs = [lp.subscribe(["cl.a", "cl.b"], () => {}, opts), lp.subscribe(["cl.a", "cl.b"], () => {}, opts)];
      for (let i = 0; i < 500 && window.__subs[0].status.state !== "live"; i++) await window.__wait(20);
      return { roles: window.__subs.map((s) => s.status.role), ...(await window.__leaks()) };
    }, srv.url);
    assert.deepEqual(during.roles, ["leader", "follower"]);
    assert.ok(during.channels === 2 && during.held >= 2 && during.pending === 1 && during.listeners.length === 2, JSON.stringify(during));
    await until(async () => (await topicInfo(srv.url, "cl.a")).waiting === 1, "the leader's poll");
    const left = await page.evaluate(async () => {
      window.__subs.forEach((s) => s.close());
      await Promise.all(window.__subs.map((s) => s.done));
      await window.__wait(100);
      return window.__leaks();
    });
    assert.deepEqual(left, { timers: [], listeners: [], channels: 0, made: 2, held: 0, pending: 0 });
    await until(async () => (await topicInfo(srv.url, "cl.a")).waiting === 0, "the poll aborted");
    assert.deepEqual(page.errors, []);
  } finally {
    await page.context().close();
    await srv.stop();
  }
});

test("with --auth jwt: pages work with a token cookie; the dashboard needs the admin grant", async () => {
  const dir = tempDir();
  const secret = "browser-test-secret-0123456789abcdef";
  writeFileSync(join(dir, "secret"), secret);
  const srv = await startServer(["--auth", "jwt", "--jwt-secret-file", join(dir, "secret")]);
  const withCookie = async (claims) => {
    const ctx = await browser.newContext({ viewport: { width: 1100, height: 760 } });
    await ctx.addCookies([{ name: "longpoll_token", value: jwt(secret, claims), url: srv.url }]);
    return newPage(ctx);
  };
  const admin = await withCookie({ sub: "ops", longpoll: { admin: true } });
  const user = await withCookie({ sub: "ann", longpoll: { subscribe: ["chat.*"], publish: ["chat.*"] } });
  const anon = await newPage();
  try {
    await admin.goto(srv.url + "/dashboard");
    await waitStatus(admin, "live");
    await admin.waitForSelector('[data-metric="held"] .value[data-raw]:not([data-raw=""])');
    await admin.waitForSelector("#nodes[data-loaded]");
    assert.equal((await user.goto(srv.url + "/dashboard")).status(), 403);
    await user.waitForSelector("#signin:not([hidden])");
    assert.match(await user.textContent("#signin-why"), /lacks the admin grant/);
    assert.equal((await anon.goto(srv.url + "/dashboard")).status(), 401);
    // Not the API's JSON: a page that says how to sign in.
    await anon.waitForSelector("#signin:not([hidden])");
    assert.ok(await anon.isHidden("#dash"));
    assert.doesNotMatch(await anon.textContent("body"), /"error"|\{"/);
    assert.match(await anon.textContent("#signin"), /admin grant/);
    assert.match(await anon.textContent("#signin"), /longpoll_token/);
    await shot(anon, "dashboard-signin");
    // Signing in keeps the token in this tab's session storage and sends it as a bearer token.
    await anon.fill("#token", jwt(secret, { sub: "ops", longpoll: { admin: true } }));
    await Promise.all([anon.waitForNavigation(), anon.click("#signin button[type=submit]")]);
    await waitStatus(anon, "live");
    await anon.waitForSelector("#nodes[data-loaded]");
    assert.ok(await anon.isHidden("#signin"));
    assert.ok(await anon.evaluate(() => sessionStorage.getItem("longpoll_admin_token")?.startsWith("eyJ")));
    await Promise.all([anon.waitForNavigation(), anon.click("#signout")]);
    await anon.waitForSelector("#signin:not([hidden])");

    await user.goto(srv.url + "/?topic=chat.room1");
    await waitStatus(user, "live");
    await send(user, "hello with a token");
    await waitSeqs(user, [1], "the user's own message");
    await anon.goto(srv.url + "/?topic=chat.room1");
    await waitStatus(anon, "closed");
    assert.match(await anon.textContent("#error"), /401 unauthorized/);
    await shot(anon, "demo-unauthorized");
  } finally {
    for (const p of [admin, user, anon]) await p.context().close();
    await srv.stop();
  }
});


/** Logs the page's requests to /v1/stream and /v1/poll: { path, at }. */
function requests(page) {
  const log = [];
  page.on("request", (r) => {
    const path = new URL(r.url()).pathname;
    if (path === "/v1/stream" || path === "/v1/poll") log.push({ path, at: Date.now() });
  });
  return log;
}

test("transport auto: the demo receives over a stream, and says so", async () => {
  const srv = await startServer([]);
  const page = await newPage();
  try {
    const log = requests(page);
    await page.goto(srv.url + "/?topic=stream1");
    await waitTransport(page, "stream");
    assert.equal(await page.textContent("#transport"), "stream");
    await until(async () => (await topicInfo(srv.url, "stream1")).waiting === 1, "the stream held on the server");
    await publishMany(srv.url, "stream1", range(1, 3).map((n) => ({ name: "node", text: "s" + n })));
    await waitSeqs(page, range(1, 3), "1..3 over the stream");
    await send(page, "sent from the page");
    await waitSeqs(page, range(1, 4), "its own message");
    // Polls answered at once take the position (and catch up, with share), then one stream carries everything.
    assert.equal(log.at(-1).path, "/v1/stream", JSON.stringify(log));
    assert.equal(log.filter((x) => x.path === "/v1/stream").length, 1, JSON.stringify(log));
    const polls = log.length;
    await shot(page, "demo-stream");
    // ?transport=poll: long polls only.
    await page.goto(srv.url + "/?topic=stream1&transport=poll&noshare");
    await waitTransport(page, "poll");
    assert.equal(await page.textContent("#transport"), "long-poll");
    await publishRaw(srv.url, "stream1", { name: "node", text: "s5" });
    await waitSeqs(page, range(1, 5), "5 over a poll");
    assert.ok(log.slice(polls).every((x) => x.path === "/v1/poll"), JSON.stringify(log.slice(polls)));
    assert.deepEqual(page.errors, []);
  } finally {
    await page.context().close();
    await srv.stop();
  }
});

test("transport auto behind a buffering nginx: long polls after fallbackAfter, nothing lost; back to the stream once it gets through", async (t) => {
  const srv = await startServer([]);
  const ng = await startNginx(srv.addr, { buffering: true });
  if (!ng) {
    await srv.stop();
    t.skip("nginx is not installed: skipping the proxy test");
    return;
  }
  const fallbackAfter = 3000, streamRetry = 4000;
  const page = await newPage();
  const msg = (n) => ({ name: "node", text: "b" + n });
  try {
    const log = requests(page);
    await publishMany(srv.url, "buf", [1, 2].map(msg)); // before
    await page.goto(`${ng.url}/?topic=buf&fallbackAfter=${fallbackAfter}&streamRetry=${streamRetry}`);
    await waitSeqs(page, [1, 2], "the messages before, from the first poll");
    await until(() => log.some((x) => x.path === "/v1/stream"), "a stream tried");
    const streamAt = log.find((x) => x.path === "/v1/stream").at;
    await publishRaw(srv.url, "buf", msg(3)); // during: the proxy holds it in the stream
    await until(() => log.some((x) => x.path === "/v1/poll" && x.at > streamAt), "a poll after the stream", fallbackAfter + 5000);
    const fellBack = log.find((x) => x.path === "/v1/poll" && x.at > streamAt).at - streamAt;
    t.diagnostic(`fell back to long polling ${fellBack} ms after the stream was opened (fallbackAfter ${fallbackAfter})`);
    // Measured from the request as the test saw it, a little after the client armed its timer.
    assert.ok(fellBack >= fallbackAfter - 500 && fellBack < fallbackAfter + 1500, `fell back after ${fellBack} ms`);
    await waitSeqs(page, [1, 2, 3], "the message the proxy held, from a poll");
    await waitTransport(page, "poll");
    assert.equal(await page.textContent("#transport"), "long-poll");
    await shot(page, "demo-fallback-long-poll");
    await publishRaw(srv.url, "buf", msg(4)); // while polling
    await waitSeqs(page, range(1, 4), "a message while polling");

    await ng.setBuffering(false);
    const off = Date.now();
    await waitTransport(page, "stream");
    const back = Date.now() - off;
    t.diagnostic(`back on a stream ${back} ms after the proxy stopped buffering (streamRetry ${streamRetry})`);
    assert.ok(back <= streamRetry + 1500, `back on a stream after ${back} ms`);
    await publishMany(srv.url, "buf", [5, 6].map(msg)); // after
    await waitSeqs(page, range(1, 6), "each message once, in order");
    assert.equal(await gapsOf(page), 0);
    assert.equal(log.filter((x) => x.path === "/v1/stream").length, 2, "one stream given up, one that got through");
    assert.deepEqual(page.errors, []);
  } finally {
    await page.context().close();
    await ng.stop();
    await srv.stop();
  }
});
