// The dashboard: unread by priority (live), open stock alerts by severity and store,
// recent notifications, my unacknowledged team alerts, and delivery health (managers).

import { api, ApiError, NetworkError } from "../api.js";
import { t, fmtRelative, catLabel } from "../i18n.js";
import { h, clear, priorityBadge, notify, errorText } from "../ui.js";
import { state, on, isManager, isAdmin } from "../state.js";
import { act } from "../actions.js";
import { isTeamAlert, isAcknowledged } from "../components/notification-center.js";
import * as store from "../store.js";

const PRIOS = ["critical", "high", "normal", "low"];
let offUnread = null;

function unreadTiles() {
  const wrap = h("div", { class: "tiles", id: "unread-tiles" });
  const paint = () => clear(wrap, PRIOS.map((p) => h("a", { class: `tile tile-${p}`, href: `/notifications?priority=${p}`, "data-link": "" },
    h("span", { class: "tile-num" }, String(state.unread.by_priority[p] || 0)),
    h("span", { class: "tile-label" }, `${t(`prio.${p}`)} · ${t("center.unread")}`))));
  paint();
  if (offUnread) offUnread();
  offUnread = on("unread", paint);
  return wrap;
}

function noteLink(n) {
  return h("li", { class: `mini-note${n.read_at ? "" : " unread"}` },
    priorityBadge(n.priority),
    h("a", { href: `/notifications/${n.id}`, "data-link": "" }, n.subject),
    h("span", { class: "muted" }, ` · ${catLabel(n.category)} · ${fmtRelative(n.created_at, state.user?.timezone)}`));
}

function alertsCard(items) {
  const open = items.filter((n) => n.data && n.data.alert && n.data.alert.state === "open" && !n.archived_at);
  const byStore = new Map();
  for (const n of open) {
    const loc = n.data.alert.location_code || t("dash.no_store");
    const row = byStore.get(loc) || { critical: 0, high: 0, normal: 0, low: 0 };
    row[n.priority] += 1;
    byStore.set(loc, row);
  }
  const totals = Object.fromEntries(PRIOS.map((p) => [p, open.filter((n) => n.priority === p).length]));
  const body = open.length
    ? h("div", {},
      h("div", { class: "sev-row" }, PRIOS.map((p) => h("span", { class: `prio prio-${p}` }, `${t(`prio.${p}`)}: ${totals[p]}`))),
      h("div", { class: "table-wrap" }, h("table", {},
        h("caption", { class: "sr-only" }, t("dash.alerts_by_store")),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, t("dash.store")), PRIOS.map((p) => h("th", { scope: "col" }, t(`prio.${p}`))))),
        h("tbody", {}, [...byStore.entries()].sort().map(([loc, row]) => h("tr", {}, h("th", { scope: "row" }, loc), PRIOS.map((p) => h("td", { class: row[p] ? `num-${p}` : "" }, String(row[p])))))))))
    : h("p", { class: "muted" }, t("dash.none"));
  return h("section", { class: "card", "aria-labelledby": "dash-alerts" }, h("h2", { id: "dash-alerts" }, t("dash.alerts")), body);
}

function unackedCard(items) {
  const mine = items.filter((n) => isTeamAlert(n) && !isAcknowledged(n) && !(n.data.alert && n.data.alert.state === "resolved") && !n.archived_at).slice(0, 6);
  const list = h("ul", { class: "mini-list" }, mine.map((n) => {
    const li = noteLink(n);
    const btn = h("button", { class: "btn btn-small btn-primary", type: "button" }, t("center.acknowledge"));
    btn.addEventListener("click", async () => {
      btn.disabled = true;
      try {
        await act("acknowledge", n);
        li.remove();
      } catch (err) {
        notify(errorText(err), "error");
        btn.disabled = false;
      }
    });
    li.append(btn);
    return li;
  }));
  return h("section", { class: "card", "aria-labelledby": "dash-unacked" }, h("h2", { id: "dash-unacked" }, t("dash.unacked")),
    mine.length ? list : h("p", { class: "muted" }, t("dash.none")));
}

async function deliveryCard() {
  const card = h("section", { class: "card", "aria-labelledby": "dash-delivery" }, h("h2", { id: "dash-delivery" }, t("dash.delivery")));
  try {
    const page = await api(isAdmin() ? "/v1/admin/deliveries" : "/v1/me/deliveries", { query: { limit: 200 } });
    const stats = {};
    for (const a of page.items) {
      const s = (stats[a.channel] ||= { ok: 0, failed: 0 });
      if (["sent", "delivered"].includes(a.status)) s.ok += 1;
      else if (["failed", "bounced", "undelivered"].includes(a.status)) s.failed += 1;
    }
    const chans = Object.keys(stats);
    card.append(chans.length
      ? h("div", { class: "table-wrap" }, h("table", {},
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, t("deliveries.channel")), h("th", { scope: "col" }, t("dash.sent")), h("th", { scope: "col" }, t("dash.failed")))),
        h("tbody", {}, chans.map((c) => h("tr", {}, h("th", { scope: "row" }, t(`chan.${c}`)), h("td", {}, String(stats[c].ok)), h("td", { class: stats[c].failed ? "num-critical" : "" }, String(stats[c].failed)))))))
      : h("p", { class: "muted" }, t("dash.none")));
    if (isAdmin()) card.append(h("p", {}, h("a", { href: "/admin/deliveries", "data-link": "" }, t("deliveries.title"))));
  } catch (err) {
    card.append(h("p", { class: "muted" }, err instanceof ApiError && err.status === 404 ? t("app.not_available") : err instanceof NetworkError ? t("conn.offline") : errorText(err)));
  }
  return card;
}

let offLive = null;

export async function renderDashboard(main) {
  const user = state.user;
  // Follow live changes: re-draw the cards (debounced) while this page is shown.
  if (offLive) offLive();
  let timer = null;
  const again = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      if (grid.isConnected) fillCards(grid).catch(() => {});
      else if (offLive) { offLive(); offLive = null; }
    }, 400);
  };
  const offs = [on("notification", again), on("read-state", again), on("removed", again)];
  offLive = () => offs.forEach((f) => f());
  const grid = h("div", { class: "dash-grid" }, h("p", {}, t("common.loading")));
  clear(main, h("section", { class: "page" },
    h("h1", {}, t("dash.hello", { name: user.display_name })),
    unreadTiles(), grid));
  await fillCards(grid);
}

async function fillCards(grid) {
  let items;
  try {
    items = (await api("/v1/notifications", { query: { limit: 100 } })).items;
    await store.putNotifications(items);
  } catch (err) {
    if (!(err instanceof NetworkError)) throw err;
    items = await store.getNotifications(100);
  }
  const recent = h("section", { class: "card", "aria-labelledby": "dash-recent" }, h("h2", { id: "dash-recent" }, t("dash.recent")),
    items.length ? h("ul", { class: "mini-list" }, items.slice(0, 6).map(noteLink)) : h("p", { class: "muted" }, t("center.empty")),
    h("p", {}, h("a", { href: "/notifications", "data-link": "" }, t("dash.see_all"))));
  const cards = [alertsCard(items), recent, unackedCard(items)];
  if (isManager()) cards.push(await deliveryCard());
  clear(grid, cards);
}
