// realtime.js: connects the app to the gateway through the shared client
// (avisos-realtime.js, owned by the gateway team) and turns its events into app events.

import { AvisosRealtime } from "./avisos-realtime.js";
import { api, ApiError } from "./api.js";
import { emit, setUnread } from "./state.js";
import * as store from "./store.js";

let rt = null;

export function startRealtime({ onSessionEnded } = {}) {
  stopRealtime();
  rt = new AvisosRealtime({
    url: "/ws",
    getTicket: async () => {
      try {
        return (await api("/v1/realtime/ticket", { method: "POST" })).ticket;
      } catch (err) {
        if (err instanceof ApiError) throw Object.assign(new Error("ticket"), { status: err.status });
        throw err;
      }
    },
  });
  rt.addEventListener("state", (e) => emit("conn", e.detail));
  rt.addEventListener("notification", async (e) => {
    const { notification, updated, replayed } = e.detail;
    await store.putNotifications([notification]);
    emit("notification", { notification, updated, live: !replayed && !updated });
  });
  rt.addEventListener("unread_count", (e) => {
    setUnread(e.detail, { broadcast: false });
    store.setMeta("unread", e.detail);
  });
  rt.addEventListener("read", async (e) => {
    const { ids, all, read, unread } = e.detail;
    const now = new Date().toISOString();
    if (all) await store.patchAll((n) => (n.read_at ? null : { ...n, read_at: now }));
    else await store.patchNotifications(ids, { read_at: read ? now : null });
    emit("read-state", { ids, all, read });
    if (unread) setUnread(unread, { broadcast: false });
  });
  rt.addEventListener("report_status", (e) => emit("report-status", e.detail));
  rt.addEventListener("reload", () => emit("reload", {}));
  rt.addEventListener("stopped", (e) => {
    const code = e.detail && e.detail.code;
    // 4500/4501: this session or all of the user's were revoked; 401: no session.
    if (code === 4500 || code === 4501 || code === 401) onSessionEnded?.(code);
  });
  rt.start();
  return rt;
}

export function stopRealtime() {
  if (rt) rt.stop();
  rt = null;
}

export function realtime() {
  return rt;
}
