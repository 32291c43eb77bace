// <avisos-center>: the notification center, used in the modal and on the full page.
// Filters (unread, archived, category, priority, dates, text), infinite scroll over the
// cursor API, mark read/unread, mark all read, archive, acknowledge team alerts, open
// the action link. It follows live changes (socket, other tabs) and, offline, shows the
// notifications kept in IndexedDB with a banner.

import { api, NetworkError } from "../api.js";
import { act, markAllRead } from "../actions.js";
import { t, fmtRelative, fmtDateTime, catLabel } from "../i18n.js";
import { h, clear, notify, errorText, priorityBadge } from "../ui.js";
import { on, state } from "../state.js";
import * as store from "../store.js";
import { navigate } from "../router.js";

const PAGE_SIZE = 25;
const SEARCH_DEBOUNCE_MS = 300;
export const KNOWN_CATEGORIES = ["inventory", "orders", "transfers", "pricing", "expiry", "safety", "system", "reports"];
const PRIORITIES = ["critical", "high", "normal", "low"];

/** A team alert that someone must acknowledge (claim). */
export function isTeamAlert(n) {
  const d = n.data || {};
  return Boolean(d.alert || d.event);
}

/** Who claimed it ({by, name, at}), or null. Alerts keep it in data.alert, events at top level. */
export function claimOf(n) {
  const d = n.data || {};
  const src = d.alert && d.alert.acknowledged_by ? d.alert : d;
  if (!src.acknowledged_by) return null;
  return { by: src.acknowledged_by, name: src.acknowledged_by_name || "", at: src.acknowledged_at };
}

export function isAcknowledged(n) {
  return claimOf(n) !== null;
}

function matches(n, f) {
  if (f.unread && n.read_at) return false;
  if (!f.archived && n.archived_at) return false;
  if (f.archived && !n.archived_at) return false;
  if (f.category && n.category !== f.category) return false;
  if (f.priority && n.priority !== f.priority) return false;
  if (f.since && new Date(n.created_at) < new Date(f.since)) return false;
  if (f.until && new Date(n.created_at) >= new Date(f.until)) return false;
  if (f.q) {
    const q = f.q.toLowerCase();
    if (!`${n.subject} ${n.message}`.toLowerCase().includes(q)) return false;
  }
  return true;
}

class AvisosCenter extends HTMLElement {
  constructor() {
    super();
    this.items = new Map(); // id -> notification
    this.cursor = null;
    this.done = false;
    this.loading = false;
    this.offline = false;
    this.generation = 0;
    this.filters = { unread: false, archived: false, category: "", priority: "", since: "", until: "", q: "" };
  }

  connectedCallback() {
    if (this.listEl) return;
    this.mode = this.getAttribute("mode") || "page";
    this.focusId = this.getAttribute("focus") || null;
    this.filters.priority = this.getAttribute("priority") || "";
    this.filters.category = this.getAttribute("category") || "";
    this.build();
    this.off = [
      on("notification", (d) => this.upsert(d.notification, d.live)),
      on("read-state", (d) => this.applyRead(d)),
      on("removed", (d) => this.removeItem(d.id)),
      on("net", (d) => { if (d.online && this.offline) this.reload(); }),
      on("reload", () => this.reload()),
    ];
    this.reload();
  }

  disconnectedCallback() {
    (this.off || []).forEach((f) => f());
    if (this.observer) this.observer.disconnect();
  }

  build() {
    const f = this.filters;
    const unread = h("input", { type: "checkbox", id: `${this.mode}-f-unread`, name: "unread" });
    const archived = h("input", { type: "checkbox", id: `${this.mode}-f-archived`, name: "archived" });
    const category = h("select", { id: `${this.mode}-f-category`, name: "category" },
      h("option", { value: "" }, t("center.any")),
      KNOWN_CATEGORIES.map((c) => h("option", { value: c }, catLabel(c))));
    const priority = h("select", { id: `${this.mode}-f-priority`, name: "priority" },
      h("option", { value: "" }, t("center.any")),
      PRIORITIES.map((p) => h("option", { value: p }, t(`prio.${p}`))));
    const since = h("input", { type: "date", id: `${this.mode}-f-since`, name: "since" });
    const until = h("input", { type: "date", id: `${this.mode}-f-until`, name: "until" });
    const q = h("input", { type: "search", id: `${this.mode}-f-q`, name: "q", placeholder: t("center.search"), autocomplete: "off" });
    let timer = null;
    const changed = () => {
      // Every change reads every field, so a search still waiting for its debounce is
      // folded into this one; left pending it would reload the list again later, under
      // whatever the user did meanwhile (a read item reappearing, the scroll lost).
      clearTimeout(timer);
      timer = null;
      const next = {
        unread: unread.checked,
        archived: archived.checked,
        category: category.value,
        priority: priority.value,
        since: since.value,
        until: until.value,
        q: q.value.trim(),
      };
      if (Object.keys(next).every((k) => next[k] === f[k])) return;
      Object.assign(f, next);
      this.reload();
    };
    category.value = f.category;
    priority.value = f.priority;
    for (const el of [unread, archived, category, priority, since, until]) el.addEventListener("change", changed);
    q.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(changed, SEARCH_DEBOUNCE_MS);
    });
    const lab = (input, key) => h("label", { for: input.id }, t(key));
    this.markAllBtn = h("button", { class: "btn btn-primary", type: "button", "data-action": "mark-all" }, t("center.mark_all"));
    this.markAllBtn.addEventListener("click", () => this.onMarkAll());
    const filters = h("form", { class: "center-filters", role: "search", onsubmit: (e) => e.preventDefault() },
      h("div", { class: "filter-row" },
        h("span", { class: "check" }, unread, lab(unread, "center.unread_only")),
        h("span", { class: "check" }, archived, lab(archived, "center.archived"))),
      h("div", { class: "filter-grid" },
        h("div", { class: "field" }, lab(category, "center.category"), category),
        h("div", { class: "field" }, lab(priority, "center.priority"), priority),
        h("div", { class: "field" }, lab(since, "center.since"), since),
        h("div", { class: "field" }, lab(until, "center.until"), until),
        h("div", { class: "field field-wide" }, lab(q, "center.search"), q)));
    const tools = h("div", { class: "center-tools" }, this.markAllBtn,
      this.mode === "modal" ? h("a", { href: "/notifications", class: "btn btn-ghost", "data-link": "" }, t("center.open_page")) : null);
    this.banner = h("div", { class: "inline-banner", role: "status", hidden: true }, t("offline.banner"));
    this.listEl = h("ul", { class: "note-list", "aria-live": "off", "aria-busy": "false" });
    this.statusEl = h("p", { class: "list-status", role: "status" });
    this.sentinel = h("div", { class: "sentinel", "aria-hidden": "true" });
    this.moreBtn = h("button", { class: "btn btn-ghost more-btn", type: "button", hidden: true }, t("center.more"));
    this.moreBtn.addEventListener("click", () => this.loadMore());
    this.append(filters, tools, this.banner, this.listEl, this.statusEl, this.moreBtn, this.sentinel);
    this.observer = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) this.loadMore();
    }, { root: this.mode === "modal" ? this.closest(".modal-body") : null, rootMargin: "200px" });
    this.observer.observe(this.sentinel);
  }

  query() {
    const f = this.filters;
    return {
      read: f.unread ? "false" : undefined,
      archived: f.archived ? "true" : undefined,
      category: f.category || undefined,
      priority: f.priority ? [f.priority] : undefined,
      since: f.since ? new Date(`${f.since}T00:00:00`).toISOString() : undefined,
      until: f.until ? new Date(new Date(`${f.until}T00:00:00`).getTime() + 86400000).toISOString() : undefined,
      q: f.q || undefined,
      limit: PAGE_SIZE,
    };
  }

  async reload() {
    this.generation += 1;
    this.items.clear();
    this.cursor = null;
    this.done = false;
    this.loading = false;
    clear(this.listEl);
    await this.loadMore();
  }

  async loadMore() {
    if (this.loading || this.done) return;
    this.loading = true;
    const gen = this.generation;
    this.listEl.setAttribute("aria-busy", "true");
    this.statusEl.textContent = t("common.loading");
    try {
      const page = await api("/v1/notifications", { query: { ...this.query(), cursor: this.cursor || undefined } });
      if (gen !== this.generation) return;
      this.setOffline(false);
      await store.putNotifications(page.items);
      for (const n of page.items) this.addItem(n, false);
      this.cursor = page.next_cursor;
      this.done = !page.next_cursor;
    } catch (err) {
      if (gen !== this.generation) return;
      if (err instanceof NetworkError) {
        await this.loadOffline();
      } else {
        this.statusEl.textContent = t("app.error", { detail: errorText(err) });
        this.done = true;
        return;
      }
    } finally {
      if (gen === this.generation) {
        this.loading = false;
        this.listEl.setAttribute("aria-busy", "false");
      }
    }
    this.renderStatus();
    if (this.focusId) this.revealFocus();
    // Fill the view: if the sentinel is still visible, the observer will not fire again.
    if (!this.done && this.isConnected) {
      const r = this.sentinel.getBoundingClientRect();
      if (r.top < (window.innerHeight || 800) + 200) requestAnimationFrame(() => this.loadMore());
    }
  }

  async loadOffline() {
    this.setOffline(true);
    const all = await store.getNotifications();
    for (const n of all.filter((x) => matches(x, this.filters))) this.addItem(n, false);
    this.done = true;
  }

  setOffline(offline) {
    this.offline = offline;
    this.dataset.offline = String(offline);
    this.banner.hidden = !offline;
    this.markAllBtn.disabled = offline;
  }

  renderStatus() {
    const none = this.items.size === 0;
    this.statusEl.textContent = none ? t("center.empty") : this.done ? t("center.end") : "";
    this.moreBtn.hidden = this.done;
  }

  revealFocus() {
    const el = this.listEl.querySelector(`[data-id="${CSS.escape(this.focusId)}"]`);
    if (el) {
      el.classList.add("focused");
      el.scrollIntoView({ block: "center" });
      el.querySelector(".note-subject")?.focus();
      this.focusId = null;
    }
  }

  addItem(n, prepend) {
    if (this.items.has(n.id)) {
      this.replaceItem(n);
      return;
    }
    this.items.set(n.id, n);
    const el = this.renderItem(n);
    if (prepend) this.listEl.prepend(el);
    else this.listEl.append(el);
  }

  replaceItem(n) {
    const old = this.listEl.querySelector(`[data-id="${CSS.escape(n.id)}"]`);
    this.items.set(n.id, n);
    if (old) old.replaceWith(this.renderItem(n));
  }

  removeItem(id) {
    this.items.delete(id);
    this.listEl.querySelector(`[data-id="${CSS.escape(id)}"]`)?.remove();
    this.renderStatus();
  }

  upsert(n) {
    if (!n) return;
    if (this.items.has(n.id)) {
      const cur = this.items.get(n.id);
      if ((cur.seq ?? 0) > (n.seq ?? 0)) return;
      if (matches(n, this.filters)) this.replaceItem({ ...cur, ...n });
      else this.removeItem(n.id);
    } else if (matches(n, this.filters)) {
      this.addItem(n, true);
      this.renderStatus();
    }
  }

  applyRead({ ids, all, read }) {
    const targets = all ? [...this.items.keys()] : ids;
    for (const id of targets) {
      const n = this.items.get(id);
      if (!n) continue;
      if (all && n.read_at) continue;
      const next = { ...n, read_at: read ? n.read_at || new Date().toISOString() : null };
      if (matches(next, this.filters)) this.replaceItem(next);
      else this.removeItem(id);
    }
  }

  renderItem(n) {
    const unread = !n.read_at;
    const tz = state.user?.timezone;
    const actions = h("div", { class: "note-actions" });
    const button = (label, action, cls = "btn btn-small") => {
      const b = h("button", { class: cls, type: "button", "data-action": action }, label);
      b.addEventListener("click", (ev) => {
        ev.stopPropagation();
        this.onAction(action, this.items.get(n.id) || n, b);
      });
      return b;
    };
    actions.append(unread ? button(t("center.mark_read"), "read") : button(t("center.mark_unread"), "unread"));
    if (isTeamAlert(n)) {
      const claim = claimOf(n);
      if (claim) actions.append(h("span", { class: "chip chip-ok" }, claim.name ? t("center.acknowledged_by", { name: claim.name }) : t("center.acknowledged")));
      else actions.append(button(t("center.acknowledge"), "acknowledge", "btn btn-small btn-primary"));
    }
    if (n.action_url) actions.append(button(t("center.open_action"), "open", "btn btn-small btn-ghost"));
    if (!n.archived_at) actions.append(button(t("center.archive"), "archive", "btn btn-small btn-ghost"));
    const subject = h("h3", { class: "note-subject", tabindex: "-1" },
      unread ? h("span", { class: "unread-dot", title: t("center.unread") }, h("span", { class: "sr-only" }, `${t("center.unread")}: `)) : null,
      n.subject);
    return h(
      "li",
      { class: `note note-${n.priority}${unread ? " unread" : ""}`, dataset: { id: n.id, read: unread ? "false" : "true" } },
      h("div", { class: "note-head" }, priorityBadge(n.priority), h("span", { class: "chip" }, catLabel(n.category)),
        h("time", { datetime: n.created_at, title: fmtDateTime(n.created_at, tz) }, fmtRelative(n.created_at, tz))),
      subject,
      h("p", { class: "note-message" }, n.message),
      actions,
    );
  }

  async onAction(action, n, btn) {
    if (action === "open") {
      const url = n.action_url;
      if (!n.read_at) act("read", n).catch(() => {});
      if (url.startsWith("/")) {
        document.dispatchEvent(new CustomEvent("avisos:close-center"));
        navigate(url);
      } else {
        window.open(url, "_blank", "noopener,noreferrer");
      }
      return;
    }
    btn.disabled = true;
    try {
      const res = await act(action, n);
      if (res && res.queued) notify(t("center.queued"));
      if (action === "archive") this.removeItem(n.id);
    } catch (err) {
      notify(t("app.error", { detail: errorText(err) }), "error");
      btn.disabled = false;
    }
  }

  async onMarkAll() {
    this.markAllBtn.disabled = true;
    try {
      const res = await markAllRead();
      notify(t("center.marked_all", { n: res.updated }));
    } catch (err) {
      notify(t("app.error", { detail: errorText(err) }), "error");
    } finally {
      this.markAllBtn.disabled = this.offline;
    }
  }
}

customElements.define("avisos-center", AvisosCenter);
