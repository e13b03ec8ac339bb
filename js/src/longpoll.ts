// The browser (and Node 18+) client of a longpoll server: protocol v1, as
// docs/protocol.md defines it and the Go client (client/) implements it.
//
// subscribe() keeps one stream (GET /v1/stream, server-sent events read
// through fetch) or one poll in flight for a list of topics and calls back
// for each gap and message, in order, across reconnects, server restarts
// and switches between the two; publish() appends a message, retrying with
// the same idempotency id. No runtime dependencies: fetch, AbortController
// and, for streams, ReadableStream and TextDecoder.

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
export type Status = (
  | { state: "connecting"; role: Role }
  | { state: "live"; role: Role }
  | { state: "waiting"; role: Role; /** ms until the next try */ delay: number; /** Date.now() of the next try */ until: number; error?: Error }
  | { state: "paused"; role: Role }
  | { state: "closed"; role: Role; error?: Error }
) & {
  /** What carries the messages (with share, the leader's): a stream, or long polls. Every status the client emits has it. */
  transport?: ActiveTransport;
};

/** auto: a stream, long polling while it does not get through; sse: always a stream; poll: always long polling. */
export type Transport = "auto" | "sse" | "poll";
/** The transport in use: stream (GET /v1/stream) or poll (GET or POST /v1/poll). */
export type ActiveTransport = "stream" | "poll";

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
  /**
   * "auto" (default): a stream where fetch can read a body as it arrives, and long polling for
   * streamRetry after a stream stayed silent for fallbackAfter or failed twice in a row; "sse":
   * always a stream; "poll": always long polling. See docs/browser.md, "Transports".
   */
  transport?: Transport;
  /** A stream that sends nothing, not even a ping, for this long is given up, ms (default 40000: the server pings every 15 s). */
  fallbackAfter?: number;
  /** auto: how long to long-poll after giving a stream up, ms (default 300000), doubled at each fallback in a row, up to an hour. */
  streamRetry?: number;
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
  /** What carries the messages now: "stream" or "poll" (status.transport). */
  readonly transport: ActiveTransport;
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
/** A stream silent for this long (no event, no ping) is given up, ms: 2.5 of the server's 15 s pings, plus a margin. */
export const DEFAULT_FALLBACK_AFTER = 40000;
/** How long "auto" long-polls after giving a stream up before it tries one again, ms. */
export const DEFAULT_STREAM_RETRY = 300000;
/** The longest wait before a stream is tried again, however many fallbacks in a row. */
const MAX_STREAM_RETRY = 3600000;
/** Largest event a stream may send, in characters: a whole reply of 1000 messages of 64 KiB and their framing. */
const MAX_EVENT = 80 << 20;
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

/** One event of a server-sent event stream, as dispatched. */
export interface ServerEvent {
  /** The event field, "message" when the stream named none. */
  type: string;
  /** The data lines, joined with "\n". */
  data: string;
  /** The stream's last event id once this event was dispatched. */
  id: string;
}

/**
 * Reads a text/event-stream as the WHATWG HTML standard's "Interpreting an
 * event stream" does: lines end with CRLF, LF or CR, also when a chunk
 * ends between the CR and the LF; a leading byte order mark is dropped; a
 * line starting with a colon is a comment; "field: value" loses one space
 * after the colon, and a line without a colon is a field with an empty
 * value; data lines are joined with LF; an id holding NUL is ignored, and
 * a retry that is not all digits; a blank line dispatches the event,
 * unless no data came, in which case it still sets the last event id.
 * Input that ends inside an event is not an event.
 *
 * push takes the decoded text as it arrives, in chunks cut anywhere, and
 * returns the events that are whole. What it holds is bounded: an event's
 * data and the line being read together stay under max characters, else
 * push throws.
 */
export class EventStreamParser {
  /** The last event id, set from the id field at each blank line. */
  lastEventId = "";
  /** The last retry field, ms; -1 before any. */
  retry = -1;
  /** Lines read, comments and blank lines included. */
  lines = 0;
  private line = ""; // the line being read, before its end
  private started = false; // the byte order mark was looked for
  private skipLF = false; // the last line ended with CR: a LF next belongs to it
  private type = "";
  private data = "";
  private id = "";

  constructor(private readonly max = MAX_EVENT) {}

  push(chunk: string): ServerEvent[] {
    const out: ServerEvent[] = [];
    let i = 0;
    if (!this.started && chunk.length > 0) {
      this.started = true;
      if (chunk.charCodeAt(0) === 0xfeff) i = 1;
    }
    while (i < chunk.length) {
      if (this.skipLF) {
        this.skipLF = false;
        if (chunk.charCodeAt(i) === 10) { i++; continue; }
      }
      let j = i;
      while (j < chunk.length) {
        const c = chunk.charCodeAt(j);
        if (c === 10 || c === 13) break;
        j++;
      }
      if (j === chunk.length) {
        this.line += chunk.slice(i);
        if (this.line.length + this.data.length > this.max) throw new LongpollError(200, "protocol", "stream: an event larger than " + this.max + " characters");
        break;
      }
      const line = this.line + chunk.slice(i, j);
      this.line = "";
      this.skipLF = chunk.charCodeAt(j) === 13;
      i = j + 1;
      const ev = this.field(line);
      if (ev) out.push(ev);
      if (this.data.length > this.max) throw new LongpollError(200, "protocol", "stream: an event larger than " + this.max + " characters");
    }
    return out;
  }

  private field(line: string): ServerEvent | undefined {
    this.lines++;
    if (line === "") return this.dispatch();
    if (line.charCodeAt(0) === 58) return undefined; // ":" a comment: a ping
    let name = line, value = "";
    const c = line.indexOf(":");
    if (c >= 0) {
      name = line.slice(0, c);
      value = line.slice(c + 1);
      if (value.charCodeAt(0) === 32) value = value.slice(1);
    }
    switch (name) {
      case "event": this.type = value; break;
      case "data": this.data += value + "\n"; break;
      case "id": if (!value.includes("\0")) this.id = value; break;
      case "retry": if (/^[0-9]+$/.test(value)) this.retry = Number(value); break;
    }
    return undefined;
  }

  private dispatch(): ServerEvent | undefined {
    this.lastEventId = this.id;
    if (this.data === "") {
      this.type = "";
      return undefined;
    }
    const ev = { type: this.type || "message", data: this.data.slice(0, -1), id: this.lastEventId };
    this.type = "";
    this.data = "";
    return ev;
  }
}

// The status of a JSON error reply with each code, for the error objects
// that end a stream (docs/protocol.md, "Errors"); an unknown code is taken
// as a 500, to be retried.
const CODE_STATUS: Record<string, number> = {
  invalid_topic: 400, invalid_cursor: 400, invalid_parameter: 400, invalid_body: 400, too_many_topics: 400,
  unauthorized: 401, token_expired: 401, token_revoked: 401, forbidden: 403, not_found: 404,
  rate_limited: 429, overloaded: 503, store_full: 503, broker_unavailable: 503, shutting_down: 503, draining: 503,
};

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
      let json: any;
      try { json = JSON.parse(text); } catch { json = undefined; }
      if (res.status === 200) {
        if (json === undefined || typeof json !== "object") throw new LongpollError(200, "protocol", "reply is not longpoll protocol v1 JSON");
        return json;
      }
      throw answerError(res, json);
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    }
  }

  // stream opens GET path as an event stream, with the token (a 401
  // token_expired or token_revoked gets a new one and is sent again, once),
  // and returns its body's reader and the token it was opened with. stale
  // is a token that ended a stream before: it is replaced first, and then
  // not again. The body has no deadline: the caller times its silences.
  async stream(path: string, signal: AbortSignal, stale?: string): Promise<{ reader: ReadableStreamDefaultReader<Uint8Array>; tok: string | undefined }> {
    let refreshed = stale !== undefined;
    for (;;) {
      const tok = await this.tok(refreshed, stale);
      try {
        return { reader: await this.open(path, tok, signal), tok };
      } catch (e) {
        if (!refreshed && e instanceof LongpollError && staleToken(e) && this.o.getToken) {
          stale = tok;
          refreshed = true;
          continue;
        }
        throw e;
      }
    }
  }

  private async open(path: string, tok: string | undefined, signal: AbortSignal): Promise<ReadableStreamDefaultReader<Uint8Array>> {
    // The cursor goes in the query, not in Last-Event-ID: a header that
    // CORS does not list would cost a preflight, and the server takes both.
    const headers: Record<string, string> = { Accept: "text/event-stream" };
    if (tok) headers.Authorization = "Bearer " + tok;
    let res: Response;
    try {
      res = await this.fetch(this.base + path, { method: "GET", headers, signal, credentials: this.o.credentials ?? "same-origin" });
      if (res.status !== 200) {
        const text = await res.text();
        let json: any;
        try { json = JSON.parse(text); } catch { json = undefined; }
        throw answerError(res, json);
      }
    } catch (e) {
      if (signal.aborted) throw signal.reason ?? e;
      if (e instanceof LongpollError) throw e;
      throw new LongpollError(0, "network", "cannot reach the server: " + ((e as Error)?.message ?? e));
    }
    const ct = res.headers.get("Content-Type") ?? "";
    if (!/^\s*text\/event-stream\s*(;|$)/i.test(ct) || typeof res.body?.getReader !== "function") {
      res.body?.cancel().catch(() => {});
      throw new LongpollError(200, "protocol", `stream answered with Content-Type "${ct}", not an event stream`);
    }
    return res.body.getReader();
  }
}

// answerError is the error of an answer other than 200, from its JSON
// error object when it has one.
function answerError(res: Response, json: any): LongpollError {
  const rid = res.headers.get("X-Request-Id") ?? "";
  const err = json?.error ?? {};
  const ra = typeof err.retry_after_ms === "number" && err.retry_after_ms > 0
    ? Math.min(err.retry_after_ms, MAX_SERVER_WAIT)
    : parseRetryAfter(res.headers.get("Retry-After"));
  return new LongpollError(res.status, typeof err.code === "string" ? err.code : "",
    `server answered ${res.status}${err.code ? " " + err.code : ""}: ${err.message ?? (res.statusText || "error")}`,
    err.request_id ?? rid, ra);
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
const SILENT = Symbol("silent");

// How one stream ended.
interface StreamEnd {
  /** Stopped from here: close, a pause. */
  aborted?: boolean;
  /** Nothing came for fallbackAfter. */
  silent?: boolean;
  /** A line (an event, a ping, the retry field) came: the stream got through. */
  progressed?: boolean;
  /** A close event, with its retry_after_ms (0 when none). */
  closeWait?: number;
  /** Why it ended otherwise. */
  error?: LongpollError;
  /** The error came in an error event, after the stream had started. */
  event?: boolean;
  /** The token it was opened with. */
  tok?: string;
  /** The stream's retry field, ms; -1 when none came. */
  retry: number;
}

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
  private readonly mode: Transport; // "auto" only where a stream can be read
  private tp: ActiveTransport = "poll";
  private pollUntil = 0; // auto: Date.now() until which it long-polls
  private fallbacks = 0; // auto: fallbacks to polling in a row
  private streamFails = 0; // streams in a row that failed before any line came
  private streamAttempt = 0; // backoff attempt of the stream
  private staleTok: string | undefined; // a token that ended the last stream
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
    const tr = o.transport ?? "auto";
    if (tr !== "auto" && tr !== "sse" && tr !== "poll") throw new TypeError('longpoll: transport must be "auto", "sse" or "poll"');
    for (const k of ["fallbackAfter", "streamRetry"] as const) {
      if (o[k] !== undefined && !(typeof o[k] === "number" && o[k]! > 0)) throw new TypeError(`longpoll: ${k} must be a positive number of ms`);
    }
    const g0 = globalThis as any;
    const canStream = typeof g0.ReadableStream === "function" && typeof g0.TextDecoder === "function";
    if (tr === "sse" && !canStream) throw new TypeError('longpoll: transport "sse" needs ReadableStream and TextDecoder');
    // A topic list too long for a URL is polled with POST: streams are GETs.
    const long = this.topics.reduce((n, t) => n + 7 + encodeURIComponent(t).length, 0) > MAX_QUERY;
    this.mode = tr === "auto" && (!canStream || long) ? "poll" : tr;
    this.done = new Promise((r) => (this.resolveDone = r));
    this.key = o.storageKey ?? `longpoll:${conn.base}|${o.since ?? "head"}|${[...this.topics].sort().join(",")}`;
    this.storage = pickStorage(o.storage);
    this.cur = o.cursor ?? "";
    this.load();
    const g = globalThis as any;
    const shared = !!o.share && typeof g.BroadcastChannel === "function" && !!g.navigator?.locks;
    this.st = { state: "connecting", role: shared ? "follower" : "solo", transport: "poll" };
    this.emit(this.st);
    if (o.pauseWhenHidden && typeof g.document?.addEventListener === "function") this.watchVisibility(shared);
    if (shared) this.share();
    else this.start();
  }

  get cursor() { return this.cur; }
  get status() { return this.st; }
  get transport(): ActiveTransport { return this.st.transport ?? this.tp; }

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

  // setStatus takes s as the status; one without a transport gets this tab's.
  private setStatus(s: Status) {
    if (!s.transport) s = { ...s, transport: this.tp };
    const prev = this.st;
    this.st = s;
    if (s.state === prev.state && s.role === prev.role && s.transport === prev.transport && s.state !== "waiting" && (s as any).error === (prev as any).error) return;
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
      if (!probe && this.streamNow()) {
        if (await this.streamStep()) live = false;
        continue;
      }
      if (!live) {
        this.tp = "poll";
        this.setStatus({ state: "connecting", role: this.role });
      }
      // Polls that stand in for a stream hold only until it is time to try
      // the stream again; with no position yet, they take one at once.
      let hold = probe ? 0 : this.conn.timeout;
      if (this.mode !== "poll") hold = Math.min(hold, Math.max(0, this.pollUntil - Date.now()));
      let r: Reply;
      try {
        r = await this.poll(hold);
      } catch (e) {
        if (e === ABORT || this.closed) continue;
        if (!(e instanceof LongpollError)) throw e;
        if (e.status === 400 && e.code === "invalid_cursor" && this.cur) {
          this.resetCursor();
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
      this.tp = "poll";
      this.setStatus({ state: "live", role: this.role });
      this.deliver(r);
      if (r.retry_after_ms && r.retry_after_ms > 0) {
        // The server is shutting down: come back when it says.
        live = false;
        const wait = Math.min(r.retry_after_ms, MAX_SERVER_WAIT);
        this.setStatus({ state: "waiting", role: this.role, delay: wait, until: Date.now() + wait });
        await this.sleep(wait);
      }
    }
  }

  // resetCursor drops a cursor the server refused: a reset gap for every
  // topic, and a start per since.
  private resetCursor() {
    const reset: Reply = { messages: [], gaps: this.topics.map((topic) => ({ topic, reason: "reset" as const })), cursor: "", timeout: false };
    this.deliver(reset);
  }

  // deliver takes a reply of this tab's poll or stream, and passes it to the others.
  private deliver(r: Reply) {
    if (this.role === "leader") this.post({ t: "reply", reply: r });
    this.take(r, false);
  }

  // ---- the stream

  // streamNow: the next request is to be a stream. A stream needs a
  // position to start from, so that one that ends before its first event
  // resumes from there and not from a later head: without a cursor, a
  // poll answered at once takes one first.
  private streamNow(): boolean {
    if (this.mode === "poll" || !this.cur) return false;
    return this.mode === "sse" || Date.now() >= this.pollUntil;
  }

  // streamStep runs one stream from the cursor until it ends, then decides
  // what follows: the stream again, at once or after a wait, or (auto)
  // long polling. It reports whether polling starts anew: the next poll is
  // to be answered at once.
  private async streamStep(): Promise<boolean> {
    const end = await this.stream();
    if (this.closed || end.aborted) return false;
    if (end.progressed) {
      this.streamFails = 0;
      this.streamAttempt = 0;
      this.fallbacks = 0;
    }
    if (end.closeWait !== undefined) {
      // The server ended it (its time is up, or it drains or stops):
      // reconnect from the last id, after the wait it asked for.
      if (end.closeWait > 0) {
        this.setStatus({ state: "waiting", role: this.role, delay: end.closeWait, until: Date.now() + end.closeWait });
        await this.sleep(end.closeWait);
      }
      return false;
    }
    const e = end.error!;
    // A buffering proxy holds the events and the pings: poll a while.
    if (end.silent && this.mode === "auto") return this.fallBack();
    if (e.status === 400 && e.code === "invalid_cursor" && this.cur) {
      this.resetCursor();
      return false;
    }
    if (end.event && staleToken(e) && this.o.getToken) {
      // As a poll does: a new token, asked for once, and on at once.
      this.staleTok = end.tok;
      return false;
    }
    // A server or a proxy that serves no streams: poll.
    if (this.mode === "auto" && (e.code === "protocol" || e.status === 404 || e.status === 405 || e.status === 501)) return this.fallBack();
    if (!(e.temporary || (staleToken(e) && this.o.getToken))) {
      this.fail(e);
      return false;
    }
    if (!end.progressed && ++this.streamFails >= 2 && this.mode === "auto") return this.fallBack();
    const floor = Math.max(e.retryAfter, end.retry >= 0 ? Math.min(end.retry, MAX_SERVER_WAIT) : 0);
    const wait = backoffDelay(this.streamAttempt++, this.o.backoffBase ?? DEFAULT_BACKOFF_BASE, this.o.backoffCap ?? DEFAULT_BACKOFF_CAP, floor);
    this.setStatus({ state: "waiting", role: this.role, delay: wait, until: Date.now() + wait, error: e });
    await this.sleep(wait);
    return false;
  }

  // fallBack gives the stream up for long polling: for streamRetry, doubled
  // at each fallback in a row, at most an hour.
  private fallBack(): boolean {
    const base = this.o.streamRetry ?? DEFAULT_STREAM_RETRY;
    this.pollUntil = Date.now() + Math.min(base * 2 ** Math.min(this.fallbacks, 30), MAX_STREAM_RETRY);
    this.fallbacks++;
    this.streamFails = 0;
    this.streamAttempt = 0;
    this.tp = "poll";
    return true;
  }

  // stream reads one stream from the cursor, delivering its events, until
  // it ends; a stream silent for fallbackAfter is given up.
  private async stream(): Promise<StreamEnd> {
    const q = new URLSearchParams();
    for (const t of this.topics) q.append("topic", t);
    q.set("cursor", this.cur);
    if (this.o.since === "earliest") q.set("since", "earliest");
    if (this.o.limit) q.set("limit", String(this.o.limit));
    const ac = new AbortController();
    this.ac = ac;
    const end: StreamEnd = { retry: -1 };
    const silence = this.o.fallbackAfter ?? DEFAULT_FALLBACK_AFTER;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const arm = () => {
      if (timer !== undefined) clearTimeout(timer);
      timer = setTimeout(() => { end.silent = true; ac.abort(SILENT); }, silence);
    };
    if (!(this.st.state === "live" && this.tp === "stream")) {
      this.tp = "stream";
      this.setStatus({ state: "connecting", role: this.role });
    }
    arm();
    let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
    try {
      const stale = this.staleTok;
      this.staleTok = undefined;
      const s = await this.conn.stream("/v1/stream?" + q.toString(), ac.signal, stale);
      reader = s.reader;
      end.tok = s.tok;
      const dec = new TextDecoder();
      const p = new EventStreamParser();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) throw new LongpollError(0, "network", "the stream ended without a close event");
        arm();
        const evs = p.push(dec.decode(value, { stream: true }));
        end.retry = p.retry;
        if (!end.progressed && p.lines > 0) {
          end.progressed = true;
          this.streamFails = 0;
          this.setStatus({ state: "live", role: this.role });
        }
        if (this.events(evs, end) || this.closed) break;
      }
    } catch (e) {
      if (end.silent) end.error = new LongpollError(0, "deadline", `the stream sent nothing for ${silence} ms`);
      else if (ac.signal.aborted || this.closed) end.aborted = true;
      else if (e instanceof LongpollError) end.error = e;
      else end.error = new LongpollError(0, "network", "the stream broke: " + ((e as Error)?.message ?? e));
    } finally {
      if (timer !== undefined) clearTimeout(timer);
      if (this.ac === ac) this.ac = undefined;
      if (!ac.signal.aborted) ac.abort(ABORT); // the connection, after a close or error event
      reader?.cancel().catch(() => {});
    }
    return end;
  }

  // events delivers a batch of a stream's events, as a poll's reply: the
  // cursor is the last one's id; a gap after messages starts a new reply,
  // so that every reply has its gaps first. It reports whether an event
  // ended the stream (close, error), noting how in end.
  private events(evs: ServerEvent[], end: StreamEnd): boolean {
    let r: Reply | undefined;
    const flush = () => { if (r) { const x = r; r = undefined; this.deliver(x); } };
    const parse = (ev: ServerEvent) => {
      try { return JSON.parse(ev.data); } catch { throw new LongpollError(200, "protocol", `stream: a ${ev.type} event whose data is not JSON`); }
    };
    for (const ev of evs) {
      if (this.closed) return true;
      switch (ev.type) {
        case "message":
        case "gap": {
          const v = parse(ev);
          if (!ev.id || typeof v !== "object" || v === null || typeof v.topic !== "string") {
            throw new LongpollError(200, "protocol", `stream: a ${ev.type} event that is not longpoll protocol v1`);
          }
          if (ev.type === "gap" && r && r.messages.length > 0) flush();
          r ??= { messages: [], gaps: [], cursor: "", timeout: false };
          if (ev.type === "gap") r.gaps.push(v);
          else r.messages.push(v);
          r.cursor = ev.id;
          break;
        }
        case "close": {
          flush();
          const v = parse(ev);
          const ms = v?.retry_after_ms;
          end.closeWait = typeof ms === "number" && ms > 0 ? Math.min(ms, MAX_SERVER_WAIT) : 0;
          return true;
        }
        case "error": {
          flush();
          const err = parse(ev)?.error ?? {};
          const code = typeof err.code === "string" ? err.code : "";
          const ra = typeof err.retry_after_ms === "number" && err.retry_after_ms > 0 ? Math.min(err.retry_after_ms, MAX_SERVER_WAIT) : 0;
          end.error = new LongpollError(CODE_STATUS[code] ?? 500, code, `stream ended by the server: ${code}: ${err.message ?? "error"}`, err.request_id ?? "", ra);
          end.event = true;
          return true;
        }
      }
    }
    flush();
    return false;
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
