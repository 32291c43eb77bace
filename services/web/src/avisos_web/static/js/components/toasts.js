// <avisos-toasts>: toasts for arriving notifications and short status messages.
// Colour by priority; critical ones stay until dismissed, the others leave after
// TOAST_MS. Two live regions: polite for most, assertive for critical, so screen readers
// announce them. A toast is a button-like card: clicking opens the notification.

import { t } from "../i18n.js";
import { h } from "../ui.js";

const TOAST_MS = 7000;
const MAX_TOASTS = 4;

class AvisosToasts extends HTMLElement {
  connectedCallback() {
    if (this.list) return;
    this.list = h("div", { class: "toast-list" });
    this.polite = h("div", { class: "sr-only", "aria-live": "polite", "aria-atomic": "true" });
    this.assertive = h("div", { class: "sr-only", "aria-live": "assertive", "aria-atomic": "true" });
    this.append(this.list, this.polite, this.assertive);
  }

  /** Show a toast for a notification; `onOpen` is called when the user clicks it. */
  show(n, onOpen) {
    const critical = n.priority === "critical";
    const dismiss = h("button", { class: "icon-btn toast-dismiss", type: "button", "aria-label": t("toast.dismiss"), title: t("toast.dismiss") }, "✕");
    const open = h(
      "button",
      { class: "toast-main", type: "button" },
      h("span", { class: "toast-prio" }, t(`prio.${n.priority}`)),
      h("strong", { class: "toast-subject" }, n.subject),
      h("span", { class: "toast-message" }, n.message),
    );
    const el = h("div", { class: `toast toast-${n.priority}`, dataset: { id: n.id } }, open, dismiss);
    const remove = () => {
      el.classList.add("leaving");
      setTimeout(() => el.remove(), 200);
    };
    dismiss.addEventListener("click", remove);
    open.addEventListener("click", () => {
      remove();
      if (onOpen) onOpen(n);
    });
    this.list.prepend(el);
    while (this.list.children.length > MAX_TOASTS) {
      const victim = [...this.list.children].reverse().find((c) => !c.classList.contains("toast-critical")) || this.list.lastElementChild;
      victim.remove();
    }
    const region = critical ? this.assertive : this.polite;
    region.textContent = `${t(`prio.${n.priority}`)}: ${n.subject}. ${n.message}`;
    if (!critical) setTimeout(remove, TOAST_MS);
    return el;
  }

  /** A plain status message (saved, error...). */
  message(text, kind = "info") {
    const el = h("div", { class: `toast toast-msg toast-${kind}` }, h("span", { class: "toast-main" }, text));
    this.list.prepend(el);
    this.polite.textContent = text;
    setTimeout(() => el.remove(), kind === "error" ? 8000 : 3500);
  }
}

customElements.define("avisos-toasts", AvisosToasts);
