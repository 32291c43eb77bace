// actions.js: what the user does to notifications. Online, each action is a REST call
// (the API then tells the gateway, which tells the user's other devices). Offline, or
// when the call cannot reach the server, mark-read/unread and acknowledge are queued in
// IndexedDB with an idempotency key and sent by flushOutbox() when the network is back;
// the unread counter is then re-read from the server.

import { api, newKey, NetworkError, ApiError } from "./api.js";
import * as store from "./store.js";
import { emit, setUnread, bumpUnread, state, currentUnreadVersion } from "./state.js";

const QUEUEABLE = new Set(["read", "unread", "acknowledge"]);

function pathFor(kind, id) {
  return `/v1/notifications/${encodeURIComponent(id)}/${kind}`;
}

async function send(action) {
  return api(pathFor(action.kind, action.id), {
    method: "POST", idempotencyKey: action.key,
  });
}

/** Apply a change locally (this tab, other tabs, IndexedDB) before or without the server. */
async function applyLocal(kind, n) {
  const now = new Date().toISOString();
  if (kind === "read" || kind === "unread") {
    const read = kind === "read";
    await store.patchNotifications([n.id], { read_at: read ? now : null });
    emit("read-state", { ids: [n.id], all: false, read }, { broadcast: true });
  } else if (kind === "acknowledge") {
    const data = { ...(n.data || {}), acknowledged_at: now, acknowledged_by: state.user?.id };
    await store.patchNotifications([n.id], { data, read_at: n.read_at || now });
    emit("notification", { notification: { ...n, data, read_at: n.read_at || now }, updated: true },
      { broadcast: true });
  } else if (kind === "archive") {
    await store.patchNotifications([n.id], { archived_at: now });
    emit("removed", { id: n.id }, { broadcast: true });
  }
}

/**
 * Do `kind` ("read" | "unread" | "archive" | "acknowledge") on notification `n`.
 * Returns {queued: true} when it was kept for later, the server's answer otherwise.
 */
export async function act(kind, n) {
  const wasUnread = !n.read_at;
  await applyLocal(kind, n);
  if (kind === "read" && wasUnread) bumpUnread(n.priority, -1);
  if (kind === "unread" && !wasUnread) bumpUnread(n.priority, +1);
  if (kind === "archive" && wasUnread) bumpUnread(n.priority, -1);
  const action = { key: newKey(), kind, id: n.id };
  if (!navigator.onLine && QUEUEABLE.has(kind)) {
    await store.queueAction(action);
    return { queued: true };
  }
  try {
    const res = await send(action);
    if (res && res.id) {
      await store.putNotifications([res]);
      emit("notification", { notification: res, updated: true });
    }
    if (kind === "acknowledge" || kind === "archive") await refreshUnread();
    return res;
  } catch (err) {
    if (err instanceof NetworkError && QUEUEABLE.has(kind)) {
      await store.queueAction(action);
      return { queued: true };
    }
    // Refused (e.g. 409: someone else claimed it): show the server's version again.
    try {
      const fresh = await api(`/v1/notifications/${encodeURIComponent(n.id)}`);
      await store.putNotifications([{ ...fresh, _local: true }]);
      emit("notification", { notification: fresh, updated: true });
    } catch {
      // gone or unreachable: the next reload shows the truth
    }
    await refreshUnread();
    throw err;
  }
}

export async function markAllRead() {
  const res = await api("/v1/notifications/read-all", { method: "POST" });
  const now = new Date().toISOString();
  await store.patchAll((n) => (n.read_at ? null : { ...n, read_at: now }));
  emit("read-state", { ids: [], all: true, read: true }, { broadcast: true });
  if (res && res.unread) setUnread(res.unread);
  return res;
}

export async function refreshUnread() {
  try {
    const asked = currentUnreadVersion();
    const u = await api("/v1/notifications/unread-count");
    if (currentUnreadVersion() !== asked) return;  // a newer count arrived meanwhile
    setUnread(u);
    await store.setMeta("unread", u);
  } catch (err) {
    if (!(err instanceof NetworkError)) throw err;
  }
}

let flushing = null;

/** Send the queued offline actions, oldest first; then correct the counter. */
export function flushOutbox() {
  if (!flushing) {
    flushing = (async () => {
      let sent = 0;
      for (const action of await store.listOutbox()) {
        try {
          await send(action);
          sent += 1;
        } catch (err) {
          if (err instanceof NetworkError) break; // still offline: keep the rest
          if (!(err instanceof ApiError)) throw err;
          // 404 (gone) or 4xx: the action cannot succeed; drop it.
        }
        await store.removeOutbox(action.key);
      }
      await refreshUnread();
      return sent;
    })().finally(() => {
      flushing = null;
    });
  }
  return flushing;
}
