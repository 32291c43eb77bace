// Reports: ask for a report with filters, watch its progress (live from the gateway's
// report_status frames, with polling as a fallback), download it, manage schedules.

import { api, ApiError, API_BASE } from "../api.js";
import { t, fmtDateTime } from "../i18n.js";
import { h, clear, notify, errorText, field, table } from "../ui.js";
import { on } from "../state.js";

const KINDS = ["notification_activity", "delivery_performance", "inventory_alerts", "ack_ledger"];
const POLL_MS = 3000;
let offStatus = null;
let pollTimer = null;

function kindLabel(k) {
  const key = `reports.kind_${k}`;
  const s = t(key);
  return s === key ? k : s;
}

function jobRow(job) {
  const progress = h("progress", { max: 1, value: job.progress || 0, "aria-label": t("reports.progress") });
  const statusCell = h("td", {}, h("span", { class: `chip ${job.status === "failed" ? "chip-off" : job.status === "done" ? "chip-ok" : ""}` }, t(`reports.status_${job.status}`)),
    job.status === "running" || job.status === "queued" ? progress : null, job.error ? h("small", { class: "form-error" }, job.error) : null);
  return h("tr", { dataset: { id: job.id } }, h("td", {}, kindLabel(job.kind)), h("td", {}, fmtDateTime(job.created_at)), statusCell,
    h("td", {}, job.download_url ? h("a", { class: "btn btn-small btn-primary", href: API_BASE + job.download_url, download: job.file_name || "" }, t("reports.download")) : ""));
}

export async function renderReports(main) {
  const kind = h("select", { name: "kind" }, KINDS.map((k) => h("option", { value: k }, kindLabel(k))));
  const from = h("input", { type: "date", name: "date_from" });
  const to = h("input", { type: "date", name: "date_to" });
  const source = h("input", { name: "source_event_id", placeholder: "evt-…" });
  const emailCopy = h("input", { type: "checkbox", id: "rep-email" });
  const error = h("p", { class: "form-error", role: "alert" });
  const form = h("form", { class: "card stack-form" }, h("h2", {}, t("reports.new")),
    h("div", { class: "grid-2" }, field(t("reports.kind"), kind), field(t("reports.source_event"), source), field(t("reports.from"), from), field(t("reports.to"), to)),
    h("div", { class: "check" }, emailCopy, h("label", { for: "rep-email" }, t("reports.email_copy"))), error,
    h("div", { class: "form-actions" }, h("button", { class: "btn btn-primary", type: "submit" }, t("reports.request"))));
  const sourceField = source.closest(".field");
  const syncKind = () => { sourceField.hidden = kind.value !== "ack_ledger"; };
  kind.addEventListener("change", syncKind);
  syncKind();
  const jobs = h("div", {}, t("common.loading"));
  const schedules = h("div", {}, t("common.loading"));
  const page = h("section", { class: "page" }, h("h1", {}, t("reports.title")), form, h("h2", {}, t("reports.jobs")), jobs, h("h2", {}, t("reports.schedules")), schedules);
  clear(main, page);

  const loadJobs = async () => {
    try {
      const list = await api("/v1/reports");
      clear(jobs, list.items.length ? table([t("reports.kind"), t("deliveries.started"), t("common.status"), ""], list.items.map(jobRow)) : h("p", { class: "muted" }, t("reports.none")));
      clearTimeout(pollTimer);
      if (page.isConnected && list.items.some((j) => j.status === "queued" || j.status === "running")) pollTimer = setTimeout(loadJobs, POLL_MS);
      return true;
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        clear(page, h("h1", {}, t("reports.title")), h("p", { class: "muted" }, t("app.not_available")));
        return false;
      }
      clear(jobs, h("p", { class: "form-error" }, errorText(err)));
      return true;
    }
  };
  const loadSchedules = async () => {
    try {
      const list = await api("/v1/report-schedules");
      clear(schedules, list.items.length ? table([t("reports.kind"), t("reports.frequency"), t("reports.next_run"), ""], list.items.map((s) => {
        const del = h("button", { class: "btn btn-small btn-danger", type: "button" }, t("reports.delete"));
        del.addEventListener("click", async () => {
          await api(`/v1/report-schedules/${s.id}`, { method: "DELETE" }).catch((err) => notify(errorText(err), "error"));
          loadSchedules();
        });
        return h("tr", {}, h("td", {}, kindLabel(s.kind)), h("td", {}, `${t(`reports.freq_${s.frequency}`)} ${String(s.time_of_day).slice(0, 5)}`), h("td", {}, fmtDateTime(s.next_run_at)), h("td", {}, del));
      })) : h("p", { class: "muted" }, t("dash.none")));
    } catch (err) {
      clear(schedules, h("p", { class: "muted" }, err instanceof ApiError && err.status === 404 ? t("app.not_available") : errorText(err)));
    }
    // A small form to add a schedule.
    const sKind = h("select", {}, KINDS.filter((k) => k !== "ack_ledger").map((k) => h("option", { value: k }, kindLabel(k))));
    const freq = h("select", {}, ["daily", "weekly"].map((f) => h("option", { value: f }, t(`reports.freq_${f}`))));
    const time = h("input", { type: "time", value: "07:00" });
    const add = h("form", { class: "inline-form" }, field(t("reports.kind"), sKind), field(t("reports.frequency"), freq), field(t("reports.time"), time),
      h("button", { class: "btn", type: "submit" }, t("common.create")));
    add.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        const body = { kind: sKind.value, frequency: freq.value, time_of_day: time.value };
        if (freq.value === "weekly") body.weekday = 0;
        await api("/v1/report-schedules", { method: "POST", body });
        loadSchedules();
      } catch (err) {
        notify(errorText(err), "error");
      }
    });
    schedules.append(add);
  };
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    const params = {};
    if (from.value) params.date_from = from.value;
    if (to.value) params.date_to = to.value;
    if (source.value.trim()) params.source_event_id = source.value.trim();
    try {
      await api("/v1/reports", { method: "POST", body: { kind: kind.value, params, email_copy: emailCopy.checked } });
      loadJobs();
    } catch (err) {
      error.textContent = errorText(err);
    }
  });
  if (offStatus) offStatus();
  offStatus = on("report-status", () => { if (page.isConnected) loadJobs(); });
  if (await loadJobs()) await loadSchedules();
}
