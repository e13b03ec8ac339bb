// What the demo and the dashboard share: where the server is, the token,
// and how a status reads.
import type { Status } from "./longpoll";

/** The server: this page's directory, so that a path prefix in front of longpoll works. */
export const base = new URL(".", location.href).href.replace(/\/+$/, "");

/**
 * The token of the longpoll_token cookie, when the page can read it: sent
 * in the Authorization header, so that a publish is not refused as a
 * cross-site cookie request. An HttpOnly cookie still goes with every
 * request by itself.
 */
export function cookieToken(): string {
  for (const c of document.cookie.split(";")) {
    const i = c.indexOf("=");
    if (c.slice(0, i).trim() === "longpoll_token") return decodeURIComponent(c.slice(i + 1).trim());
  }
  return "";
}

const $ = (id: string) => document.getElementById(id)!;

let countdown: ReturnType<typeof setInterval> | undefined;

/** Shows s in the #status pill: live, reconnecting in N s, paused, stopped. */
export function showStatus(s: Status) {
  const el = $("status");
  el.dataset.state = s.state;
  el.dataset.role = s.role;
  clearInterval(countdown);
  countdown = undefined;
  const shared = s.role === "leader" ? " · receives for other tabs" : s.role === "follower" ? " · via another tab" : "";
  switch (s.state) {
    case "connecting": el.textContent = "connecting…"; break;
    case "live": el.textContent = "live" + shared; break;
    case "paused": el.textContent = "paused while hidden"; break;
    case "closed": el.textContent = "stopped"; if (s.error) showError(s.error.message); break;
    case "waiting": {
      const tick = () => { el.textContent = `reconnecting in ${Math.max(0, Math.ceil((s.until - Date.now()) / 1000))} s`; };
      tick();
      countdown = setInterval(tick, 250);
      el.title = s.error ? s.error.message : "the server asked to come back later";
      break;
    }
  }
}

export function showError(msg: string) {
  const el = $("error");
  el.textContent = msg;
  el.hidden = !msg;
}
