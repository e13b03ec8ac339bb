// The live operations view. Two sources:
//   - _longpoll.stats: every node publishes a snapshot of its counters
//     each interval (internal/stats); this page receives them by long
//     polling and draws totals, rates, poll outcomes and, when the
//     snapshots carry them, latency percentiles and refusals;
//   - the admin API (/v1/admin/topics, /v1/admin/node), read every few
//     seconds: the busiest topics and the nodes.
// Latencies and refusals that the snapshots lack are read from this
// node's /metrics instead (this node only).
import { Client, type LongpollError, type Message } from "./longpoll";
import { base, cookieToken, showError, showStatus } from "./common";
import { drawChart, type Series } from "./chart";

/** A histogram: cumulative counts n at the upper bounds le (seconds); n may have one more, the total. */
interface Hist {
  le: number[];
  n: number[];
}

/** One snapshot, as internal/stats publishes it. */
interface Snap {
  v: number;
  node?: string;
  time: string;
  interval_ms: number;
  held: number;
  polls: Record<string, number>;
  published: number;
  delivered: number;
  gaps: Record<string, number>;
  broker_errors: Record<string, number>;
  topics?: number;
  // Not published yet by internal/stats: read when present.
  refusals?: Record<string, number>;
  delivery_latency?: Hist;
  publish_latency?: Hist;
}

/** A point of every series, from two consecutive snapshots. */
interface Point {
  t: number;
  held: number;
  topics?: number;
  pub: number | null;
  del: number | null;
  polls: number | null;
  gaps: number | null;
  errors: number | null;
  /** Polls ended per second, by outcome. */
  outcomes: Record<string, number>;
}

/** A point of the latency and refusal charts. */
interface LatPoint {
  t: number;
  delivery: Quantiles | null;
  publish: Quantiles | null;
  refusals: Record<string, number> | null;
}
type Quantiles = { p50: number; p90: number; p99: number };

const WINDOW_MS = 5 * 60 * 1000;
const TOPIC = "_longpoll.stats";
const TOKEN_KEY = "longpoll_admin_token";
const params = new URLSearchParams(location.search);
/** How often the admin API and /metrics are read, ms (?refresh=). */
const REFRESH = Math.max(250, Number(params.get("refresh")) || 2000);
/** Rows of the topics table. */
const ROWS = 50;
const OUTCOMES = ["messages", "timeout", "cancelled", "shutdown", "error"];
const OUTCOME_NAMES: Record<string, string> = { messages: "answered with messages", timeout: "timed out empty", cancelled: "cancelled by the client", shutdown: "ended by shutdown", error: "error" };

const sum = (r: Record<string, number> | undefined) => Object.values(r ?? {}).reduce((a, b) => a + b, 0);
const errorsOf = (s: Snap) => (s.polls?.error ?? 0) + sum(s.broker_errors);
const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;

function fmt(n: number, digits = 0): string {
  if (!Number.isFinite(n)) return "–";
  if (Math.abs(n) >= 1e6) return (n / 1e6).toFixed(1) + "M";
  if (Math.abs(n) >= 1e4) return (n / 1e3).toFixed(1) + "k";
  return n.toFixed(n % 1 === 0 ? 0 : digits);
}
const fmt1 = (n: number) => fmt(n, n < 10 ? 2 : 1);
/** An axis label: three significant digits at most. */
const axis = (n: number) => (Math.abs(n) >= 1e4 ? fmt(n) : String(+n.toPrecision(3)));
function fmtBytes(n: number): string {
  if (n < 1024) return n + " B";
  let v = n;
  for (const u of ["KiB", "MiB", "GiB", "TiB"]) {
    v /= 1024;
    if (v < 1024) return v.toFixed(v < 10 ? 1 : 0) + " " + u;
  }
  return v.toFixed(0) + " TiB";
}
function ago(iso: string | undefined): string {
  if (!iso) return "–";
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 129600) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

// ---- the token: sign-in form (session storage), else the cookie ----

function storedToken(): string {
  try {
    return sessionStorage.getItem(TOKEN_KEY) ?? "";
  } catch {
    return "";
  }
}
const token = () => storedToken() || cookieToken();

let signedOut = false;
/** Replaces the dashboard with the sign-in form, saying why. */
function signIn(status: number, code: string) {
  if (signedOut) return;
  signedOut = true;
  stop();
  const had = storedToken() !== "";
  const why = $("signin-why");
  if (status === 403) {
    why.textContent = "The token this browser sent (signed in here, or the longpoll_token cookie) lacks the admin grant. Sign in with an admin token.";
  } else if (code === "token_expired" || code === "token_revoked") {
    why.textContent = `The token has ${code === "token_expired" ? "expired" : "been revoked"}. Sign in with a new admin token.`;
  } else {
    why.textContent = had ? "The server refused the token given here. Sign in with an admin token." : "This server requires a token (serve --auth jwt), and the dashboard needs one with the admin grant.";
  }
  if (had) sessionStorage.removeItem(TOKEN_KEY);
  $("dash").hidden = true;
  $("signin").hidden = false;
  $("status").dataset.state = "closed";
  $("status").textContent = status === 403 ? "not an admin" : "signed out";
  showError("");
  $<HTMLInputElement>("token").focus();
}

$("signin-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const t = $<HTMLInputElement>("token").value.trim();
  if (!t) return;
  sessionStorage.setItem(TOKEN_KEY, t);
  location.reload();
});
$("signout").hidden = storedToken() === "";
$("signout").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  location.reload();
});

class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

/** Calls the admin API (or /metrics with text) with the token; throws ApiError. */
async function api(method: string, path: string): Promise<any> {
  const headers: Record<string, string> = { Accept: "application/json" };
  const t = token();
  if (t) headers.Authorization = "Bearer " + t;
  const res = await fetch(base + path, { method, headers, credentials: "same-origin", cache: "no-store" });
  const text = await res.text();
  if (!res.ok) {
    let err: { code?: string; message?: string } = {};
    try {
      err = JSON.parse(text).error ?? {};
    } catch { /* not the protocol's JSON */ }
    const e = new ApiError(res.status, err.code ?? "http_" + res.status, err.message ?? res.statusText);
    // A 403 here may be the loopback rule of a server without
    // authentication, under which the stats still flow: the stats
    // subscription's own refusal decides on a 403.
    if (res.status === 401) signIn(res.status, e.code);
    throw e;
  }
  return path.startsWith("/v1/") ? JSON.parse(text) : text;
}

// ---- cards: totals and rates, from the snapshots ----

interface Card {
  id: "held" | "topics" | "pub" | "del" | "polls" | "gaps" | "errors";
  title: string;
  unit: string;
  sub: (s: Snap) => string;
  alert?: (p: Point) => boolean;
  digits?: number;
}

const cards: Card[] = [
  { id: "held", title: "Held polls", unit: "", sub: () => (live.size === 1 ? "polls waiting now" : `polls waiting now on ${live.size} nodes`) },
  { id: "topics", title: "Topics", unit: "", sub: () => "topics in the store" },
  { id: "pub", title: "Published", unit: "/s", sub: (s) => `${fmt(s.published)} messages in all`, digits: 1 },
  { id: "del", title: "Delivered", unit: "/s", sub: (s) => `${fmt(s.delivered)} messages in all`, digits: 1 },
  { id: "polls", title: "Polls ended", unit: "/s", sub: (s) => `with messages ${fmt(s.polls?.messages ?? 0)} · timeout ${fmt(s.polls?.timeout ?? 0)} · cancelled ${fmt(s.polls?.cancelled ?? 0)}`, digits: 1 },
  { id: "gaps", title: "Gaps", unit: "/s", sub: (s) => `expired ${fmt(s.gaps?.expired ?? 0)} · reset ${fmt(s.gaps?.reset ?? 0)} · corrupt ${fmt(s.gaps?.corrupt ?? 0)} in all`, alert: (p) => (p.gaps ?? 0) > 0, digits: 1 },
  { id: "errors", title: "Errors", unit: "/s", sub: (s) => `polls ${fmt(s.polls?.error ?? 0)} · broker ${Object.entries(s.broker_errors ?? {}).map(([k, v]) => `${k} ${fmt(v)}`).join(" ")}`, alert: (p) => (p.errors ?? 0) > 0, digits: 1 },
];

const cardEls = new Map<string, { card: HTMLElement; value: HTMLElement; sub: HTMLElement; chart: HTMLElement }>();
for (const c of cards) {
  const card = document.createElement("section");
  card.className = "card";
  card.dataset.metric = c.id;
  const h = document.createElement("h2");
  h.textContent = c.title;
  const value = document.createElement("div");
  value.className = "value";
  value.textContent = "–";
  const sub = document.createElement("div");
  sub.className = "sub";
  const chart = document.createElement("div");
  chart.className = "chart small";
  card.append(h, value, sub, chart);
  if (c.id === "topics") card.hidden = true;
  $("cards").append(card);
  cardEls.set(c.id, { card, value, sub, chart });
}

// Every node of a cluster publishes its own snapshots to the one topic:
// a node's rates come from its own consecutive snapshots, and the page
// shows the sum over the nodes heard from lately.
interface NodeState {
  snap: Snap;
  t: number;
  rates: Pick<Point, "pub" | "del" | "polls" | "gaps" | "errors"> & { outcomes: Record<string, number> | null; refusals: Record<string, number> | null };
  delivery: number[] | null; // bucket deltas over its last interval
  publish: number[] | null;
}
const live = new Map<string, NodeState>();
let points: Point[] = [];
let lat: LatPoint[] = []; // from the snapshots
let latM: LatPoint[] = []; // from /metrics
let lastSnap: Snap | undefined;
let lastAt = 0;
/** Whether the snapshots carry latencies and refusals. */
let snapExtras = false;

function histDelta(a: Hist | undefined, b: Hist | undefined): number[] | null {
  if (!a || !b || a.n.length !== b.n.length) return null;
  const d = a.n.map((v, i) => v - b.n[i]);
  return d.some((v) => v < 0) ? null : d;
}
/** le with +Inf at the end when n has the total too. */
const bounds = (h: Hist) => (h.n.length === h.le.length + 1 ? [...h.le, Infinity] : h.le);

/** The q-quantile of cumulative bucket counts d at bounds le, in ms, interpolated as Prometheus does. */
function quantile(q: number, le: number[], d: number[]): number | null {
  const total = d[d.length - 1];
  if (!(total > 0)) return null;
  const rank = q * total;
  for (let i = 0; i < d.length; i++) {
    if (d[i] >= rank) {
      if (le[i] === Infinity) return (le[i - 1] ?? 0) * 1000;
      const lo = i > 0 ? le[i - 1] : 0, below = i > 0 ? d[i - 1] : 0;
      const inB = d[i] - below;
      return (lo + (le[i] - lo) * (inB > 0 ? (rank - below) / inB : 1)) * 1000;
    }
  }
  return null;
}
const quantiles = (le: number[], d: number[] | null): Quantiles | null => {
  if (!d) return null;
  const p50 = quantile(0.5, le, d), p90 = quantile(0.9, le, d), p99 = quantile(0.99, le, d);
  return p50 === null || p90 === null || p99 === null ? null : { p50, p90, p99 };
};

function mapRates(a: Record<string, number> | undefined, b: Record<string, number> | undefined, dt: number): Record<string, number> | null {
  if (!a || !b || !(dt > 0)) return null;
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(a)) {
    const p = b[k] ?? 0;
    if (v < p) return null; // a restarted server
    out[k] = (v - p) / dt;
  }
  return out;
}

function onSnap(m: Message<Snap>) {
  const s = m.data;
  if (!s || typeof s !== "object" || s.v !== 1) return;
  const t = Date.parse(s.time);
  const key = s.node ?? "";
  const prev = live.get(key)?.snap;
  const rates: NodeState["rates"] = { pub: null, del: null, polls: null, gaps: null, errors: null, outcomes: null, refusals: null };
  let delivery: number[] | null = null, publish: number[] | null = null;
  if (prev) {
    const dt = (t - Date.parse(prev.time)) / 1000;
    // A counter that went down is a restarted server: no rate across it.
    const rate = (a: number, b: number) => (dt > 0 && a >= b ? (a - b) / dt : null);
    rates.pub = rate(s.published, prev.published);
    rates.del = rate(s.delivered, prev.delivered);
    rates.polls = rate(sum(s.polls), sum(prev.polls));
    rates.gaps = rate(sum(s.gaps), sum(prev.gaps));
    rates.errors = rate(errorsOf(s), errorsOf(prev));
    rates.outcomes = mapRates(s.polls, prev.polls, dt);
    rates.refusals = mapRates(s.refusals, prev.refusals, dt);
    delivery = histDelta(s.delivery_latency, prev.delivery_latency);
    publish = histDelta(s.publish_latency, prev.publish_latency);
  }
  if (s.refusals || s.delivery_latency) snapExtras = true;
  live.set(key, { snap: s, t, rates, delivery, publish });
  // A node not heard from for three of its intervals has stopped.
  for (const [k, n] of live) if (t - n.t > 3 * Math.max(n.snap.interval_ms, 1000)) live.delete(k);
  const p: Point = { t, held: 0, topics: s.topics, pub: null, del: null, polls: null, gaps: null, errors: null, outcomes: {} };
  const total: Snap = { ...s, held: 0, published: 0, delivered: 0, polls: {}, gaps: {}, broker_errors: {} };
  const lp: LatPoint = { t, delivery: null, publish: null, refusals: null };
  let dSum: number[] | null = null, pSum: number[] | null = null;
  const add = (acc: number[] | null, d: number[] | null) => (d ? (acc && acc.length === d.length ? acc.map((v, i) => v + d[i]) : acc ?? d) : acc);
  for (const n of live.values()) {
    p.held += n.snap.held;
    for (const k of ["pub", "del", "polls", "gaps", "errors"] as const) {
      const r = n.rates[k];
      if (r !== null) p[k] = (p[k] ?? 0) + r;
    }
    for (const [k, v] of Object.entries(n.rates.outcomes ?? {})) p.outcomes[k] = (p.outcomes[k] ?? 0) + v;
    if (n.rates.refusals) {
      lp.refusals ??= {};
      for (const [k, v] of Object.entries(n.rates.refusals)) lp.refusals[k] = (lp.refusals[k] ?? 0) + v;
    }
    dSum = add(dSum, n.delivery);
    pSum = add(pSum, n.publish);
    total.published += n.snap.published;
    total.delivered += n.snap.delivered;
    for (const f of ["polls", "gaps", "broker_errors"] as const) {
      for (const [k, v] of Object.entries(n.snap[f] ?? {})) total[f][k] = (total[f][k] ?? 0) + v;
    }
  }
  if (s.delivery_latency) lp.delivery = quantiles(bounds(s.delivery_latency), dSum);
  if (s.publish_latency) lp.publish = quantiles(bounds(s.publish_latency), pSum);
  points.push(p);
  lat.push(lp);
  const cut = t - WINDOW_MS;
  if (points[0].t < cut) points = points.filter((q) => q.t >= cut);
  if (lat[0].t < cut) lat = lat.filter((q) => q.t >= cut);
  lastSnap = total;
  lastAt = Date.now();
  schedule();
}

// ---- latencies and refusals from /metrics, while the snapshots lack them ----

interface Scrape {
  t: number;
  delivery: Hist | undefined;
  publish: Hist | undefined;
  refusals: Record<string, number>;
}
let prevScrape: Scrape | undefined;
let metricsNote = "";

/** Reads the histograms and the refusals of the Prometheus text format. */
function parseMetrics(text: string, t: number): Scrape {
  const out: Scrape = { t, delivery: undefined, publish: undefined, refusals: {} };
  const hist: Record<string, Map<number, number>> = { delivery: new Map(), publish: new Map() };
  for (const line of text.split("\n")) {
    if (!line || line[0] === "#") continue;
    const m = /^([A-Za-z_:][\w:]*)(?:\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const label = (k: string) => new RegExp(`(?:^|,)${k}="([^"]*)"`).exec(m[2] ?? "")?.[1];
    const v = Number(m[3]);
    switch (m[1]) {
      case "longpoll_refusals_total": out.refusals[label("reason") ?? "?"] = v; break;
      case "longpoll_delivery_latency_seconds_bucket": hist.delivery.set(Number(label("le")?.replace("+Inf", "Infinity")), v); break;
      case "longpoll_publish_duration_seconds_bucket": hist.publish.set(Number(label("le")?.replace("+Inf", "Infinity")), v); break;
    }
  }
  for (const k of ["delivery", "publish"] as const) {
    const es = [...hist[k].entries()].sort((a, b) => a[0] - b[0]);
    if (es.length) out[k] = { le: es.map((e) => e[0]), n: es.map((e) => e[1]) };
  }
  return out;
}

async function scrapeMetrics() {
  if (snapExtras || metricsNote === "off") return;
  let text: string;
  try {
    text = await api("GET", "/metrics");
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) {
      metricsNote = "off";
      schedule();
    }
    return;
  }
  const s = parseMetrics(text, Date.now());
  const p = prevScrape;
  prevScrape = s;
  if (!p) return;
  const dt = (s.t - p.t) / 1000;
  latM.push({
    t: s.t,
    delivery: s.delivery ? quantiles(s.delivery.le, histDelta(s.delivery, p.delivery)) : null,
    publish: s.publish ? quantiles(s.publish.le, histDelta(s.publish, p.publish)) : null,
    refusals: mapRates(s.refusals, p.refusals, dt),
  });
  const cut = s.t - WINDOW_MS;
  if (latM[0].t < cut) latM = latM.filter((q) => q.t >= cut);
  metricsNote = "metrics";
  schedule();
}

// ---- topics, from the admin API ----

interface AdminTopic {
  topic: string;
  head: number;
  oldest: number;
  waiting: number;
  retained: number;
  bytes: number;
  last_publish?: string;
}
interface TopicRow extends AdminTopic {
  rate: number | null;
}
/** Labels of the cells, shown beside them where the table stacks (a phone). */
const TOPIC_LABELS: Record<string, string> = { waiting: "held", rate: "pub/s", head: "head", retained: "retained", last: "last" };
const NODE_LABELS: Record<string, string> = { held: "held", version: "version", store: "store" };
let rows: TopicRow[] = [];
let heads = new Map<string, { head: number; t: number }>();
let topicsPrefix = "";

async function refreshTopics() {
  const prefix = $<HTMLInputElement>("prefix").value.trim();
  const note = $("topics-note");
  const all: AdminTopic[] = [];
  let after = "", more = false;
  try {
    for (let page = 0; ; page++) {
      const q = new URLSearchParams({ limit: "1000" });
      if (prefix) q.set("prefix", prefix);
      if (after) q.set("after", after);
      const r = await api("GET", "/v1/admin/topics?" + q);
      all.push(...(r.topics ?? []));
      if (!r.next) break;
      if (page === 9) { more = true; break; } // 10,000 topics are enough to find the busiest
      after = r.next;
    }
  } catch (e) {
    note.textContent = e instanceof ApiError && e.status === 501 ? "this server's store cannot list its topics" : `topics: ${(e as Error).message}`;
    note.classList.add("error");
    return;
  }
  note.classList.remove("error");
  const t = performance.now();
  if (prefix !== topicsPrefix) heads = new Map();
  topicsPrefix = prefix;
  const next = new Map<string, { head: number; t: number }>();
  rows = all.map((x) => {
    const p = heads.get(x.topic);
    next.set(x.topic, { head: x.head, t });
    // A head that went back is a deleted and recreated topic: no rate across it.
    const rate = p && x.head >= p.head && t > p.t ? (x.head - p.head) / ((t - p.t) / 1000) : null;
    return { ...x, rate };
  });
  heads = next;
  note.textContent = `${all.length}${more ? "+" : ""} topic${all.length === 1 ? "" : "s"}${prefix ? ` starting with "${prefix}"` : ""}${all.length > ROWS ? `, the ${ROWS} busiest shown` : ""}`;
  drawTopics();
}

function drawTopics() {
  const by = $<HTMLSelectElement>("sort").value;
  const rate = (r: TopicRow) => r.rate ?? -1;
  const sorted = [...rows].sort((a, b) =>
    by === "rate" ? rate(b) - rate(a) || b.waiting - a.waiting || a.topic.localeCompare(b.topic)
      : b.waiting - a.waiting || rate(b) - rate(a) || a.topic.localeCompare(b.topic));
  const body = $("topics").querySelector("tbody")!;
  const trs = sorted.slice(0, ROWS).map((r) => {
    const tr = document.createElement("tr");
    tr.dataset.topic = r.topic;
    const cell = (col: string, text: string, title?: string) => {
      const td = document.createElement("td");
      td.dataset.col = col;
      td.dataset.label = TOPIC_LABELS[col] ?? "";
      td.textContent = text;
      if (title) td.title = title;
      tr.append(td);
      return td;
    };
    cell("topic", r.topic).className = "name";
    cell("waiting", String(r.waiting));
    cell("rate", r.rate === null ? "–" : fmt1(r.rate)).dataset.raw = r.rate === null ? "" : String(r.rate);
    cell("head", String(r.head));
    cell("retained", r.retained ? `${fmt(r.retained)} · ${fmtBytes(r.bytes)}` : "0");
    cell("last", ago(r.last_publish), r.last_publish);
    const td = cell("actions", "");
    const del = document.createElement("button");
    del.className = "delete";
    del.textContent = "Delete";
    del.setAttribute("aria-label", `delete topic ${r.topic}`);
    del.addEventListener("click", () => void deleteTopic(r.topic, r.retained, del));
    td.append(del);
    return tr;
  });
  if (!trs.length) {
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = 7;
    td.className = "muted";
    td.textContent = topicsPrefix ? "no topic starts with this prefix" : "no topics yet";
    tr.append(td);
    trs.push(tr);
  }
  body.replaceChildren(...trs);
  $("topics").dataset.loaded = "1";
}

async function deleteTopic(topic: string, retained: number, btn: HTMLButtonElement) {
  if (!confirm(`Delete topic "${topic}" and the ${retained} message${retained === 1 ? "" : "s"} it retains? This cannot be undone.`)) return;
  btn.disabled = true;
  try {
    await api("DELETE", "/v1/admin/topics/" + encodeURIComponent(topic));
    showError("");
  } catch (e) {
    if (!signedOut) showError(`Deleting ${topic}: ${(e as Error).message}`);
  }
  await refreshTopics();
}

// ---- nodes, from the admin API ----

interface AdminNode {
  node: string;
  version: string;
  started: string;
  seen?: string;
  store: { kind: string; ready: boolean };
  ready: boolean;
  polls_held: number;
  topics_waited: number;
  draining: boolean;
  nodes?: AdminNode[];
}

async function refreshNodes() {
  const note = $("nodes-note");
  let n: AdminNode;
  try {
    n = await api("GET", "/v1/admin/node");
  } catch (e) {
    note.textContent = `nodes: ${(e as Error).message}`;
    note.classList.add("error");
    return;
  }
  note.classList.remove("error");
  const all = [n, ...(n.nodes ?? [])];
  note.textContent = all.length === 1 ? "one node" : `${all.length} nodes sharing the store`;
  const trs = all.map((x, i) => {
    const tr = document.createElement("tr");
    tr.dataset.node = x.node;
    const cell = (col: string, text: string, cls = "") => {
      const td = document.createElement("td");
      td.dataset.col = col;
      td.dataset.label = NODE_LABELS[col] ?? "";
      td.textContent = text;
      if (cls) td.className = cls;
      tr.append(td);
      return td;
    };
    cell("node", x.node + (i === 0 ? " (this one)" : ""), "name");
    cell("held", String(x.polls_held));
    cell("ready", x.ready ? "ready" : "not ready", x.ready ? "ok" : "bad");
    cell("draining", x.draining ? "draining" : "no", x.draining ? "warn" : "");
    cell("version", x.version);
    cell("store", `${x.store.kind}${x.store.ready ? "" : " (not ready)"}`);
    cell("since", i === 0 ? `up since ${new Date(x.started).toLocaleString()}` : `seen ${ago(x.seen)}`);
    return tr;
  });
  $("nodes").querySelector("tbody")!.replaceChildren(...trs);
  $("nodes").dataset.loaded = "1";
}

// ---- drawing ----

let drawing = false;
function schedule() {
  // A first reply may carry a thousand snapshots: draw once after them.
  if (drawing) return;
  drawing = true;
  requestAnimationFrame(() => { drawing = false; draw(); });
  setTimeout(() => { if (drawing) { drawing = false; draw(); } }, 500); // hidden tabs get no frames
}
addEventListener("resize", schedule);

function span(ts: number[]): [number, number] {
  if (!ts.length) return [Date.now() - 60000, Date.now()];
  const t1 = ts[ts.length - 1];
  // The charts span the last five minutes, or what there is of them (a minute at least).
  return [Math.max(t1 - WINDOW_MS, Math.min(ts[0], t1 - 60000)), t1];
}

function draw() {
  drawCards();
  drawLatency();
  updated();
}

function drawCards() {
  const s = lastSnap;
  if (!s) return;
  const p = points[points.length - 1];
  const [t0, t1] = span(points.map((q) => q.t));
  for (const c of cards) {
    const e = cardEls.get(c.id)!;
    const v = p[c.id];
    if (c.id === "topics") e.card.hidden = s.topics === undefined;
    e.value.textContent = v === null || v === undefined ? "–" : fmt(v, c.digits);
    if (c.unit) { const u = document.createElement("small"); u.textContent = c.unit; e.value.append(u); }
    e.value.dataset.raw = v === null || v === undefined ? "" : String(v);
    e.sub.textContent = c.sub(s);
    e.card.classList.toggle("alert", !!c.alert?.(p));
    drawChart(e.chart, [{ name: c.title, points: points.map((q) => [q.t, (q[c.id] ?? null) as number | null]) }],
      { t0, t1, unit: c.unit, fmt: (x) => fmt(x, c.digits), axisFmt: axis, height: 84, noLegend: true });
  }
  const outcomes = OUTCOMES.map((k): Series => ({ name: OUTCOME_NAMES[k], points: points.map((q) => [q.t, q.polls === null ? null : q.outcomes[k] ?? 0]) }));
  drawChart($("chart-outcomes"), outcomes, { t0, t1, unit: "/s", fmt: fmt1, axisFmt: axis });
}

function drawLatency() {
  const src = snapExtras ? lat : latM;
  const from = $("latency-source");
  from.textContent = snapExtras ? "all nodes, from _longpoll.stats"
    : metricsNote === "metrics" ? "this node only, from /metrics (the stats snapshots do not carry these yet)"
    : metricsNote === "off" ? "unavailable: the stats snapshots do not carry these, and /metrics is not served on this address (--admin-addr)"
    : "waiting for two readings…";
  $("refusals-source").textContent = from.textContent;
  if (!src.length) return;
  const [t0, t1] = span(src.map((q) => q.t));
  const qs = (k: "delivery" | "publish"): Series[] => (["p50", "p90", "p99"] as const).map((p) => ({ name: p, points: src.map((q) => [q.t, q[k]?.[p] ?? null]) }));
  const ms = (v: number) => (v >= 10 ? fmt(v) : v >= 1 ? v.toFixed(1) : v.toFixed(2));
  for (const k of ["delivery", "publish"] as const) drawChart($(`chart-${k}`), qs(k), { t0, t1, unit: " ms", fmt: ms, axisFmt: axis });
  const reasons = [...new Set(src.flatMap((q) => Object.keys(q.refusals ?? {})))].sort();
  const seen = reasons.filter((r) => src.some((q) => (q.refusals?.[r] ?? 0) > 0));
  const refusals: Series[] = seen.map((r) => ({ name: r, points: src.map((q) => [q.t, q.refusals ? q.refusals[r] ?? 0 : null]) }));
  const host = $("chart-refusals");
  if (!refusals.length) {
    drawChart(host, [{ name: "all reasons", points: src.map((q) => [q.t, q.refusals ? 0 : null]) }], { t0, t1, unit: "/s", fmt: fmt1, axisFmt: axis });
    host.dataset.none = "1";
  } else {
    drawChart(host, refusals, { t0, t1, unit: "/s", fmt: fmt1, axisFmt: axis });
    delete host.dataset.none;
  }
}

const upd = $("updated");
function updated() {
  if (!lastSnap) return;
  const age = Math.round((Date.now() - lastAt) / 1000);
  const stale = Date.now() - lastAt > 3 * Math.max(lastSnap.interval_ms, 1000);
  upd.textContent = stale ? `no snapshot for ${age} s` : `updated ${new Date(lastSnap.time).toLocaleTimeString()}`;
  upd.classList.toggle("error", stale);
}
const ticker = setInterval(updated, 1000);

// ---- wiring ----

let timer: ReturnType<typeof setTimeout> | undefined;
async function refresh() {
  timer = undefined;
  if (document.visibilityState !== "hidden") await Promise.allSettled([refreshTopics(), refreshNodes(), scrapeMetrics()]);
  if (!signedOut) timer = setTimeout(refresh, REFRESH);
}

$("prefix").addEventListener("input", () => {
  clearTimeout(timer);
  timer = setTimeout(refresh, 300);
});
$("sort").addEventListener("change", drawTopics);

const client = new Client({ baseUrl: base, getToken: token });
const sub = client.subscribe<Snap>(TOPIC, onSnap, {
  since: "earliest",
  limit: 1000,
  onStatus: (s) => {
    if (signedOut) return;
    showStatus(s);
    if (s.state === "live") showError("");
  },
  onError: (e: LongpollError) => {
    if (e.status === 401 || e.status === 403) signIn(e.status, e.code);
  },
});

function stop() {
  sub.close();
  clearTimeout(timer);
  clearInterval(ticker);
}

void refresh();
