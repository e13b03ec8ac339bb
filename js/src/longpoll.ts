// The browser (and Node 18+) client of a longpoll server: protocol v1, as
// docs/protocol.md defines it and the Go client (client/) implements it.
//
// subscribe() keeps one poll in flight for a list of topics and calls back
// for each gap and message, in order, across reconnects and server
// restarts; publish() appends a message, retrying with the same
// idempotency id. No runtime dependencies: fetch and AbortController.

/** One message of a topic's log. */
export interface Message<T = unknown> {
  topic: string;
  /** Place in the topic's log: 1, 2, 3, ... without holes. */
  seq: number;
  /** When the server appended it: RFC 3339, UTC, nine fraction digits. */
  time: string;
  /** The publisher's idempotency key, when it gave one. */
  id?: string;
  /** The published JSON value. */
  data: T;
}

/** Messages the subscriber can no longer get (protocol.md, "gaps"). */
export interface Gap {
  topic: string;
  /**
   * expired: retention dropped `missed` messages; reset: the log is gone, or the cursor was refused;
   * corrupt: `missed` stored messages could not be read back (damaged store) and were skipped.
   */
  reason: "expired" | "reset" | "corrupt";
  missed?: number;
}

/** Where a subscription stands. */
export type Status =
  | { state: "connecting"; role: Role }
  | { state: "live"; role: Role }
  | { state: "waiting"; role: Role; /** ms until the next try */ delay: number; /** Date.now() of the next try */ until: number; error?: Error }
  | { state: "paused"; role: Role }
  | { state: "closed"; role: Role; error?: Error };

/** solo: polls for itself; leader: polls for every tab sharing with it; follower: receives from the leader. */
export type Role = "solo" | "leader" | "follower";

/** A place to keep the cursor: window.sessionStorage, window.localStorage or any look-alike. */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/** Settings shared by subscribe and publish. */
export interface ClientOptions {
  /** Server URL ("https://example.com", or with a path prefix). Default: this page's origin. Required in Node. */
  baseUrl?: string;
  /** Returns a bearer token; called before the first request and again when the server answers 401 token_expired or token_revoked. */
  getToken?: () => string | Promise<string>;
  /** fetch to use (default: globalThis.fetch). */
  fetch?: typeof fetch;
  /** fetch's credentials mode, for cookie tokens (default "same-origin"). */
  credentials?: RequestCredentials;
  /** Backoff with full jitter: attempt n waits a random time below min(cap, base·2ⁿ). Defaults 500 and 30000 ms. */
  backoffBase?: number;
  backoffCap?: number;
  /** The hold a poll asks of the server, ms (default 25000). */
  timeout?: number;
  /** Added to the hold to give each request its deadline, ms (default 10000). */
  margin?: number;
}

export interface SubscribeOptions extends ClientOptions {
  /** Where topics the cursor does not cover start: "head" (default) or "earliest". Also where a refused cursor starts again. */
  since?: "head" | "earliest";
  /** Most messages in one reply (server default 100, maximum 1000). */
  limit?: number;
  /** A cursor to start at; a cursor in storage takes precedence. */
  cursor?: string;
  /** Keep the cursor so a reloaded page resumes: "session", "local", a StorageLike, or null (default). */
  storage?: "session" | "local" | StorageLike | null;
  /** Storage key (default derived from the server, topics and since). */
  storageKey?: string;
  /** Share one poll among this origin's tabs with the same topics (Web Locks + BroadcastChannel). */
  share?: boolean;
  /** Stop polling while the page (every sharing tab, with share) is hidden. */
  pauseWhenHidden?: boolean;
  /** Called for each gap, before the messages of the same reply. */
  onGap?: (gap: Gap) => void;
  /** Called on each change of status. */
  onStatus?: (status: Status) => void;
  /** Called once when the subscription stops on an answer that retrying cannot mend. */
  onError?: (error: LongpollError) => void;
}

export interface PublishOptions extends ClientOptions {
  /** Idempotency key; default a random one, the same on every retry. */
  id?: string;
  /** Stop retrying (and abort) when this signal aborts. */
  signal?: AbortSignal;
  /** How long temporary failures are retried, ms (default 60000; 0: no retry). */
  retryFor?: number;
}

export interface Receipt {
  topic: string;
  seq: number;
  id: string;
  /** The server already had a message with this id: seq is the original's. */
  duplicate: boolean;
}

export interface Subscription {
  /** Stop: abort the request in flight, release every timer, listener, channel and lock. */
  close(): void;
  /** The position after the last reply taken ("" before the first). */
  readonly cursor: string;
  readonly status: Status;
  /** Resolves when the subscription has stopped: undefined after close(), the error after a fatal answer. */
  readonly done: Promise<LongpollError | undefined>;
}

/** An error answer of the server, or a failure to reach it. */
export class LongpollError extends Error {
  /** HTTP status; 0 when no answer came (network, deadline). */
  readonly status: number;
  /** The protocol's code ("forbidden", "token_expired", ...), or "network", "deadline", "protocol", "token". */
  readonly code: string;
  readonly requestId: string;
  /** Wait the server asked for, ms (retry_after_ms, else Retry-After); 0 if none. */
  readonly retryAfter: number;
  constructor(status: number, code: string, message: string, requestId = "", retryAfter = 0) {
    super(message);
    this.name = "LongpollError";
    this.status = status;
    this.code = code;
    this.requestId = requestId;
    this.retryAfter = retryAfter;
  }
  /** Whether trying again may bring another answer. */
  get temporary(): boolean {
    if (this.status === 0) return this.code === "network" || this.code === "deadline";
    return this.status >= 500 || this.status === 429 || this.status === 408;
  }
}

// staleToken: the server refused the request's token as one that a new
// token from getToken may replace: expired, or revoked by an admin.
const staleToken = (e: LongpollError) => e.status === 401 && (e.code === "token_expired" || e.code === "token_revoked");

export const DEFAULT_BACKOFF_BASE = 500;
export const DEFAULT_BACKOFF_CAP = 30000;
export const DEFAULT_TIMEOUT = 25000;
export const DEFAULT_MARGIN = 10000;
/** Longest query string sent with GET; past it a poll is a POST. */
export const MAX_QUERY = 4096;
/** Cap on a wait the server asks for. */
const MAX_SERVER_WAIT = 3600000;

const TOPIC = /^[A-Za-z0-9._:@/-]{1,256}$/;

/** The wait before retry number `attempt` (0-based): full jitter below min(cap, base·2^attempt), at least `floor` ms, at most an hour. */
export function backoffDelay(attempt: number, base: number, cap: number, floor = 0, rand: () => number = Math.random): number {
  const ceil = Math.min(cap, base * 2 ** Math.min(attempt, 40));
  return Math.min(Math.max(Math.floor(rand() * ceil), floor), MAX_SERVER_WAIT);
}

/** Reads a Retry-After header: whole seconds or an HTTP date; ms. */
export function parseRetryAfter(v: string | null): number {
  if (!v) return 0;
  if (/^\d+$/.test(v.trim())) return Math.min(Number(v) * 1000, MAX_SERVER_WAIT);
  const t = Date.parse(v);
  return Number.isNaN(t) ? 0 : Math.min(Math.max(t - Date.now(), 0), MAX_SERVER_WAIT);
}

const report = (e: unknown) => {
  const g = globalThis as { reportError?: (e: unknown) => void };
  if (typeof g.reportError === "function") g.reportError(e);
  else console.error(e);
};

const randomId = (): string => {
  const c = globalThis.crypto;
  if (c?.randomUUID) return c.randomUUID();
  return Math.random().toString(36).slice(2) + Date.now().toString(36);
};

interface Reply {
  messages: Message[];
  gaps: Gap[];
  cursor: string;
  timeout: boolean;
  retry_after_ms?: number;
}

// What tabs that share a subscription say to each other.
type Note =
  | { t: "reply"; reply: Reply }
  | { t: "status"; status: Status }
  | { t: "hello" }
  | { t: "state"; cursor: string; status: Status }
  | { t: "vis" };

/** Settings of a Client, resolved. */
class Conn {
  readonly base: string;
  readonly fetch: typeof fetch;
  readonly o: ClientOptions;
  private token: string | undefined;
  private tokenP: Promise<string> | undefined;

  constructor(o: ClientOptions) {
    this.o = o;
    let base = o.baseUrl;
    if (base === undefined) {
      const loc = (globalThis as { location?: { origin?: string } }).location;
      if (!loc?.origin) throw new TypeError("longpoll: baseUrl is required outside a browser");
      base = loc.origin;
    }
    this.base = base.replace(/\/+$/, "");
    const f = o.fetch ?? globalThis.fetch;
    if (typeof f !== "function") throw new TypeError("longpoll: no fetch: give options.fetch");
    // Called unbound: a browser's fetch refuses any other this than window.
    this.fetch = o.fetch ?? ((input, init) => globalThis.fetch(input, init));
  }

  get timeout() { return this.o.timeout ?? DEFAULT_TIMEOUT; }
  get margin() { return this.o.margin ?? DEFAULT_MARGIN; }

  // tok returns the current token, fetching it once for concurrent callers;
  // refresh forgets the one that the server said had expired.
  private async tok(refresh: boolean, stale: string | undefined): Promise<string | undefined> {
    const g = this.o.getToken;
    if (!g) return undefined;
    if (refresh && this.token === stale) { this.token = undefined; this.tokenP = undefined; }
    if (this.token !== undefined) return this.token;
    if (!this.tokenP) {
      const p = (async () => {
        try {
          const t = await g();
          if (typeof t !== "string") throw new TypeError("getToken returned " + typeof t);
          return t;
        } catch (e) {
          throw new LongpollError(0, "token", "getToken failed: " + (e as Error)?.message);
        }
      })();
      this.tokenP = p;
      p.then((t) => { if (this.tokenP === p) this.token = t; }, () => { if (this.tokenP === p) this.tokenP = undefined; });
    }
    return this.tokenP;
  }

  // call sends one request, with the token, and returns the 200 reply's
  // JSON; a 401 token_expired or token_revoked gets a new token and is
  // sent again, once.
  // deadline bounds each attempt; signal aborts it.
  async call(method: string, path: string, body: string | undefined, deadline: number, signal?: AbortSignal): Promise<any> {
    let stale: string | undefined;
    for (let refreshed = false; ; refreshed = true) {
      const tok = await this.tok(refreshed, stale);
      try {
        return await this.send(method, path, body, tok, deadline, signal);
      } catch (e) {
        if (!refreshed && e instanceof LongpollError && staleToken(e) && this.o.getToken) {
          stale = tok;
          continue;
        }
        throw e;
      }
    }
  }

  private async send(method: string, path: string, body: string | undefined, tok: string | undefined, deadline: number, signal?: AbortSignal): Promise<any> {
    const ac = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => { timedOut = true; ac.abort(); }, deadline);
    const onAbort = () => ac.abort();
    signal?.addEventListener("abort", onAbort);
    if (signal?.aborted) throw signal.reason;
    const headers: Record<string, string> = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (tok) headers.Authorization = "Bearer " + tok;
    try {
      let res: Response;
      let text: string;
      try {
        const f = this.fetch;
        res = await f(this.base + path, {
          method, headers, body, signal: ac.signal,
          credentials: this.o.credentials ?? "same-origin",
        });
        text = await res.text();
      } catch (e) {
        if (signal?.aborted) throw signal.reason ?? e;
        if (timedOut) throw new LongpollError(0, "deadline", `no answer within ${deadline} ms`);
        throw new LongpollError(0, "network", "cannot reach the server: " + ((e as Error)?.message ?? e));
      }
      const rid = res.headers.get("X-Request-Id") ?? "";
      let json: any;
      try { json = JSON.parse(text); } catch { json = undefined; }
      if (res.status === 200) {
        if (json === undefined || typeof json !== "object") throw new LongpollError(200, "protocol", "reply is not longpoll protocol v1 JSON");
        return json;
      }
      const err = json?.error ?? {};
      const ra = typeof err.retry_after_ms === "number" && err.retry_after_ms > 0
        ? Math.min(err.retry_after_ms, MAX_SERVER_WAIT)
        : parseRetryAfter(res.headers.get("Retry-After"));
      throw new LongpollError(res.status, typeof err.code === "string" ? err.code : "",
        `server answered ${res.status}${err.code ? " " + err.code : ""}: ${err.message ?? (res.statusText || "error")}`,
        err.request_id ?? rid, ra);
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    }
  }
}

/** A client of one server: the same options for every subscribe and publish. */
export class Client {
  private readonly conn: Conn;
  private readonly opts: ClientOptions;
  constructor(options: ClientOptions = {}) {
    this.opts = options;
    this.conn = new Conn(options);
  }

  /** Receives the messages of topics; see the module's subscribe. */
  subscribe<T = unknown>(topics: string | string[], onMessage: (m: Message<T>) => void, options: SubscribeOptions = {}): Subscription {
    const o = { ...this.opts, ...options };
    const conn = options === this.opts || !hasClientOpts(options) ? this.conn : new Conn(o);
    return new Sub(conn, topics, onMessage as (m: Message) => void, o);
  }

  /** Appends one message to topic. */
  async publish(topic: string, data: unknown, options: PublishOptions = {}): Promise<Receipt> {
    const [r] = await this.publishBatch([{ topic, data, id: options.id }], options);
    return r;
  }

  /**
   * Appends messages in order, all or nothing. Temporary failures (network,
   * 5xx, 429, 408) are retried with backoff, never sooner than the server's
   * Retry-After, for options.retryFor ms; every attempt carries the same
   * ids, so a retry never appends a message twice.
   */
  async publishBatch(messages: { topic: string; data: unknown; id?: string }[], options: PublishOptions = {}): Promise<Receipt[]> {
    const o = { ...this.opts, ...options };
    const conn = hasClientOpts(options) ? new Conn(o) : this.conn;
    if (messages.length === 0) return [];
    const wire = messages.map((m) => {
      checkTopic(m.topic);
      if (m.data === undefined) throw new TypeError("longpoll: publish: data is undefined");
      return { topic: m.topic, data: m.data, id: m.id || randomId() };
    });
    const body = JSON.stringify(wire.length === 1 ? wire[0] : { messages: wire });
    const until = Date.now() + (o.retryFor ?? 60000);
    const base = o.backoffBase ?? DEFAULT_BACKOFF_BASE, cap = o.backoffCap ?? DEFAULT_BACKOFF_CAP;
    for (let attempt = 0; ; attempt++) {
      options.signal?.throwIfAborted();
      try {
        const rep = await conn.call("POST", "/v1/publish", body, conn.timeout + conn.margin, options.signal);
        if (!Array.isArray(rep.messages) || rep.messages.length !== wire.length) {
          throw new LongpollError(200, "protocol", "publish reply is not longpoll protocol v1");
        }
        return rep.messages.map((r: any, i: number) => ({ topic: r.topic, seq: r.seq, id: wire[i].id, duplicate: !!r.duplicate }));
      } catch (e) {
        if (!(e instanceof LongpollError) || !e.temporary) throw e;
        const wait = backoffDelay(attempt, base, cap, e.retryAfter);
        if (Date.now() + wait > until) throw e;
        await delay(wait, options.signal);
      }
    }
  }
}

function hasClientOpts(o: ClientOptions): boolean {
  return o.baseUrl !== undefined || o.getToken !== undefined || o.fetch !== undefined || o.credentials !== undefined;
}

function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { signal?.removeEventListener("abort", stop); resolve(); }, ms);
    const stop = () => { clearTimeout(t); reject(signal!.reason); };
    signal?.addEventListener("abort", stop, { once: true });
  });
}

function checkTopic(t: string) {
  if (typeof t !== "string" || !TOPIC.test(t)) {
    throw new TypeError(`longpoll: topic ${JSON.stringify(t)}: 1 to 256 characters from A-Z a-z 0-9 . _ : @ / -`);
  }
}

/**
 * Receives the messages of topics: onMessage for each message and
 * options.onGap for each gap (before the messages of the same reply), per
 * topic in seq order, exactly once, across reconnects and server restarts.
 * Failed polls are retried with backoff; the subscription stops only on
 * close() or on an answer that retrying cannot mend (options.onError).
 */
export function subscribe<T = unknown>(topics: string | string[], onMessage: (m: Message<T>) => void, options: SubscribeOptions = {}): Subscription {
  return new Client(options).subscribe(topics, onMessage, options);
}

/** Appends one message to topic and returns where it went. */
export function publish(topic: string, data: unknown, options: PublishOptions = {}): Promise<Receipt> {
  return new Client(options).publish(topic, data, options);
}

const ABORT = Symbol("aborted");

class Sub implements Subscription {
  private readonly topics: string[];
  private readonly o: SubscribeOptions;
  private cur = "";
  private last = new Map<string, number>(); // topic -> last seq taken
  private st: Status;
  private role: Role = "solo";
  private closed = false;
  private running = false;
  private ac: AbortController | undefined; // the request in flight
  private timer: ReturnType<typeof setTimeout> | undefined;
  private wake: (() => void) | undefined; // ends the current wait
  private storage: StorageLike | null = null;
  private key: string;
  private paused = false;
  private catchingUp = false;
  private buffered: Reply[] = [];
  private bc: BroadcastChannel | undefined;
  private lockAC: AbortController | undefined;
  private releaseLead: (() => void) | undefined;
  private releaseVis: (() => void) | undefined;
  private visAC: AbortController | undefined;
  private onVis: (() => void) | undefined;
  private resolveDone!: (e: LongpollError | undefined) => void;
  readonly done: Promise<LongpollError | undefined>;

  constructor(private readonly conn: Conn, topics: string | string[], private readonly onMessage: (m: Message) => void, o: SubscribeOptions) {
    this.o = o;
    const list = typeof topics === "string" ? [topics] : [...topics];
    if (list.length === 0) throw new TypeError("longpoll: subscribe: no topics");
    list.forEach(checkTopic);
    this.topics = [...new Set(list)];
    if (o.limit !== undefined && !(Number.isInteger(o.limit) && o.limit > 0)) throw new TypeError("longpoll: limit must be a positive integer");
    if (o.since !== undefined && o.since !== "head" && o.since !== "earliest") throw new TypeError('longpoll: since must be "head" or "earliest"');
    this.done = new Promise((r) => (this.resolveDone = r));
    this.key = o.storageKey ?? `longpoll:${conn.base}|${o.since ?? "head"}|${[...this.topics].sort().join(",")}`;
    this.storage = pickStorage(o.storage);
    this.cur = o.cursor ?? "";
    this.load();
    const g = globalThis as any;
    const shared = !!o.share && typeof g.BroadcastChannel === "function" && !!g.navigator?.locks;
    this.st = { state: "connecting", role: shared ? "follower" : "solo" };
    this.emit(this.st);
    if (o.pauseWhenHidden && typeof g.document?.addEventListener === "function") this.watchVisibility(shared);
    if (shared) this.share();
    else this.start();
  }

  get cursor() { return this.cur; }
  get status() { return this.st; }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stop();
    this.setStatus({ state: "closed", role: this.role });
    this.resolveDone(undefined);
  }

  // stop releases everything the subscription holds.
  private stop() {
    this.ac?.abort(ABORT);
    this.ac = undefined;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.wake?.();
    if (this.onVis) (globalThis as any).document.removeEventListener("visibilitychange", this.onVis);
    this.onVis = undefined;
    this.visAC?.abort(ABORT);
    this.releaseVis?.();
    this.lockAC?.abort(ABORT);
    this.releaseLead?.();
    if (this.bc) { this.bc.onmessage = null; this.bc.close(); this.bc = undefined; }
  }

  private fail(e: LongpollError) {
    if (this.closed) return;
    this.closed = true;
    this.stop();
    this.setStatus({ state: "closed", role: this.role, error: e });
    try { this.o.onError?.(e); } catch (x) { report(x); }
    this.resolveDone(e);
  }

  private emit(s: Status) {
    try { this.o.onStatus?.(s); } catch (e) { report(e); }
  }

  private setStatus(s: Status) {
    const prev = this.st;
    this.st = s;
    if (s.state === prev.state && s.role === prev.role && s.state !== "waiting" && (s as any).error === (prev as any).error) return;
    this.emit(s);
    if (this.role === "leader" && s.state !== "closed") this.post({ t: "status", status: s });
  }

  private post(n: Note) {
    try { this.bc?.postMessage(n); } catch (e) { report(e); }
  }

  // ---- cursor storage

  private load() {
    if (!this.storage) return;
    try {
      const v = this.storage.getItem(this.key);
      if (!v) return;
      const s = JSON.parse(v);
      if (typeof s?.c === "string" && s.c) this.cur = s.c;
      if (s?.s && typeof s.s === "object") for (const [t, q] of Object.entries(s.s)) if (typeof q === "number") this.last.set(t, q);
    } catch { /* a corrupt entry starts per since */ }
  }

  private save() {
    if (!this.storage) return;
    try {
      if (!this.cur) this.storage.removeItem(this.key);
      else this.storage.setItem(this.key, JSON.stringify({ c: this.cur, s: Object.fromEntries(this.last) }));
    } catch (e) { report(e); }
  }

  // ---- taking a reply

  // take hands a reply's gaps, then its messages, to the callbacks,
  // dropping messages already taken (by topic and seq), and moves the
  // cursor. fromPeer: the reply came from the leader tab.
  private take(r: Reply, fromPeer: boolean) {
    for (const g of r.gaps) {
      if (this.closed) return;
      if (g.reason === "reset") this.last.delete(g.topic);
      else if (fromPeer && this.last.has(g.topic)) {
        // The leader missed these; this tab may not have, having caught up by itself.
        const first = r.messages.find((m) => m.topic === g.topic);
        if (first && first.seq <= this.last.get(g.topic)! + 1) continue;
      }
      try { this.o.onGap?.(g); } catch (e) { report(e); }
    }
    for (const m of r.messages) {
      if (this.closed) return;
      if ((this.last.get(m.topic) ?? 0) >= m.seq) continue;
      this.last.set(m.topic, m.seq);
      try { this.onMessage(m); } catch (e) { report(e); }
    }
    if (this.closed) return;
    if (!(fromPeer && this.role === "leader")) this.cur = r.cursor;
    this.save();
  }

  // ---- the poll loop

  private start() {
    if (this.running || this.closed) return;
    this.running = true;
    void this.loop();
  }

  private polling() {
    return !this.closed && (this.role === "solo" || this.role === "leader" || this.catchingUp);
  }

  private async loop() {
    try {
      await this.polls();
    } catch (e) {
      this.running = false;
      this.fail(e instanceof LongpollError ? e : new LongpollError(0, "internal", String(e)));
    }
  }

  // polls polls while this tab is to poll. It clears running in the same
  // step as its last check, so that a takeover never finds the loop
  // neither running nor about to poll.
  private async polls() {
    let attempt = 0;
    let live = false;
    const base = this.o.backoffBase ?? DEFAULT_BACKOFF_BASE;
    const cap = this.o.backoffCap ?? DEFAULT_BACKOFF_CAP;
    for (;;) {
      if (!this.polling()) {
        this.running = false;
        return;
      }
      if (this.paused && !this.catchingUp) {
        this.setStatus({ state: "paused", role: this.role });
        live = false;
        await this.sleep(-1);
        continue;
      }
      // Until a poll has succeeded, ask for an answer at once, so that
      // "live" is known without waiting a whole hold; a follower catching
      // up never holds.
      const probe = !live || (this.catchingUp && this.role !== "leader");
      if (!live) this.setStatus({ state: "connecting", role: this.role });
      let r: Reply;
      try {
        r = await this.poll(probe ? 0 : this.conn.timeout);
      } catch (e) {
        if (e === ABORT || this.closed) continue;
        if (!(e instanceof LongpollError)) throw e;
        if (e.status === 400 && e.code === "invalid_cursor" && this.cur) {
          // The position is lost: say so for every topic, start again per since.
          const reset: Reply = { messages: [], gaps: this.topics.map((topic) => ({ topic, reason: "reset" as const })), cursor: "", timeout: false };
          if (this.role === "leader") this.post({ t: "reply", reply: reset });
          this.take(reset, false);
          continue;
        }
        if (!(e.temporary || (staleToken(e) && this.o.getToken))) {
          this.running = false;
          this.fail(e);
          return;
        }
        live = false;
        const wait = backoffDelay(attempt++, base, cap, e.retryAfter);
        this.setStatus({ state: "waiting", role: this.role, delay: wait, until: Date.now() + wait, error: e });
        await this.sleep(wait);
        continue;
      }
      attempt = 0;
      live = true;
      if (this.catchingUp && this.role !== "leader") {
        this.take(r, false);
        if (r.timeout) this.caughtUp();
        continue;
      }
      if (this.catchingUp) this.caughtUp();
      this.setStatus({ state: "live", role: this.role });
      if (this.role === "leader") this.post({ t: "reply", reply: r });
      this.take(r, false);
      if (r.retry_after_ms && r.retry_after_ms > 0) {
        // The server is shutting down: come back when it says.
        live = false;
        const wait = Math.min(r.retry_after_ms, MAX_SERVER_WAIT);
        this.setStatus({ state: "waiting", role: this.role, delay: wait, until: Date.now() + wait });
        await this.sleep(wait);
      }
    }
  }

  // sleep waits ms (-1: until woken); close, a pause ending or a takeover wakes it.
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        if (this.timer !== undefined) clearTimeout(this.timer);
        this.timer = undefined;
        this.wake = undefined;
        resolve();
      };
      this.wake = done;
      if (this.closed) return done();
      if (ms >= 0) this.timer = setTimeout(done, ms);
    });
  }

  private async poll(hold: number): Promise<Reply> {
    const q = new URLSearchParams();
    for (const t of this.topics) q.append("topic", t);
    q.set("timeout", hold + "ms");
    if (this.cur) q.set("cursor", this.cur);
    if (this.o.since === "earliest") q.set("since", "earliest");
    if (this.o.limit) q.set("limit", String(this.o.limit));
    const qs = q.toString();
    let method = "GET", path = "/v1/poll?" + qs, body: string | undefined;
    if (qs.length > MAX_QUERY) {
      method = "POST";
      path = "/v1/poll";
      body = JSON.stringify({
        topics: this.topics, cursor: this.cur || undefined, timeout: hold + "ms",
        since: this.o.since === "earliest" ? "earliest" : undefined, limit: this.o.limit,
      });
    }
    const ac = new AbortController();
    this.ac = ac;
    try {
      const r = await this.conn.call(method, path, body, hold + this.conn.margin, ac.signal);
      if (typeof r.cursor !== "string" || !r.cursor || !Array.isArray(r.messages) || !Array.isArray(r.gaps)) {
        throw new LongpollError(200, "protocol", "poll reply is not longpoll protocol v1");
      }
      return r as Reply;
    } finally {
      if (this.ac === ac) this.ac = undefined;
    }
  }

  // ---- sharing among tabs

  private share() {
    const g = globalThis as any;
    this.role = "follower";
    this.bc = new g.BroadcastChannel(this.key) as BroadcastChannel;
    this.bc.onmessage = (ev: MessageEvent) => this.hear(ev.data as Note);
    this.lockAC = new AbortController();
    g.navigator.locks.request(this.key, { signal: this.lockAC.signal }, () => {
      if (this.closed) return undefined;
      return new Promise<void>((release) => {
        this.releaseLead = release;
        this.lead();
      });
    }).catch(() => { /* aborted by close */ });
    if (this.cur || this.o.since === "earliest") {
      // Catch up by itself from its own position (a reload, or history),
      // then follow; the leader's replies meanwhile wait.
      this.catchingUp = true;
      this.start();
    } else {
      this.post({ t: "hello" });
    }
  }

  private caughtUp() {
    this.catchingUp = false;
    const b = this.buffered;
    this.buffered = [];
    for (const r of b) this.take(r, true);
    // Following from now on: the leader says how it stands.
    if (this.role === "follower") this.post({ t: "hello" });
  }

  private lead() {
    this.role = "leader";
    if (this.catchingUp) this.caughtUp();
    this.setStatus({ ...this.st, role: "leader" } as Status);
    if (this.o.pauseWhenHidden) void this.checkVisible();
    this.wake?.();
    this.start();
  }

  private hear(n: Note) {
    if (this.closed || !n || typeof n !== "object") return;
    switch (n.t) {
      case "reply":
        if (this.catchingUp && this.role !== "leader") this.buffered.push(n.reply);
        else this.take(n.reply, true);
        break;
      case "status":
        if (this.role === "follower") this.setStatus({ ...n.status, role: "follower" } as Status);
        break;
      case "hello":
        if (this.role === "leader") this.post({ t: "state", cursor: this.cur, status: this.st });
        break;
      case "state":
        if (this.role === "follower") {
          if (!this.cur && n.cursor) { this.cur = n.cursor; this.save(); }
          this.setStatus({ ...n.status, role: "follower" } as Status);
        }
        break;
      case "vis":
        if (this.role === "leader") void this.checkVisible();
        break;
    }
  }

  // ---- Page Visibility

  private watchVisibility(shared: boolean) {
    const doc = (globalThis as any).document;
    this.onVis = () => {
      if (shared) this.holdVisLock(doc.visibilityState !== "hidden");
      else this.setPaused(doc.visibilityState === "hidden");
    };
    doc.addEventListener("visibilitychange", this.onVis);
    if (shared) this.holdVisLock(doc.visibilityState !== "hidden");
    else this.paused = doc.visibilityState === "hidden";
  }

  // Each visible tab holds a lock named after it, so the leader can tell
  // whether any tab is visible, closed tabs included (their locks go with them).
  private holdVisLock(visible: boolean) {
    const locks = (globalThis as any).navigator.locks;
    const name = this.key + "|visible|" + randomId();
    if (!visible) {
      this.releaseVis?.();
      this.releaseVis = undefined;
      return;
    }
    if (this.releaseVis) return;
    this.visAC = new AbortController();
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    this.releaseVis = release;
    locks.request(name, { signal: this.visAC.signal }, () => {
      this.post({ t: "vis" });
      if (this.role === "leader") void this.checkVisible();
      return held;
    }).then(() => {
      if (this.closed) return;
      this.post({ t: "vis" });
      if (this.role === "leader") void this.checkVisible();
    }, () => {});
  }

  private async checkVisible() {
    const locks = (globalThis as any).navigator.locks;
    const q = await locks.query();
    if (this.closed) return;
    const prefix = this.key + "|visible|";
    const here = (globalThis as any).document?.visibilityState !== "hidden";
    this.setPaused(!here && !(q.held ?? []).some((l: { name?: string }) => l.name?.startsWith(prefix)));
  }

  private setPaused(p: boolean) {
    if (p === this.paused) return;
    this.paused = p;
    if (p) this.ac?.abort(ABORT); // the poll in flight; its cursor stays
    else this.wake?.();
  }
}

function pickStorage(s: SubscribeOptions["storage"]): StorageLike | null {
  if (!s) return null;
  if (typeof s === "object") return s;
  try {
    const w = globalThis as any;
    return (s === "local" ? w.localStorage : w.sessionStorage) ?? null;
  } catch {
    return null; // storage disabled by the browser
  }
}
