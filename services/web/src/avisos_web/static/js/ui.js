// ui.js: small DOM helpers. Everything is built with createElement/textContent (never
// HTML strings with data), so server text cannot inject markup, and no inline style
// attributes are produced (the CSP forbids them).

import { t } from "./i18n.js";

/** h("button", {class: "btn", onclick: fn, "aria-label": "x"}, "text", child) */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const FOCUSABLE =
  'a[href], button:not([disabled]), input:not([disabled]):not([type="hidden"]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex="-1"])';

export function focusables(root) {
  return [...root.querySelectorAll(FOCUSABLE)].filter((el) => !el.closest("[hidden]") && el.offsetParent !== null);
}

let openModals = [];

/**
 * Open a modal dialog holding `content`. Focus moves into it and is trapped there (Tab
 * and Shift+Tab cycle), Escape or the close button closes it, and focus returns to the
 * element that opened it. Returns {close, el, body}.
 */
export function openModal(title, content, { onClose, wide = false, id } = {}) {
  const opener = document.activeElement;
  const titleId = `modal-title-${Math.random().toString(36).slice(2, 8)}`;
  const closeBtn = h("button", { class: "icon-btn modal-close", type: "button", "aria-label": t("common.close"), title: t("common.close") }, "✕");
  const body = h("div", { class: "modal-body" }, content);
  const dialog = h(
    "div",
    { class: `modal${wide ? " modal-wide" : ""}`, role: "dialog", "aria-modal": "true", "aria-labelledby": titleId, id },
    h("div", { class: "modal-head" }, h("h2", { id: titleId }, title), closeBtn),
    body,
  );
  const backdrop = h("div", { class: "modal-backdrop" }, dialog);
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    backdrop.remove();
    openModals = openModals.filter((m) => m !== handle);
    document.removeEventListener("keydown", onKey, true);
    if (!openModals.length) document.body.classList.remove("has-modal");
    if (onClose) onClose();
    if (opener && opener.focus && document.contains(opener)) opener.focus();
  };
  const onKey = (ev) => {
    if (openModals[openModals.length - 1] !== handle) return;
    if (ev.key === "Escape") {
      ev.preventDefault();
      close();
    } else if (ev.key === "Tab") {
      const items = focusables(dialog);
      if (!items.length) return;
      const first = items[0];
      const last = items[items.length - 1];
      if (ev.shiftKey && (document.activeElement === first || !dialog.contains(document.activeElement))) {
        ev.preventDefault();
        last.focus();
      } else if (!ev.shiftKey && (document.activeElement === last || !dialog.contains(document.activeElement))) {
        ev.preventDefault();
        first.focus();
      }
    }
  };
  closeBtn.addEventListener("click", close);
  backdrop.addEventListener("mousedown", (ev) => {
    if (ev.target === backdrop) close();
  });
  document.addEventListener("keydown", onKey, true);
  document.body.append(backdrop);
  document.body.classList.add("has-modal");
  const handle = { close, el: dialog, body };
  openModals.push(handle);
  requestAnimationFrame(() => {
    const target = dialog.querySelector("[autofocus]") || focusables(body)[0] || closeBtn;
    target.focus();
  });
  return handle;
}

export function closeAllModals() {
  for (const m of [...openModals]) m.close();
}

/** A yes/no question in a modal; resolves true or false. */
export function confirmDialog(message, yesLabel) {
  return new Promise((resolve) => {
    let answer = false;
    const yes = h("button", { class: "btn btn-danger", type: "button" }, yesLabel || t("common.yes"));
    const no = h("button", { class: "btn", type: "button", autofocus: true }, t("common.cancel"));
    const m = openModal(t("common.actions"), h("div", {}, h("p", {}, message), h("div", { class: "form-actions" }, no, yes)), {
      onClose: () => resolve(answer),
    });
    yes.addEventListener("click", () => { answer = true; m.close(); });
    no.addEventListener("click", () => m.close());
  });
}

/** Show a short status message in the toast region. */
export function notify(message, kind = "info") {
  document.getElementById("toasts")?.message(message, kind);
}

export function errorText(err) {
  if (err && err.problem) {
    const p = err.problem;
    if (Array.isArray(p.errors) && p.errors.length) {
      return p.errors.map((e) => `${(e.loc || []).slice(-1)[0] || ""}: ${e.msg}`).join("; ");
    }
    if (Array.isArray(p.detail)) return p.detail.map((e) => e.msg).join("; ");
    return p.detail || p.title || err.message;
  }
  return err ? err.message || String(err) : "";
}

export function field(label, input, hint) {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 8)}`;
  input.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), input, hint ? h("small", { class: "hint" }, hint) : null);
}

export function priorityBadge(priority) {
  return h("span", { class: `prio prio-${priority}` }, t(`prio.${priority}`));
}

export function table(headers, rows, { caption } = {}) {
  return h(
    "div",
    { class: "table-wrap" },
    h("table", {}, caption ? h("caption", { class: "sr-only" }, caption) : null,
      h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col" }, x)))),
      h("tbody", {}, rows)),
  );
}
