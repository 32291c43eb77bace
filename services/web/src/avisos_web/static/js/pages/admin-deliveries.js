// Admin: the delivery log (search attempts by channel, status, dates; see reasons) and
// dead letters (reasons, replay).

import { api, ApiError } from "../api.js";
import { t, fmtDateTime } from "../i18n.js";
import { h, clear, notify, errorText, table } from "../ui.js";

const STATUSES = ["queued", "sent", "delivered", "failed", "bounced", "undelivered"];

function select(name, label, values, labelFn = (v) => v) {
  const id = `dl-${name}`;
  const el = h("select", { id, name }, h("option", { value: "" }, t("center.any")), values.map((v) => h("option", { value: v }, labelFn(v))));
  return [h("div", { class: "field" }, h("label", { for: id }, label), el), el];
}

export async function renderDeliveries(main) {
  const [chanField, chan] = select("channel", t("deliveries.channel"), ["email", "sms", "push"], (c) => t(`chan.${c}`));
  const [statusField, status] = select("status", t("common.status"), STATUSES, (x) => t(`status.${x}`));
  const since = h("input", { type: "date", id: "dl-since" });
  const log = h("div", {}, t("common.loading"));
  const more = h("button", { class: "btn btn-ghost", type: "button", hidden: true }, t("center.more"));
  let cursor = null;
  let rows = [];
  const paint = () => clear(log, table([t("deliveries.started"), t("deliveries.channel"), t("common.status"), t("deliveries.attempt"), t("deliveries.error"), t("deliveries.latency")],
    rows.map((a) => h("tr", {}, h("td", {}, fmtDateTime(a.started_at)), h("td", {}, t(`chan.${a.channel}`)),
      h("td", {}, h("span", { class: `chip ${["failed", "bounced", "undelivered"].includes(a.status) ? "chip-off" : "chip-ok"}` }, t(`status.${a.status}`))),
      h("td", {}, String(a.attempt)), h("td", { class: "wrap" }, a.error || ""), h("td", {}, a.latency_ms != null ? `${a.latency_ms} ms` : ""))),
    { caption: t("deliveries.title") }));
  const load = async (reset) => {
    if (reset) { rows = []; cursor = null; }
    try {
      const page = await api("/v1/admin/deliveries", { query: {
        channel: chan.value, status: status.value, cursor, limit: 50,
        since: since.value ? new Date(`${since.value}T00:00:00`).toISOString() : undefined,
      } });
      rows = rows.concat(page.items);
      cursor = page.next_cursor;
      more.hidden = !cursor;
      paint();
      if (!rows.length) clear(log, h("p", { class: "muted" }, t("common.none")));
    } catch (err) {
      clear(log, h("p", { class: "muted" }, err instanceof ApiError && err.status === 404 ? t("app.not_available") : errorText(err)));
    }
  };
  for (const el of [chan, status, since]) el.addEventListener("change", () => load(true));
  more.addEventListener("click", () => load(false));

  const dead = h("div", {}, t("common.loading"));
  const loadDead = async () => {
    try {
      const page = await api("/v1/admin/dead-letters", { query: { limit: 50 } });
      if (!page.items.length) return clear(dead, h("p", { class: "muted" }, t("common.none")));
      clear(dead, table([t("dead.received"), t("dead.queue"), t("dead.reason"), t("common.status"), t("common.actions")],
        page.items.map((d) => {
          const replay = h("button", { class: "btn btn-small btn-primary", type: "button" }, t("dead.replay"));
          replay.addEventListener("click", async () => {
            replay.disabled = true;
            try {
              await api(`/v1/admin/dead-letters/${d.id}/replay`, { method: "POST" });
              notify(t("dead.replayed"));
              loadDead();
            } catch (err) {
              notify(errorText(err), "error");
              replay.disabled = false;
            }
          });
          return h("tr", {}, h("td", {}, fmtDateTime(d.received_at)), h("td", { class: "mono" }, d.origin_queue || "?"),
            h("td", { class: "wrap" }, d.reason || ""),
            h("td", {}, d.replayed_at ? `${t("dead.replayed")} ×${d.replay_count}` : ""), h("td", {}, replay));
        }), { caption: t("dead.title") }));
    } catch (err) {
      clear(dead, h("p", { class: "muted" }, err instanceof ApiError && err.status === 404 ? t("app.not_available") : errorText(err)));
    }
  };
  clear(main, h("section", { class: "page" }, h("h1", {}, t("deliveries.title")),
    h("div", { class: "filter-grid" }, chanField, statusField, h("div", { class: "field" }, h("label", { for: "dl-since" }, t("center.since")), since)),
    log, more, h("h2", {}, t("dead.title")), dead));
  await Promise.all([load(true), loadDead()]);
}
