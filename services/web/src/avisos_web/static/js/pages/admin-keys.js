// Admin: publisher API keys. Create (the key is shown once, with a copy button),
// scopes, revoke, last used.

import { api } from "../api.js";
import { t, fmtDateTime } from "../i18n.js";
import { h, clear, openModal, notify, errorText, field, confirmDialog, table } from "../ui.js";

const SCOPES = ["events:publish", "notifications:write", "reports:read"];

function showKey(created) {
  const out = h("input", { class: "mono", readonly: true, value: created.key, id: "new-key-value", "aria-label": "API key" });
  const copy = h("button", { class: "btn btn-primary", type: "button", id: "copy-key" }, t("common.copy"));
  copy.addEventListener("click", async () => {
    out.select();
    try {
      await navigator.clipboard.writeText(created.key);
    } catch {
      document.execCommand?.("copy");
    }
    copy.textContent = t("common.copied");
  });
  openModal(created.name, h("div", {}, h("p", { class: "warn" }, t("keys.shown_once")), h("div", { class: "copy-row" }, out, copy)));
}

function createForm(onDone) {
  const name = h("input", { name: "name", required: true, autocomplete: "off" });
  const boxes = SCOPES.map((s) => h("span", { class: "check" }, h("input", { type: "checkbox", id: `scope-${s}`, value: s, checked: s === "events:publish" }), h("label", { for: `scope-${s}`, class: "mono" }, s)));
  const error = h("p", { class: "form-error", role: "alert" });
  const form = h("form", { class: "stack-form" }, field(t("keys.name"), name),
    h("fieldset", {}, h("legend", {}, t("keys.scopes")), h("div", { class: "check-group" }, boxes)), error,
    h("div", { class: "form-actions" }, h("button", { class: "btn btn-primary", type: "submit" }, t("common.create"))));
  const m = openModal(t("keys.new"), form);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const scopes = [...form.querySelectorAll("input[type=checkbox]:checked")].map((b) => b.value);
    try {
      const created = await api("/v1/admin/api-keys", { method: "POST", body: { name: name.value.trim(), scopes } });
      m.close();
      showKey(created);
      onDone();
    } catch (err) {
      error.textContent = errorText(err);
    }
  });
}

export async function renderKeys(main) {
  const list = h("div", {}, t("common.loading"));
  const newBtn = h("button", { class: "btn btn-primary", type: "button", id: "new-key" }, t("keys.new"));
  const load = async () => {
    try {
      const keys = await api("/v1/admin/api-keys");
      clear(list, table([t("keys.name"), t("keys.prefix"), t("keys.scopes"), t("keys.last_used"), t("common.status"), t("common.actions")],
        keys.map((k) => {
          const revoke = h("button", { class: "btn btn-small btn-danger", type: "button" }, t("keys.revoke"));
          revoke.addEventListener("click", async () => {
            if (!(await confirmDialog(t("keys.confirm_revoke", { name: k.name }), t("keys.revoke")))) return;
            try {
              await api(`/v1/admin/api-keys/${k.id}/revoke`, { method: "POST" });
              load();
            } catch (err) {
              notify(errorText(err), "error");
            }
          });
          return h("tr", {}, h("td", {}, k.name), h("td", { class: "mono" }, `avk_${k.prefix}_…`),
            h("td", {}, k.scopes.map((s) => h("span", { class: "chip mono" }, s))),
            h("td", {}, k.last_used_at ? fmtDateTime(k.last_used_at) : t("common.never")),
            h("td", {}, k.revoked_at ? h("span", { class: "chip chip-off" }, t("keys.revoked")) : h("span", { class: "chip chip-ok" }, t("users.active"))),
            h("td", {}, k.revoked_at ? "" : revoke));
        }), { caption: t("keys.title") }));
    } catch (err) {
      clear(list, h("p", { class: "form-error" }, errorText(err)));
    }
  };
  newBtn.addEventListener("click", () => createForm(load));
  clear(main, h("section", { class: "page" }, h("div", { class: "page-head" }, h("h1", {}, t("keys.title")), newBtn), list));
  await load();
}
