// push.js: "notify me on this device" = a Web Push subscription of this browser,
// registered with the API (POST /v1/me/push-subscriptions) or removed.

import { api } from "./api.js";

export function pushSupported() {
  return "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
}

function keyBytes(base64url) {
  const pad = "=".repeat((4 - (base64url.length % 4)) % 4);
  const raw = atob((base64url + pad).replace(/-/g, "+").replace(/_/g, "/"));
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

export async function currentSubscription() {
  if (!pushSupported()) return null;
  const reg = await navigator.serviceWorker.ready;
  return reg.pushManager.getSubscription();
}

/** Ask permission, subscribe this browser and register it. Throws when refused. */
export async function subscribePush() {
  const permission = await Notification.requestPermission();
  if (permission !== "granted") throw Object.assign(new Error("denied"), { code: "denied" });
  const { public_key: key } = await api("/v1/push/vapid-public-key");
  const reg = await navigator.serviceWorker.ready;
  let sub = await reg.pushManager.getSubscription();
  if (!sub) sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: keyBytes(key) });
  await api("/v1/me/push-subscriptions", { method: "POST", body: sub.toJSON() });
  return sub;
}

/** Remove this browser's subscription, on the server and in the browser. */
export async function unsubscribePush() {
  const sub = await currentSubscription();
  if (!sub) return;
  const mine = await api("/v1/me/push-subscriptions");
  for (const s of mine.filter((x) => x.endpoint === sub.endpoint)) {
    await api(`/v1/me/push-subscriptions/${s.id}`, { method: "DELETE" });
  }
  await sub.unsubscribe();
}
