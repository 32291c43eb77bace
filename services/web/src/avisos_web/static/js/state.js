// state.js: the app's shared state and event bus.
//
// Events on `bus` (CustomEvent, payload in detail):
//   "user"          the logged-in user changed (or null)
//   "unread"        {total, by_priority}
//   "notification"  {notification, updated, live}: created or changed (socket or local)
//   "read-state"    {ids, all, read}: read state changed (this tab, another tab, another device)
//   "removed"       {id}: archived
//   "net"           {online}
//   "conn"          {state}: the realtime connection's state
// Changes made in this tab are also posted on a BroadcastChannel so the other tabs of
// this browser follow at once, even offline; other devices follow through the gateway.

export const bus = new EventTarget();
export const state = {
  user: null,
  unread: { total: 0, by_priority: { low: 0, normal: 0, high: 0, critical: 0 } },
  online: navigator.onLine,
};

const channel = "BroadcastChannel" in globalThis ? new BroadcastChannel("avisos") : null;

export function emit(type, detail, { broadcast = false } = {}) {
  bus.dispatchEvent(new CustomEvent(type, { detail }));
  if (broadcast && channel) channel.postMessage({ type, detail });
}

if (channel) {
  channel.onmessage = (ev) => {
    const { type, detail } = ev.data || {};
    if (type === "unread") setUnread(detail, { broadcast: false });
    else if (type) bus.dispatchEvent(new CustomEvent(type, { detail }));
  };
}

export function on(type, fn) {
  const handler = (e) => fn(e.detail);
  bus.addEventListener(type, handler);
  return () => bus.removeEventListener(type, handler);
}

export function setUser(user) {
  state.user = user;
  emit("user", user);
}

// Bumped by every counter change, so that a slow REST answer asked for before a newer
// count arrived (from the socket, another tab or an action) does not overwrite it.
let unreadVersion = 0;

export function currentUnreadVersion() {
  return unreadVersion;
}

export function setUnread(unread, { broadcast = true } = {}) {
  if (!unread) return;
  unreadVersion += 1;
  const by = { low: 0, normal: 0, high: 0, critical: 0, ...(unread.by_priority || {}) };
  state.unread = { total: unread.total ?? 0, by_priority: by };
  emit("unread", state.unread, { broadcast });
}

/** Adjust the counter locally (optimistic, offline); the server corrects it later. */
export function bumpUnread(priority, delta) {
  const by = { ...state.unread.by_priority };
  by[priority] = Math.max(0, (by[priority] || 0) + delta);
  setUnread({ total: Math.max(0, state.unread.total + delta), by_priority: by });
}

export function isAdmin() {
  return Boolean(state.user && state.user.roles.includes("admin"));
}

export function isManager() {
  return Boolean(state.user && (state.user.roles.includes("manager") || isAdmin()));
}
