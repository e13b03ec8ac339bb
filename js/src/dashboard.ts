// The live operations view: the server publishes a snapshot of its
// counters to _longpoll.stats each interval (internal/stats); this page
// receives them by long polling and draws rates and small charts.
import { Client, type Message } from "./longpoll";
import { base, cookieToken, showError, showStatus } from "./common";

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
}

const WINDOW_MS = 5 * 60 * 1000;
const TOPIC = "_longpoll.stats";

const sum = (r: Record<string, number> | undefined) => Object.values(r ?? {}).reduce((a, b) => a + b, 0);
const errorsOf = (s: Snap) => (s.polls?.error ?? 0) + sum(s.broker_errors);

interface Card {
  id: keyof Omit<Point, "t">;
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
  { id: "polls", title: "Polls ended", unit: "/s", sub: (s) => `timeout ${fmt(s.polls?.timeout ?? 0)} · cancelled ${fmt(s.polls?.cancelled ?? 0)} · shutdown ${fmt(s.polls?.shutdown ?? 0)}`, digits: 1 },
  { id: "gaps", title: "Gaps", unit: "/s", sub: (s) => `expired ${fmt(s.gaps?.expired ?? 0)} · reset ${fmt(s.gaps?.reset ?? 0)} · corrupt ${fmt(s.gaps?.corrupt ?? 0)} in all`, alert: (p) => (p.gaps ?? 0) > 0, digits: 1 },
  { id: "errors", title: "Errors", unit: "/s", sub: (s) => `polls ${fmt(s.polls?.error ?? 0)} · broker ${Object.entries(s.broker_errors ?? {}).map(([k, v]) => `${k} ${fmt(v)}`).join(" ")}`, alert: (p) => (p.errors ?? 0) > 0, digits: 1 },
];

function fmt(n: number, digits = 0): string {
  if (!Number.isFinite(n)) return "–";
  if (Math.abs(n) >= 1e6) return (n / 1e6).toFixed(1) + "M";
  if (Math.abs(n) >= 1e4) return (n / 1e3).toFixed(1) + "k";
  return n.toFixed(n % 1 === 0 ? 0 : digits);
}

const main = document.getElementById("cards")!;
const els = new Map<string, { card: HTMLElement; value: HTMLElement; sub: HTMLElement; line: SVGPolylineElement; area: SVGPolygonElement; max: SVGTitleElement }>();
const SVG = "http://www.w3.org/2000/svg";
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
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 300 48");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("aria-hidden", "true");
  const max = document.createElementNS(SVG, "title");
  const area = document.createElementNS(SVG, "polygon");
  const line = document.createElementNS(SVG, "polyline");
  svg.append(max, area, line);
  card.append(h, value, sub, svg);
  if (c.id === "topics") card.hidden = true;
  main.append(card);
  els.set(c.id, { card, value, sub, line, area, max });
}

// Every node of a cluster publishes its own snapshots to the one topic:
// a node's rates come from its own consecutive snapshots, and the page
// shows the sum over the nodes heard from lately. The counters in the
// cards' lines below are such sums too.
interface NodeState {
  snap: Snap;
  t: number;
  rates: Omit<Point, "t" | "held" | "topics">;
}
const live = new Map<string, NodeState>();
let points: Point[] = [];
let lastSnap: Snap | undefined;
let lastAt = 0;

function onSnap(m: Message<Snap>) {
  const s = m.data;
  if (!s || typeof s !== "object" || s.v !== 1) return;
  const t = Date.parse(s.time);
  const key = s.node ?? "";
  const prev = live.get(key)?.snap;
  const rates: NodeState["rates"] = { pub: null, del: null, polls: null, gaps: null, errors: null };
  if (prev) {
    const dt = (t - Date.parse(prev.time)) / 1000;
    // A counter that went down is a restarted server: no rate across it.
    const rate = (a: number, b: number) => (dt > 0 && a >= b ? (a - b) / dt : null);
    rates.pub = rate(s.published, prev.published);
    rates.del = rate(s.delivered, prev.delivered);
    rates.polls = rate(sum(s.polls), sum(prev.polls));
    rates.gaps = rate(sum(s.gaps), sum(prev.gaps));
    rates.errors = rate(errorsOf(s), errorsOf(prev));
  }
  live.set(key, { snap: s, t, rates });
  // A node not heard from for three of its intervals has stopped.
  for (const [k, n] of live) if (t - n.t > 3 * Math.max(n.snap.interval_ms, 1000)) live.delete(k);
  const p: Point = { t, held: 0, topics: s.topics, pub: null, del: null, polls: null, gaps: null, errors: null };
  const total: Snap = { ...s, held: 0, published: 0, delivered: 0, polls: {}, gaps: {}, broker_errors: {} };
  for (const n of live.values()) {
    p.held += n.snap.held;
    for (const k of ["pub", "del", "polls", "gaps", "errors"] as const) {
      const r = n.rates[k];
      if (r !== null) p[k] = (p[k] ?? 0) + r;
    }
    total.published += n.snap.published;
    total.delivered += n.snap.delivered;
    for (const f of ["polls", "gaps", "broker_errors"] as const) {
      for (const [k, v] of Object.entries(n.snap[f] ?? {})) total[f][k] = (total[f][k] ?? 0) + v;
    }
  }
  points.push(p);
  const cut = t - WINDOW_MS;
  if (points[0].t < cut) points = points.filter((q) => q.t >= cut);
  lastSnap = total;
  lastAt = Date.now();
  schedule();
}

let drawing = false;
function schedule() {
  // A first reply may carry a thousand snapshots: draw once after them.
  if (drawing) return;
  drawing = true;
  requestAnimationFrame(() => { drawing = false; draw(); });
  setTimeout(() => { if (drawing) { drawing = false; draw(); } }, 500); // hidden tabs get no frames
}

function draw() {
  const s = lastSnap;
  if (!s) return;
  const p = points[points.length - 1];
  // The charts span the last five minutes, or what there is of them.
  const t0 = Math.max(p.t - WINDOW_MS, Math.min(points[0].t, p.t - 10000));
  const span = p.t - t0;
  for (const c of cards) {
    const e = els.get(c.id)!;
    const v = p[c.id];
    if (c.id === "topics") e.card.hidden = s.topics === undefined;
    e.value.textContent = v === null || v === undefined ? "–" : fmt(v, c.digits);
    if (c.unit) { const u = document.createElement("small"); u.textContent = c.unit; e.value.append(u); }
    e.value.dataset.raw = v === null || v === undefined ? "" : String(v);
    e.sub.textContent = c.sub(s);
    e.card.classList.toggle("alert", !!c.alert?.(p));
    const series = points.filter((q) => q[c.id] !== null && q[c.id] !== undefined);
    const top = Math.max(1e-9, ...series.map((q) => q[c.id] as number));
    const xy = series.map((q) => `${(((q.t - t0) / span) * 300).toFixed(1)},${(46 - ((q[c.id] as number) / top) * 44).toFixed(1)}`);
    e.line.setAttribute("points", xy.join(" "));
    e.area.setAttribute("points", xy.length ? `${xy[0].split(",")[0]},48 ${xy.join(" ")} ${xy[xy.length - 1].split(",")[0]},48` : "");
    e.max.textContent = `max ${fmt(top, c.digits)}${c.unit} over the last 5 minutes`;
  }
  updated();
}

const upd = document.getElementById("updated")!;
function updated() {
  if (!lastSnap) return;
  const age = Math.round((Date.now() - lastAt) / 1000);
  const stale = Date.now() - lastAt > 3 * Math.max(lastSnap.interval_ms, 1000);
  upd.textContent = stale ? `no snapshot for ${age} s` : `updated ${new Date(lastSnap.time).toLocaleTimeString()}`;
  upd.classList.toggle("error", stale);
}
setInterval(updated, 1000);

const client = new Client({ baseUrl: base, getToken: cookieToken });
client.subscribe<Snap>(TOPIC, onSnap, {
  since: "earliest",
  limit: 1000,
  onStatus: (s) => {
    showStatus(s);
    if (s.state === "live") showError("");
  },
  onError: (e) => {
    if (e.status === 403 || e.status === 401) showError(`${e.message}. The dashboard needs a token with the admin grant (cookie longpoll_token).`);
  },
});
