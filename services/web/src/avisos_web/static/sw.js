// sw.js: the service worker. It keeps the app shell so the app starts with no network,
// shows Web Push notifications, and opens the app at the notification that was clicked.
// API calls (/api/) and the socket (/ws) are never cached here: the app keeps its own
// offline copy of notifications in IndexedDB and queues offline actions itself.

const VERSION = "avisos-shell-v1";
const SHELL = [
  "/",
  "/manifest.webmanifest",
  "/static/css/app.css",
  "/static/icons/icon-192.png",
  "/static/icons/icon-512.png",
  "/static/icons/maskable-512.png",
  "/static/icons/badge-72.png",
  "/static/js/app.js",
  "/static/js/api.js",
  "/static/js/actions.js",
  "/static/js/avisos-realtime.js",
  "/static/js/i18n.js",
  "/static/js/push.js",
  "/static/js/realtime.js",
  "/static/js/router.js",
  "/static/js/state.js",
  "/static/js/store.js",
  "/static/js/ui.js",
  "/static/js/components/bell.js",
  "/static/js/components/notification-center.js",
  "/static/js/components/preferences.js",
  "/static/js/components/toasts.js",
  "/static/js/pages/admin-deliveries.js",
  "/static/js/pages/admin-health.js",
  "/static/js/pages/admin-keys.js",
  "/static/js/pages/admin-rules.js",
  "/static/js/pages/admin-users.js",
  "/static/js/pages/dashboard.js",
  "/static/js/pages/login.js",
  "/static/js/pages/notifications.js",
  "/static/js/pages/reports.js",
];
const NAV_TIMEOUT_MS = 4000;

const SHELL_FETCH_ATTEMPTS = 3;
const SHELL_RETRY_DELAY_MS = 500;

// One shell file, fresh from the network. A store's Wi-Fi drops requests: a failed fetch or
// a 5xx is tried again, because one lost file would fail the whole install (and the app
// would not start offline until the next visit installs it again).
async function fetchShellFile(url) {
  for (let attempt = 1; ; attempt++) {
    let problem;
    try {
      const response = await fetch(new Request(url, { cache: "reload" }));
      if (response.ok) return response;
      problem = new Error(`${url}: HTTP ${response.status}`);
      if (response.status < 500) throw problem; // not a passing fault
    } catch (err) {
      if (err === problem) throw err;
      problem = err; // the network failed
    }
    if (attempt >= SHELL_FETCH_ATTEMPTS) throw problem;
    await new Promise((resolve) => setTimeout(resolve, SHELL_RETRY_DELAY_MS * attempt));
  }
}

// Every file is fetched before any is stored: the new cache is complete or not written.
async function installShell() {
  const responses = await Promise.all(SHELL.map(fetchShellFile));
  const cache = await caches.open(VERSION);
  await Promise.all(responses.map((response, i) => cache.put(SHELL[i], response)));
  await self.skipWaiting();
}

self.addEventListener("install", (event) => {
  event.waitUntil(installShell());
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== VERSION).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

function timeout(ms) {
  return new Promise((_, reject) => setTimeout(() => reject(new Error("timeout")), ms));
}

// Pages: network first (fresh HTML), the cached shell when offline or slow.
async function navigation(request) {
  const cache = await caches.open(VERSION);
  try {
    const response = await Promise.race([fetch(request), timeout(NAV_TIMEOUT_MS)]);
    if (response.ok) cache.put("/", response.clone());
    return response;
  } catch {
    return (await cache.match("/")) || Response.error();
  }
}

// Static files: the cached copy at once, refreshed in the background (stale-while-revalidate).
async function asset(request) {
  const cache = await caches.open(VERSION);
  const cached = await cache.match(request, { ignoreSearch: true });
  const network = fetch(request)
    .then((response) => {
      if (response.ok) cache.put(request, response.clone());
      return response;
    })
    .catch(() => null);
  return cached || (await network) || Response.error();
}

self.addEventListener("fetch", (event) => {
  const { request } = event;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (url.pathname.startsWith("/api/") || url.pathname === "/ws") return;
  if (url.pathname === "/healthz" || url.pathname === "/readyz" || url.pathname === "/sw.js") return;
  if (request.mode === "navigate") {
    event.respondWith(navigation(request));
  } else if (url.pathname.startsWith("/static/") || url.pathname === "/manifest.webmanifest") {
    event.respondWith(asset(request));
  }
});

// --- Web Push ------------------------------------------------------------------------

/** What the dispatcher sends: {title, body, url, tag, priority, notification_id, delivery_id}. */
function parsePush(data) {
  if (!data) return { title: "Avisos", body: "" };
  try {
    return data.json();
  } catch {
    return { title: "Avisos", body: data.text() };
  }
}

async function showPush(payload) {
  const url = payload.url || (payload.notification_id ? `/notifications/${payload.notification_id}` : "/notifications");
  await self.registration.showNotification(payload.title || "Avisos", {
    body: payload.body || "",
    tag: payload.tag || payload.notification_id || undefined,
    icon: "/static/icons/icon-192.png",
    badge: "/static/icons/badge-72.png",
    requireInteraction: payload.priority === "critical",
    renotify: Boolean(payload.tag),
    data: { url, notification_id: payload.notification_id || null },
  });
}

self.addEventListener("push", (event) => {
  event.waitUntil(showPush(parsePush(event.data)));
});

/** Same-origin path to open for a notification click (never another site). */
function targetPath(data) {
  try {
    const u = new URL((data && data.url) || "/notifications", self.location.origin);
    if (u.origin !== self.location.origin) {
      return data && data.notification_id ? `/notifications/${data.notification_id}` : "/notifications";
    }
    return u.pathname + u.search;
  } catch {
    return "/notifications";
  }
}

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const path = targetPath(event.notification.data);
  event.waitUntil((async () => {
    const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
    for (const client of windows) {
      if (new URL(client.url).origin === self.location.origin && "focus" in client) {
        client.postMessage({ type: "open", url: path });
        return client.focus();
      }
    }
    return self.clients.openWindow(path);
  })());
});
