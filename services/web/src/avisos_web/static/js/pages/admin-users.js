// Admin: users. List and search, create, edit roles and locations, deactivate (their
// sessions end at once), reset password.

import { api } from "../api.js";
import { t } from "../i18n.js";
import { h, clear, openModal, notify, errorText, field, confirmDialog, table } from "../ui.js";
import { state } from "../state.js";

const ROLES = ["admin", "manager", "staff"];
let locationsCache = null;

async function locations() {
  if (!locationsCache) locationsCache = await api("/v1/locations").catch(() => []);
  return locationsCache;
}

function checks(name, options, selected, labelFn) {
  return h("div", { class: "check-group", role: "group" }, options.map((o) => {
    const id = `${name}-${o}`.replace(/[^\w-]/g, "_");
    return h("span", { class: "check" },
      h("input", { type: "checkbox", id, name, value: o, checked: selected.includes(o) }),
      h("label", { for: id }, labelFn(o)));
  }));
}

function checked(form, name) {
  return [...form.querySelectorAll(`input[name="${name}"]:checked`)].map((i) => i.value);
}

async function userForm(user, onDone) {
  const locs = await locations();
  const isNew = !user;
  const form = h("form", { class: "stack-form", id: "user-form" });
  const email = h("input", { name: "email", type: "email", required: true, value: user?.email || "", readonly: !isNew, autocomplete: "off" });
  const name = h("input", { name: "display_name", required: true, value: user?.display_name || "" });
  const password = isNew ? h("input", { name: "password", type: "password", minlength: 10, required: true, autocomplete: "new-password" }) : null;
  const locale = h("select", { name: "locale" }, ["es", "en"].map((l) => h("option", { value: l, selected: (user?.locale || "es") === l }, l === "es" ? "Español" : "English")));
  const phone = h("input", { name: "phone", type: "tel", value: user?.phone || "", placeholder: "+34600111222" });
  const roles = checks("roles", ROLES, user?.roles || ["staff"], (r) => t(`role.${r}`));
  const locSel = checks("locations", locs.map((l) => l.code), (user?.locations || []).map((l) => l.code),
    (c) => { const l = locs.find((x) => x.code === c); return l ? `${l.code} · ${l.name}` : c; });
  const error = h("p", { class: "form-error", role: "alert" });
  form.append(
    field(t("users.email"), email), field(t("users.name"), name),
    password ? field(t("users.password"), password) : null,
    h("fieldset", {}, h("legend", {}, t("users.roles")), roles),
    h("fieldset", {}, h("legend", {}, t("users.locations")), locSel),
    h("div", { class: "grid-2" }, field(t("prefs.language"), locale), field(t("prefs.phone"), phone)),
    error,
    h("div", { class: "form-actions" }, h("button", { class: "btn btn-primary", type: "submit" }, isNew ? t("common.create") : t("common.save"))));
  const m = openModal(isNew ? t("users.new") : `${t("common.edit")}: ${user.display_name}`, form, { wide: true });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    const body = {
      display_name: name.value.trim(), roles: checked(form, "roles"), location_codes: checked(form, "locations"),
      locale: locale.value, phone: phone.value.trim() || null,
    };
    try {
      if (isNew) await api("/v1/admin/users", { method: "POST", body: { ...body, email: email.value.trim(), password: password.value } });
      else await api(`/v1/admin/users/${user.id}`, { method: "PATCH", body });
      m.close();
      notify(isNew ? t("users.created") : t("common.saved"));
      onDone();
    } catch (err) {
      error.textContent = errorText(err);
    }
  });
}

function resetPassword(user) {
  const pw = h("input", { type: "password", minlength: 10, required: true, autocomplete: "new-password" });
  const error = h("p", { class: "form-error", role: "alert" });
  const form = h("form", { class: "stack-form" }, field(t("users.new_password"), pw), error,
    h("div", { class: "form-actions" }, h("button", { class: "btn btn-primary", type: "submit" }, t("common.save"))));
  const m = openModal(`${t("users.reset")}: ${user.display_name}`, form);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await api(`/v1/admin/users/${user.id}/password`, { method: "POST", body: { new_password: pw.value } });
      m.close();
      notify(t("common.saved"));
    } catch (err) {
      error.textContent = errorText(err);
    }
  });
}

export async function renderUsers(main) {
  const q = h("input", { type: "search", id: "users-q", placeholder: t("common.search"), "aria-label": t("common.search") });
  const list = h("div", { id: "users-list" }, t("common.loading"));
  const total = h("p", { class: "muted", role: "status" });
  const newBtn = h("button", { class: "btn btn-primary", type: "button", id: "new-user" }, t("users.new"));
  const load = async () => {
    try {
      const page = await api("/v1/admin/users", { query: { q: q.value.trim(), limit: 100 } });
      total.textContent = t("users.total", { n: page.total });
      clear(list, table([t("users.name"), t("users.email"), t("users.roles"), t("users.locations"), t("common.status"), t("common.actions")],
        page.items.map((u) => {
          const toggle = h("button", { class: `btn btn-small ${u.is_active ? "btn-danger" : ""}`, type: "button", "data-action": "toggle-active" }, u.is_active ? t("users.deactivate") : t("users.activate"));
          toggle.disabled = u.id === state.user.id;
          toggle.addEventListener("click", async () => {
            if (u.is_active && !(await confirmDialog(t("users.confirm_deactivate", { name: u.display_name }), t("users.deactivate")))) return;
            try {
              await api(`/v1/admin/users/${u.id}`, { method: "PATCH", body: { is_active: !u.is_active } });
              load();
            } catch (err) {
              notify(errorText(err), "error");
            }
          });
          return h("tr", { dataset: { email: u.email } },
            h("td", {}, u.display_name), h("td", {}, u.email),
            h("td", {}, u.roles.map((r) => t(`role.${r}`)).join(", ")),
            h("td", {}, u.locations.map((l) => l.code).join(", ")),
            h("td", {}, h("span", { class: `chip ${u.is_active ? "chip-ok" : "chip-off"}` }, u.is_active ? t("users.active") : t("users.inactive"))),
            h("td", { class: "row-actions" },
              h("button", { class: "btn btn-small", type: "button", onclick: () => userForm(u, load) }, t("common.edit")),
              h("button", { class: "btn btn-small btn-ghost", type: "button", onclick: () => resetPassword(u) }, t("users.reset")),
              toggle));
        }), { caption: t("users.title") }));
    } catch (err) {
      clear(list, h("p", { class: "form-error" }, errorText(err)));
    }
  };
  let timer;
  q.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(load, 250); });
  newBtn.addEventListener("click", () => userForm(null, load));
  clear(main, h("section", { class: "page" },
    h("div", { class: "page-head" }, h("h1", {}, t("users.title")), newBtn),
    h("div", { class: "toolbar" }, q), total, list));
  await load();
}

