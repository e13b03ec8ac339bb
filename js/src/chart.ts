// Line charts with a time axis and a value axis, drawn as SVG in the
// page's own pixels (no scaling, so the labels stay crisp and readable on
// a phone). No library: the page's CSP allows nothing from elsewhere.

/** One line: its points are [time in ms, value]; null breaks the line. */
export interface Series {
  name: string;
  points: Array<[number, number | null]>;
}

export interface ChartOptions {
  /** The time span shown, ms. */
  t0: number;
  t1: number;
  /** Appended to the value labels: "/s", " ms". */
  unit: string;
  fmt: (v: number) => string;
  /** Formats the value axis' labels; default fmt. */
  axisFmt?: (v: number) => string;
  /** Height in CSS pixels (default 140). */
  height?: number;
  /** No legend under the chart (a chart of one series named by its card). */
  noLegend?: boolean;
}

const SVG = "http://www.w3.org/2000/svg";

function el<K extends keyof SVGElementTagNameMap>(name: K, attrs: Record<string, string | number>, text?: string): SVGElementTagNameMap[K] {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/** The smallest of 1, 2, 2.5, 5 times a power of ten at or above v. */
export function niceMax(v: number): number {
  if (!(v > 0) || !Number.isFinite(v)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v * (1 - 1e-9)) return m * p;
  return 10 * p;
}

const STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600].map((s) => s * 1000);

function clock(t: number, step: number): string {
  const d = new Date(t);
  const two = (n: number) => String(n).padStart(2, "0");
  return step >= 60000 ? `${two(d.getHours())}:${two(d.getMinutes())}` : `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}

/**
 * Draws series into host (which gets an svg and a legend), replacing what
 * was there. host.dataset.n is the number of points drawn, for tests and
 * for styling an empty chart.
 */
export function drawChart(host: HTMLElement, series: Series[], o: ChartOptions) {
  const w = Math.max(160, Math.round(host.clientWidth || 300));
  const h = o.height ?? 140;
  const left = 46, right = 8, top = 8, bottom = 20;
  const pw = w - left - right, ph = h - top - bottom;
  const span = Math.max(1, o.t1 - o.t0);
  let top1 = 0, n = 0;
  for (const s of series) for (const [t, v] of s.points) if (v !== null && t >= o.t0) { n++; top1 = Math.max(top1, v); }
  const yMax = niceMax(top1);
  const x = (t: number) => left + ((t - o.t0) / span) * pw;
  const y = (v: number) => top + ph - (v / yMax) * ph;

  const svg = el("svg", { viewBox: `0 0 ${w} ${h}`, width: w, height: h, role: "img" });
  const label = series.map((s) => `${s.name} ${last(s) === null ? "–" : o.fmt(last(s)!) + o.unit}`).join(", ");
  svg.append(el("title", {}, `${label}; at most ${o.fmt(yMax)}${o.unit}`));
  const axes = el("g", { class: "axes" });
  for (const f of [0, 0.5, 1]) {
    const v = yMax * f;
    axes.append(el("line", { x1: left, x2: w - right, y1: y(v), y2: y(v), class: f === 0 ? "base" : "grid" }));
    axes.append(el("text", { x: left - 5, y: y(v) + 4, "text-anchor": "end" }, (o.axisFmt ?? o.fmt)(v) + o.unit));
  }
  const step = STEPS.find((s) => (span / s) * 64 <= pw) ?? STEPS[STEPS.length - 1];
  for (let t = Math.ceil(o.t0 / step) * step; t <= o.t1; t += step) {
    axes.append(el("line", { x1: x(t), x2: x(t), y1: top + ph, y2: top + ph + 4, class: "base" }));
    axes.append(el("text", { x: x(t), y: h - 4, "text-anchor": "middle" }, clock(t, step)));
  }
  svg.append(axes);
  series.forEach((s, i) => {
    let d = "";
    let pen = false;
    for (const [t, v] of s.points) {
      if (v === null || t < o.t0) { pen = false; continue; }
      d += `${pen ? "L" : "M"}${x(t).toFixed(1)} ${y(v).toFixed(1)}`;
      pen = true;
    }
    // A lone point is a dot, not an invisible line.
    const lone = s.points.filter(([t, v]) => v !== null && t >= o.t0).length === 1;
    svg.append(el("path", { d: lone ? d + "h0.01" : d, class: `line s${i % 6}`, "data-series": s.name }));
  });
  const kids: Node[] = [svg];
  if (!o.noLegend) {
    const legend = document.createElement("ul");
    legend.className = "legend";
    series.forEach((s, i) => {
      const li = document.createElement("li");
      li.className = `s${i % 6}`;
      li.dataset.series = s.name;
      const v = last(s);
      li.dataset.last = v === null ? "" : String(v);
      const name = document.createElement("span");
      name.textContent = s.name;
      const val = document.createElement("b");
      val.textContent = v === null ? "–" : o.fmt(v) + o.unit;
      li.append(name, val);
      legend.append(li);
    });
    kids.push(legend);
  }
  host.replaceChildren(...kids);
  host.dataset.n = String(n);
}

/** The series' last value, null when its last point is a break or it has none. */
export function last(s: Series): number | null {
  return s.points.length ? s.points[s.points.length - 1][1] : null;
}
