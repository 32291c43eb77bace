// app.js: the entry module. Boots the session, the header (nav, bell, preferences),
// the realtime connection, toasts, the offline queue and the routes.

import { api, ApiError, NetworkError } from "./api.js";
import { t, setLocale, applyStatic, getLocale, setTimeZone } from "./i18n.js";
import { h, clear, openModal, closeAllModals, notify } from "./ui.js";
import { state, on, setUser, setUnread, emit, isAdmin } from "./state.js";
import { route, fallback, navigate, render, startRouter } from "./router.js";
import { startRealtime, stopRealtime } from "./realtime.js";
import { flushOutbox, refreshUnread } from "./actions.js";
import * as store from "./store.js";
import "./components/bell.js";
import "./components/toasts.js";
import "./components/notification-center.js";
import { openPreferences } from "./components/preferences.js";
import { renderLogin } from "./pages/login.js";
import { renderDashboard } from "./pages/dashboard.js";
import { renderNotifications } from "./pages/notifications.js";
import { renderReports } from "./pages/reports.js";
import { renderUsers } from "./pages/admin-users.js";
import { renderKeys } from "./pages/admin-keys.js";
import { renderRules } from "./pages/admin-rules.js";
import { renderDeliveries } from "./pages/admin-deliveries.js";
import { renderHealth } from "./pages/admin-health.js";

const main = document.getElementById("main");
const header = document.getElementById("app-header");
const nav = document.getElementById("app-nav");
const banner = document.getElementById("offline-banner");
const connState = document.getElementById("conn-state");
let centerModal = null;

function navItems() {
  const items = [
    ["/", "nav.dashboard"],
    ["/notifications", "nav.notifications"],
    ["/reports", "nav.reports"],
  ];
  if (isAdmin()) {
    items.push(["/admin/users", "nav.users"], ["/admin/keys", "nav.keys"], ["/admin/rules", "nav.rules"],
      ["/admin/deliveries", "nav.deliveries"], ["/admin/health", "nav.health"]);
  }
  return items;
}

function renderNav() {
  clear(nav, h("ul", {}, navItems().map(([href, key]) => h("li", {}, h("a", { href, "data-link": "" }, t(key))))));
  markCurrent();
}

function markCurrent() {
  for (const a of nav.querySelectorAll("a")) {
    const href = a.getAttribute("href");
    const here = href === "/" ? location.pathname === "/" : location.pathname.startsWith(href);
    if (here) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

function page(renderFn, { admin = false } = {}) {
  return async (params, query) => {
    if (!state.user) {
      renderLogin(main, { onLoggedIn });
      return;
    }
    if (admin && !isAdmin()) {
      clear(main, h("section", { class: "page" }, h("h1", {}, t("app.forbidden"))));
      return;
    }
    closeAllModals();
    nav.classList.remove("open");
    document.getElementById("nav-toggle").setAttribute("aria-expanded", "false");
    await renderFn(main, params, query);
    main.focus({ preventScroll: true });
  };
}

route("/", page(renderDashboard));
route("/login", async () => {
  if (state.user) navigate("/", { replace: true });
  else renderLogin(main, { onLoggedIn });
});
route("/notifications", page(renderNotifications));
route("/notifications/:id", page(renderNotifications));
route("/reports", page(renderReports));
route("/admin/users", page(renderUsers, { admin: true }));
route("/admin/keys", page(renderKeys, { admin: true }));
route("/admin/rules", page(renderRules, { admin: true }));
route("/admin/deliveries", page(renderDeliveries, { admin: true }));
route("/admin/health", page(renderHealth, { admin: true }));
fallback(page(async (el) => clear(el, h("section", { class: "page" }, h("h1", {}, t("app.not_found"))))));

function openCenter() {
  if (centerModal) return;
  const center = h("avisos-center", { mode: "modal" });
  centerModal = openModal(t("center.title"), center, {
    wide: true, id: "center-modal", onClose: () => { centerModal = null; },
  });
}

document.addEventListener("avisos:close-center", () => centerModal?.close());
document.addEventListener("avisos:routed", markCurrent);
document.addEventListener("avisos:locale", () => {
  if (state.user) renderNav();
  render();
});

function showChrome(show) {
  header.hidden = !show;
}

async function onLoggedIn(user, { fromCache = false } = {}) {
  setUser(user);
  if (user.locale && user.locale !== getLocale()) setLocale(user.locale);
  await store.setMeta("user", user);
  showChrome(true);
  renderNav();
  const cachedUnread = await store.getMeta("unread");
  if (cachedUnread) setUnread(cachedUnread, { broadcast: false });
  if (!fromCache) {
    refreshUnread();
    flushOutbox().catch(() => {});
  }
  startRealtime({ onSessionEnded: () => sessionEnded() });
  if (location.pathname === "/login") navigate("/", { replace: true });
  else render();
}

async function sessionEnded(message = t("auth.ended")) {
  if (!state.user) return;
  stopRealtime();
  closeAllModals();
  setUser(null);
  await store.clearAll().catch(() => {});
  showChrome(false);
  history.replaceState({}, "", "/login");
  renderLogin(main, { onLoggedIn, message });
}

window.addEventListener("avisos:unauthenticated", () => sessionEnded());

async function logout() {
  try {
    await api("/v1/auth/logout", { method: "POST" });
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) notify(t("app.error", { detail: err.message }), "error");
  }
  stopRealtime();
  setUser(null);
  await store.clearAll().catch(() => {});
  showChrome(false);
  history.replaceState({}, "", "/login");
  renderLogin(main, { onLoggedIn });
}

function setOnline(online) {
  state.online = online;
  banner.hidden = online;
  document.body.classList.toggle("is-offline", !online);
  emit("net", { online });
  renderConn();
}

let connValue = "idle";
function renderConn() {
  const key = !state.online ? "conn.offline" : `conn.${connValue}`;
  connState.textContent = t(key) === key ? "" : t(key);
  connState.dataset.state = state.online ? connValue : "offline";
}

on("conn", ({ state: s }) => { connValue = s; renderConn(); });
on("user", (u) => setTimeZone(u && u.timezone));

// Toasts for notifications arriving live (not replays, not in-place updates).
on("notification", ({ notification, live }) => {
  if (!live || notification.read_at) return;
  document.getElementById("toasts").show(notification, (n) => navigate(`/notifications/${n.id}`));
});

window.addEventListener("online", async () => {
  setOnline(true);
  const sent = await flushOutbox().catch(() => 0);
  if (sent) notify(t("offline.synced", { n: sent }));
});
window.addEventListener("offline", () => setOnline(false));

// A click on a system notification (service worker) while the app is open.
navigator.serviceWorker?.addEventListener("message", (ev) => {
  if (ev.data && ev.data.type === "open" && ev.data.url) navigate(ev.data.url);
});

async function boot() {
  document.documentElement.lang = getLocale();
  applyStatic(document);
  startRouter();
  document.getElementById("bell").addEventListener("open-center", openCenter);
  document.getElementById("prefs-btn").addEventListener("click", openPreferences);
  document.getElementById("logout-btn").addEventListener("click", logout);
  document.getElementById("nav-toggle").addEventListener("click", (ev) => {
    const open = nav.classList.toggle("open");
    ev.currentTarget.setAttribute("aria-expanded", String(open));
  });
  setOnline(navigator.onLine);
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch((err) => console.warn("sw", err));
  }
  try {
    const user = await api("/v1/me");
    await onLoggedIn(user);
  } catch (err) {
    if (err instanceof NetworkError) {
      const cached = await store.getMeta("user").catch(() => null);
      if (cached) {
        setOnline(false);
        await onLoggedIn(cached, { fromCache: true });
        return;
      }
    }
    showChrome(false);
    if (location.pathname !== "/login") history.replaceState({ next: location.pathname }, "", "/login");
    renderLogin(main, { onLoggedIn });
  }
}

boot();
