// <avisos-bell>: the header bell with the live unread counter. The badge shows the total
// and takes the colour of the highest priority that has unread items; the breakdown by
// priority is in the accessible name and the tooltip. Clicking opens the notification center.

import { t } from "../i18n.js";
import { h } from "../ui.js";
import { on, state } from "../state.js";

const ORDER = ["critical", "high", "normal", "low"];
const SVG = "http://www.w3.org/2000/svg";

/** The bell drawn as SVG (emoji fonts are not everywhere). */
function bellSvg() {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("width", "24");
  svg.setAttribute("height", "24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("class", "bell-icon");
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("d", "M12 2a1.5 1.5 0 0 0-1.5 1.5v.6A6.5 6.5 0 0 0 5.5 10.5V15l-2 2.5V19h17v-1.5l-2-2.5v-4.5a6.5 6.5 0 0 0-5-6.4v-.6A1.5 1.5 0 0 0 12 2Zm-2.5 18a2.5 2.5 0 0 0 5 0Z");
  path.setAttribute("fill", "currentColor");
  svg.append(path);
  return svg;
}

class AvisosBell extends HTMLElement {
  connectedCallback() {
    if (this.button) return;
    this.badge = h("span", { class: "badge", "aria-hidden": "true" });
    this.button = h(
      "button",
      { class: "icon-btn bell-btn", type: "button", "aria-haspopup": "dialog" },
      bellSvg(),
      this.badge,
    );
    this.button.addEventListener("click", () => this.dispatchEvent(new CustomEvent("open-center", { bubbles: true })));
    this.append(this.button);
    this.off = [on("unread", () => this.render()), on("user", () => this.render())];
    document.addEventListener("avisos:locale", () => this.render());
    this.render();
  }

  disconnectedCallback() {
    (this.off || []).forEach((f) => f());
  }

  render() {
    const { total, by_priority: by } = state.unread;
    const top = ORDER.find((p) => (by[p] || 0) > 0) || "normal";
    this.badge.textContent = total > 99 ? "99+" : String(total);
    this.badge.hidden = total === 0;
    this.badge.className = `badge badge-${top}`;
    this.dataset.count = String(total);
    const parts = ORDER.filter((p) => by[p]).map((p) => `${t(`prio.${p}`)}: ${by[p]}`);
    const label = total ? `${t("bell.label", { total })} (${parts.join(", ")})` : t("bell.label_none");
    this.button.setAttribute("aria-label", label);
    this.button.title = label;
  }
}

customElements.define("avisos-bell", AvisosBell);
