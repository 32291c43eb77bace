// The full notification center page; /notifications/:id shows that notification on top
// (where a toast or a system notification leads) and the center below.

import { api } from "../api.js";
import { t, fmtDateTime, catLabel } from "../i18n.js";
import { h, clear, priorityBadge } from "../ui.js";
import { act } from "../actions.js";
import { state } from "../state.js";
import * as store from "../store.js";

async function detail(id) {
  let n = null;
  try {
    n = await api(`/v1/notifications/${encodeURIComponent(id)}`);
  } catch {
    n = (await store.getNotifications()).find((x) => x.id === id) || null;
  }
  if (!n) return null;
  if (!n.read_at) act("read", n).catch(() => {});
  return h("article", { class: `card note-detail note-${n.priority}`, id: "note-detail", dataset: { id: n.id } },
    h("div", { class: "note-head" }, priorityBadge(n.priority), h("span", { class: "chip" }, catLabel(n.category)),
      h("time", { datetime: n.created_at }, fmtDateTime(n.created_at, state.user?.timezone))),
    h("h2", {}, n.subject),
    h("p", { class: "note-message" }, n.message),
    n.action_url ? h("p", {}, h("a", { href: n.action_url, class: "btn btn-small", ...(n.action_url.startsWith("/") ? { "data-link": "" } : { target: "_blank", rel: "noopener noreferrer" }) }, t("center.open_action"))) : null);
}

export async function renderNotifications(main, params, query = {}) {
  const center = h("avisos-center", { mode: "page", priority: query.priority || null, category: query.category || null });
  const section = h("section", { class: "page" }, h("h1", {}, t("center.title")));
  clear(main, section);
  if (params.id) {
    const card = await detail(params.id);
    if (card) section.append(card);
  }
  section.append(center);
}
