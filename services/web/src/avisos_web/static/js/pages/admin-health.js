// Admin: system health. The API's readiness (through the proxy), this front's readiness,
// and, when the API offers it, queue depths and connected users (/v1/admin/system).

import { api, ApiError } from "../api.js";
import { t } from "../i18n.js";
import { h, clear, table, errorText } from "../ui.js";

async function ready(url) {
  try {
    const r = await fetch(url, { credentials: "same-origin", cache: "no-store" });
    const body = await r.json().catch(() => ({}));
    return { ok: r.ok, checks: body.checks || {} };
  } catch (err) {
    return { ok: false, checks: { network: String(err) } };
  }
}

/** From the API when it offers /v1/admin/system, else from this front (local runs). */
async function systemStatus() {
  try {
    return await api("/v1/admin/system");
  } catch (err) {
    if (!(err instanceof ApiError && (err.status === 404 || err.status === 405))) throw err;
  }
  const r = await fetch("/system/status", { credentials: "same-origin", cache: "no-store" });
  if (!r.ok) throw new ApiError(r.status, await r.json().catch(() => null));
  return r.json();
}

export async function renderHealth(main) {
  const services = h("div", {}, t("common.loading"));
  const system = h("div", {}, t("common.loading"));
  clear(main, h("section", { class: "page" }, h("h1", {}, t("health.title")),
    h("h2", {}, t("health.services")), services, h("h2", {}, `${t("health.queues")} · ${t("health.connected")}`), system));
  const [apiReady, webReady] = await Promise.all([ready("/api/readyz"), ready("/readyz")]);
  const row = (name, r) => h("tr", {}, h("th", { scope: "row" }, name),
    h("td", {}, h("span", { class: `chip ${r.ok ? "chip-ok" : "chip-off"}` }, r.ok ? t("health.ready") : t("health.unavailable"))),
    h("td", { class: "wrap" }, Object.entries(r.checks).map(([k, v]) => `${k}: ${v}`).join(" · ")));
  clear(services, table(["", t("common.status"), ""], [row("notification-api", apiReady), row("web", webReady)]));
  try {
    const s = await systemStatus();
    const rows = [];
    const shown = new Set(["notification-api", "web"]);  // probed above from this page
    for (const [name, r] of Object.entries(s.services || {})) {
      if (!shown.has(name)) rows.push(row(name, { ok: r.status === "ok" || r.ok, checks: r.checks || {} }));
    }
    services.querySelector("tbody")?.append(...rows);
    clear(system,
      s.connected_users != null ? h("p", { class: "big-num", id: "connected-users" }, `${t("health.connected")}: ${s.connected_users}`) : "",
      s.queues ? table([t("health.queues"), t("health.messages"), t("health.consumers")], Object.entries(s.queues).map(([q, v]) =>
        h("tr", {}, h("td", { class: "mono" }, q), h("td", { class: v.messages ? "num-high" : "" }, String(v.messages ?? v)), h("td", {}, String(v.consumers ?? ""))))) : "");
  } catch (err) {
    clear(system, h("p", { class: "muted" }, err instanceof ApiError && (err.status === 404 || err.status === 405) ? t("app.not_available") : errorText(err)));
  }
}
