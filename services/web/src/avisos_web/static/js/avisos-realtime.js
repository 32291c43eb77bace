// avisos-realtime.js: the browser client of the Avisos WebSocket gateway.
// Plain ES module, no build step. Protocol: docs/realtime-protocol.md (v1).
//
//   import { AvisosRealtime } from "/static/js/avisos-realtime.js";
//   const rt = new AvisosRealtime({
//     url: "/ws",                                   // absolute ws(s):// or a path on this origin
//     getTicket: async () => {                      // must return the ticket string
//       const r = await fetch("/api/v1/realtime/ticket", {method: "POST",
//         headers: {"X-CSRF-Token": csrf}, credentials: "same-origin"});
//       if (!r.ok) throw Object.assign(new Error("ticket"), {status: r.status});
//       return (await r.json()).ticket;
//     },
//     cursor: lastSeqFromRestList,                  // optional: resume from here
//   });
//   rt.addEventListener("notification", (e) => inbox.upsert(e.detail.notification));
//   rt.addEventListener("unread_count", (e) => bell.set(e.detail.total));
//   rt.addEventListener("reload", () => inbox.reloadFromRest());   // gap too large
//   rt.start();
//
// Events (CustomEvent, payload in `detail`): "open", "notification" ({notification, cursor,
// updated, replayed}), "unread_count", "read" (read confirmation), "report_status",
// "resume", "reload", "ping", "error", "close" ({code, reason, willReconnect, delayMs}),
// "stopped" ({code, reason}: a do-not-reconnect code or getTicket refused), "state".

export const PROTOCOL_VERSION = 1;

// Close codes after which reconnecting is pointless until the user acts (log in, reload).
const NO_RECONNECT_CODES = new Set([1002, 1003, 1007, 1008, 1009, 1010]);

/** True if the client should reconnect after this close code (see the protocol doc). */
export function shouldReconnect(code) {
  if (code >= 4500 && code <= 4999) return false;
  if (NO_RECONNECT_CODES.has(code)) return false;
  return true; // 1000, 1001, 1005, 1006, 1011-1014, 4000-4499
}

/** Full-jitter-ish exponential backoff: a random delay in [cap/2, cap]. */
export function backoffDelay(attempt, minMs, maxMs) {
  const cap = Math.min(maxMs, minMs * 2 ** Math.max(0, attempt));
  return Math.round(cap / 2 + Math.random() * (cap / 2));
}

const SEEN_LIMIT = 2000; // remembered id:seq pairs for de-duplication

export class AvisosRealtime extends EventTarget {
  constructor(options) {
    super();
    if (!options || typeof options.getTicket !== "function") {
      throw new TypeError("AvisosRealtime needs options.getTicket()");
    }
    this.url = options.url || "/ws";
    this.getTicket = options.getTicket;
    this.cursor = Number.isInteger(options.cursor) ? options.cursor : null;
    this.minDelayMs = options.minDelayMs ?? 500;
    this.maxDelayMs = options.maxDelayMs ?? 30000;
    // Reconnect when nothing (not even a ping) arrived for this long.
    this.watchdogFactor = options.watchdogFactor ?? 2.5;
    this.WebSocketImpl = options.WebSocket || globalThis.WebSocket;
    this.ws = null;
    this.state = "idle"; // idle | connecting | open | waiting | stopped
    this.attempt = 0;
    this.unread = null;
    this._seen = new Set();
    this._timer = null;
    this._watchdog = null;
    this._pingIntervalMs = 30000;
    this._pending = new Map(); // ref -> {resolve, reject}
    this._nextRef = 1;
    this._stoppedByUser = false;
  }

  /** Connect (and keep reconnecting until stop() or a do-not-reconnect code). */
  start() {
    this._stoppedByUser = false;
    if (this.state === "idle" || this.state === "stopped") this._connect();
    return this;
  }

  /** Close for good; no reconnection. */
  stop() {
    this._stoppedByUser = true;
    clearTimeout(this._timer);
    this._clearWatchdog();
    if (this.ws) this.ws.close(1000, "client stop");
    this._setState("stopped");
  }

  /** Mark notifications read (ids) through the gateway; resolves with {updated, unread}. */
  markRead(ids) {
    return this._request({ type: "mark_read", ids: [...ids] });
  }

  markAllRead() {
    return this._request({ type: "mark_read", all: true });
  }

  getUnreadCount() {
    return this._request({ type: "get_unread_count" });
  }

  // --- internals -----------------------------------------------------------------------

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _setState(state) {
    if (this.state !== state) {
      this.state = state;
      this._emit("state", { state });
    }
  }

  _socketUrl(ticket) {
    let base = this.url;
    if (!/^wss?:\/\//.test(base)) {
      const loc = globalThis.location;
      base = `${loc.protocol === "https:" ? "wss:" : "ws:"}//${loc.host}${base}`;
    }
    const u = new URL(base);
    u.searchParams.set("ticket", ticket);
    if (this.cursor !== null) u.searchParams.set("cursor", String(this.cursor));
    return u.toString();
  }

  async _connect() {
    this._setState("connecting");
    let ticket;
    try {
      ticket = await this.getTicket();
    } catch (err) {
      const status = err && err.status;
      if (status === 401 || status === 403) {
        // Logged out or forbidden: a new ticket will not come by retrying.
        this._setState("stopped");
        this._emit("stopped", { code: status, reason: "ticket refused" });
        return;
      }
      this._scheduleReconnect(0, "ticket unavailable");
      return;
    }
    if (this._stoppedByUser) return;
    let ws;
    try {
      ws = new this.WebSocketImpl(this._socketUrl(ticket));
    } catch (err) {
      this._scheduleReconnect(0, String(err));
      return;
    }
    this.ws = ws;
    ws.onmessage = (ev) => this._onFrame(ev.data);
    ws.onclose = (ev) => this._onClose(ws, ev.code, ev.reason);
    ws.onerror = () => {}; // a close event always follows
  }

  _onClose(ws, code, reason) {
    if (ws !== this.ws) return;
    this.ws = null;
    this._clearWatchdog();
    for (const { reject } of this._pending.values()) reject(new Error("connection closed"));
    this._pending.clear();
    if (this._stoppedByUser) return;
    if (!shouldReconnect(code)) {
      this._setState("stopped");
      this._emit("close", { code, reason, willReconnect: false });
      this._emit("stopped", { code, reason });
      return;
    }
    this._scheduleReconnect(code, reason);
  }

  _scheduleReconnect(code, reason) {
    const delayMs = backoffDelay(this.attempt, this.minDelayMs, this.maxDelayMs);
    this.attempt += 1;
    this._setState("waiting");
    this._emit("close", { code, reason, willReconnect: true, delayMs });
    clearTimeout(this._timer);
    this._timer = setTimeout(() => {
      if (!this._stoppedByUser) this._connect();
    }, delayMs);
  }

  _armWatchdog() {
    this._clearWatchdog();
    this._watchdog = setTimeout(() => {
      // Silent for too long: the connection is dead even if the browser has not noticed.
      if (this.ws) this.ws.close(4000, "client watchdog");
    }, this._pingIntervalMs * this.watchdogFactor);
  }

  _clearWatchdog() {
    clearTimeout(this._watchdog);
    this._watchdog = null;
  }

  _send(frame) {
    if (!this.ws || this.ws.readyState !== 1) return false;
    this.ws.send(JSON.stringify({ v: PROTOCOL_VERSION, ...frame }));
    return true;
  }

  _request(frame) {
    const ref = `r${this._nextRef++}`;
    return new Promise((resolve, reject) => {
      if (!this._send({ ...frame, ref })) {
        reject(new Error("not connected"));
        return;
      }
      this._pending.set(ref, { resolve, reject });
    });
  }

  _settle(frame, ok) {
    const waiter = frame.ref !== undefined && this._pending.get(frame.ref);
    if (!waiter) return;
    this._pending.delete(frame.ref);
    if (ok) waiter.resolve(frame);
    else waiter.reject(Object.assign(new Error(frame.detail || frame.code), { frame }));
  }

  _onFrame(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if (!frame || frame.v !== PROTOCOL_VERSION) return;
    this._armWatchdog();
    switch (frame.type) {
      case "connection_established":
        this.attempt = 0;
        if (frame.ping_interval_secs) this._pingIntervalMs = frame.ping_interval_secs * 1000;
        if (this.cursor === null) this.cursor = frame.cursor;
        this._armWatchdog();
        this._setState("open");
        this._emit("open", frame);
        break;
      case "notification":
      case "notification_updated":
        this._onNotification(frame);
        break;
      case "resume":
        this.cursor = frame.cursor;
        this._emit("resume", frame);
        if (!frame.recovered) this._emit("reload", frame);
        break;
      case "unread_count":
        this.unread = { total: frame.total, by_priority: frame.by_priority };
        this._emit("unread_count", this.unread);
        this._settle(frame, true);
        break;
      case "notification_read_confirmation":
        this._emit("read", frame);
        break;
      case "mark_read_result":
        this._settle(frame, true);
        break;
      case "report_status":
        this._emit("report_status", frame);
        break;
      case "ping":
        this._send({ type: "pong" });
        this._emit("ping", frame);
        break;
      case "error":
        this._settle(frame, false);
        this._emit("error", frame);
        break;
      default:
        break; // newer servers may send types this client does not know: ignore them
    }
  }

  _onNotification(frame) {
    const n = frame.notification;
    const key = `${n.id}:${frame.cursor}`;
    if (this._seen.has(key)) return; // delivered twice (e.g. replay overlapping live)
    this._seen.add(key);
    if (this._seen.size > SEEN_LIMIT) {
      this._seen.delete(this._seen.values().next().value);
    }
    if (this.cursor === null || frame.cursor > this.cursor) this.cursor = frame.cursor;
    this._emit("notification", {
      notification: n,
      cursor: frame.cursor,
      updated: frame.type === "notification_updated",
      replayed: Boolean(frame.replayed),
    });
    if (frame.unread) {
      this.unread = frame.unread;
      this._emit("unread_count", frame.unread);
    }
  }
}

export default AvisosRealtime;
