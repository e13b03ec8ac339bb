// The demo page: a live chat on one topic, chosen in the page or in the
// address (/?topic=room1). The address may also choose the transport
// (&transport=auto|sse|poll) and auto's times in ms (&fallbackAfter=3000,
// &streamRetry=60000); a badge shows which transport carries the messages.
import { Client, type Gap, type Message, type Status, type SubscribeOptions } from "./longpoll";
import { base, cookieToken, showError, showStatus } from "./common";

/** Most messages the list keeps; older ones leave it. */
const MAX_ITEMS = 200;
const TOPIC = /^[A-Za-z0-9._:@/-]{1,256}$/;

type Item = { k: "m"; seq: number; time: string; data: unknown } | { k: "g"; gap: Gap };

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const list = $<HTMLOListElement>("messages");
const params = new URLSearchParams(location.search);
const topic = params.get("topic") || "demo";
$<HTMLInputElement>("topic").value = topic;
$<HTMLAnchorElement>("share").href = "?topic=" + encodeURIComponent(topic);
document.title = topic + " · longpoll demo";

// The list survives a reload with the cursor (both in sessionStorage), so
// a reloaded page shows what it had and resumes where it stopped.
const listKey = "longpoll-demo:list:" + topic;
let items: Item[] = [];
try { items = JSON.parse(sessionStorage.getItem(listKey) || "[]"); } catch { items = []; }
let saving = false;
const saveList = () => {
  if (saving) return;
  saving = true;
  queueMicrotask(() => {
    saving = false;
    try { sessionStorage.setItem(listKey, JSON.stringify(items)); } catch { /* full or disabled */ }
  });
};

const nameInput = $<HTMLInputElement>("name");
nameInput.value = localStorage.getItem("longpoll-demo:name") || "guest" + Math.floor(Math.random() * 9000 + 1000);
nameInput.addEventListener("change", () => localStorage.setItem("longpoll-demo:name", nameInput.value));

function render(it: Item): HTMLLIElement {
  const li = document.createElement("li");
  if (it.k === "g") {
    li.className = "gap";
    li.dataset.gap = it.gap.reason;
    const n = `${it.gap.missed} message${it.gap.missed === 1 ? "" : "s"}`;
    li.textContent = it.gap.reason === "expired"
      ? `gap: ${n} expired before this page read them`
      : it.gap.reason === "corrupt"
        ? `gap: ${n} could not be read back from the server's store`
        : "gap: the topic's log was reset (the server lost it, or the position was refused)";
    return li;
  }
  li.dataset.seq = String(it.seq);
  const meta = document.createElement("span");
  meta.className = "meta";
  meta.textContent = `#${it.seq} · ${new Date(it.time).toLocaleTimeString()}`;
  li.append(meta);
  const d = it.data as { name?: unknown; text?: unknown } | null;
  if (d && typeof d === "object" && typeof d.text === "string") {
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = typeof d.name === "string" ? d.name : "?";
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = d.text;
    li.append(who, text);
  } else {
    li.classList.add("raw");
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = JSON.stringify(it.data);
    li.append(text);
  }
  return li;
}

function add(it: Item) {
  const stick = list.parentElement!.scrollHeight - list.parentElement!.scrollTop - list.parentElement!.clientHeight < 40;
  items.push(it);
  list.append(render(it));
  while (items.length > MAX_ITEMS) { items.shift(); list.firstElementChild?.remove(); }
  $("empty").hidden = true;
  saveList();
  if (stick) list.lastElementChild?.scrollIntoView({ block: "end" });
}

for (const it of items) list.append(render(it));
$("empty").hidden = items.length > 0;
list.lastElementChild?.scrollIntoView({ block: "end" });

let gapFlash: ReturnType<typeof setTimeout> | undefined;

// transportOptions: what the address asks of the transport; values it
// does not know are left to the client's defaults.
function transportOptions(): SubscribeOptions {
  const o: SubscribeOptions = {};
  const t = params.get("transport");
  if (t === "auto" || t === "sse" || t === "poll") o.transport = t;
  for (const k of ["fallbackAfter", "streamRetry"] as const) {
    const v = Number(params.get(k));
    if (Number.isFinite(v) && v > 0) o[k] = v;
  }
  return o;
}

// showTransport shows in the badge what carries the messages: a stream, or
// long polls (for a tab that follows another, the other tab's).
function showTransport(s: Status) {
  if (!s.transport) return;
  const el = $("transport");
  el.hidden = false;
  el.dataset.transport = s.transport;
  el.textContent = s.transport === "stream" ? "stream" : "long-poll";
  el.title = s.transport === "stream"
    ? "messages arrive over one server-sent event stream (GET /v1/stream)"
    : "messages arrive over long polls (GET /v1/poll)";
}

if (!TOPIC.test(topic)) {
  showStatus({ state: "closed", role: "solo" });
  showError(`"${topic}" is not a topic name: 1 to 256 characters from A-Z a-z 0-9 . _ : @ / -`);
} else {
  const client = new Client({ baseUrl: base, getToken: cookieToken });
  const sub = client.subscribe(topic, (m: Message) => add({ k: "m", seq: m.seq, time: m.time, data: m.data }), {
    since: "earliest",
    storage: "session",
    share: !params.has("noshare"),
    pauseWhenHidden: true,
    ...transportOptions(),
    onGap: (gap) => {
      add({ k: "g", gap });
      const el = $("status");
      el.classList.add("gap");
      el.dataset.gap = gap.reason;
      if (!el.textContent!.includes("gap")) el.textContent += " · gap reported";
      clearTimeout(gapFlash);
      gapFlash = setTimeout(() => { el.classList.remove("gap"); }, 5000);
    },
    onStatus: (s) => {
      showStatus(s);
      showTransport(s);
      if (s.state === "live") showError("");
    },
  });
  (window as unknown as { longpollDemo: unknown }).longpollDemo = { sub, client, topic };

  const form = $<HTMLFormElement>("send");
  const text = $<HTMLInputElement>("text");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const t = text.value.trim();
    if (!t) return;
    text.value = "";
    try {
      await client.publish(topic, { name: nameInput.value.trim() || "guest", text: t });
      showError("");
    } catch (e) {
      if (!text.value) text.value = t;
      showError("not sent: " + (e as Error).message);
    }
  });
}
