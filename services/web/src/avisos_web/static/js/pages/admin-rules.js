// Admin: rules (list, enable/disable, edit as JSON) and templates (list, edit, preview
// with sample data in both languages).

import { api, ApiError } from "../api.js";
import { t } from "../i18n.js";
import { h, clear, openModal, notify, errorText, field, table } from "../ui.js";

function notAvailable(el) {
  clear(el, h("p", { class: "muted" }, t("app.not_available")));
}

function editRule(rule, onDone) {
  const { id, builtin_key: _b, created_at: _c, updated_at: _u, ...editable } = rule;
  const text = h("textarea", { class: "mono code-area", rows: 18, spellcheck: "false" });
  text.value = JSON.stringify(editable, null, 2);
  const error = h("p", { class: "form-error", role: "alert" });
  const form = h("form", { class: "stack-form" }, field(rule.name, text), error,
    h("div", { class: "form-actions" }, h("button", { class: "btn btn-primary", type: "submit" }, t("common.save"))));
  const m = openModal(`${t("common.edit")}: ${rule.name}`, form, { wide: true });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await api(`/v1/admin/rules/${id}`, { method: "PUT", body: JSON.parse(text.value) });
      m.close();
      notify(t("common.saved"));
      onDone();
    } catch (err) {
      error.textContent = err instanceof SyntaxError ? err.message : errorText(err);
    }
  });
}

async function rulesSection(el) {
  let rules;
  try {
    rules = await api("/v1/admin/rules");
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return notAvailable(el);
    throw err;
  }
  const reload = () => rulesSection(el);
  clear(el, table([t("keys.name"), t("rules.event"), t("rules.audience"), t("center.priority"), t("rules.enabled"), t("common.actions")],
    rules.map((r) => {
      const toggle = h("input", { type: "checkbox", checked: r.enabled, "aria-label": `${t("rules.enabled")}: ${r.name}` });
      toggle.addEventListener("change", async () => {
        const { id, builtin_key: _b, created_at: _c, updated_at: _u, ...body } = r;
        try {
          await api(`/v1/admin/rules/${id}`, { method: "PUT", body: { ...body, enabled: toggle.checked } });
          r.enabled = toggle.checked;
        } catch (err) {
          toggle.checked = !toggle.checked;
          notify(errorText(err), "error");
        }
      });
      return h("tr", {}, h("td", {}, r.name), h("td", { class: "mono" }, r.event_types.join(", ")),
        h("td", {}, [...r.roles.map((x) => t(`role.${x}`)), r.location_scope].join(" · ")),
        h("td", {}, h("span", { class: `prio prio-${r.priority}` }, t(`prio.${r.priority}`))),
        h("td", {}, toggle),
        h("td", {}, h("button", { class: "btn btn-small", type: "button", onclick: () => editRule(r, reload) }, t("common.edit"))));
    }), { caption: t("rules.title") }));
}

let examplesCache = null;

/** {event_type: example data} from GET /v1/events/types ({} if unavailable). */
function examples() {
  if (!examplesCache) {
    examplesCache = api("/v1/events/types")
      .then((r) => Object.fromEntries(r.types.map((x) => [x.type, x.example])))
      .catch(() => ({}));
  }
  return examplesCache;
}

function templateEditor(tpl, onDone) {
  const inputs = {};
  const partFields = Object.entries(tpl.parts).map(([name, src]) => {
    const ta = h("textarea", { class: "mono code-area", rows: name === "html" ? 8 : 3, spellcheck: "false", name });
    ta.value = src;
    inputs[name] = ta;
    return field(name, ta);
  });
  const sample = h("textarea", { class: "mono code-area", rows: 6, spellcheck: "false", placeholder: "{}" });
  // Start from the event type's example data, for the admin to edit.
  examples().then((ex) => {
    if (ex[tpl.event_type] && !sample.value) sample.value = JSON.stringify(ex[tpl.event_type], null, 2);
  });
  const out = h("div", { class: "preview-grid", "aria-live": "polite" });
  const error = h("p", { class: "form-error", role: "alert" });
  const parts = () => Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, v.value]));
  const preview = async () => {
    error.textContent = "";
    let data;
    try {
      data = sample.value.trim() ? JSON.parse(sample.value) : undefined;
    } catch (err) {
      error.textContent = err.message;
      return;
    }
    const cards = [];
    for (const locale of ["es", "en"]) {
      try {
        const body = { event_type: tpl.event_type, channel: tpl.channel, locale, data };
        if (locale === tpl.locale) body.parts = parts();
        const res = await api("/v1/admin/templates/preview", { method: "POST", body });
        cards.push(h("div", { class: "card preview" }, h("h3", {}, locale.toUpperCase()),
          res.ok ? Object.entries(res.rendered).map(([k, v]) => h("div", {}, h("strong", {}, `${k}: `), h("span", { class: "pre" }, v)))
            : h("p", { class: "form-error" }, res.error),
          res.sms ? h("p", { class: "muted" }, `${res.sms.length} · ${res.sms.encoding} · ${res.sms.segments} SMS`) : null));
      } catch (err) {
        cards.push(h("div", { class: "card preview" }, h("h3", {}, locale.toUpperCase()), h("p", { class: "form-error" }, errorText(err))));
      }
    }
    clear(out, cards);
  };
  const form = h("form", { class: "stack-form" }, partFields, field(t("templates.sample"), sample), error,
    h("div", { class: "form-actions" },
      h("button", { class: "btn", type: "button", onclick: preview }, t("templates.preview")),
      h("button", { class: "btn btn-primary", type: "submit" }, t("common.save"))), out);
  const m = openModal(`${tpl.event_type} · ${t(`chan.${tpl.channel}`)} · ${tpl.locale}`, form, { wide: true });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await api(`/v1/admin/templates/${encodeURIComponent(tpl.event_type)}/${tpl.channel}/${tpl.locale}`, { method: "PUT", body: { parts: parts() } });
      m.close();
      notify(t("common.saved"));
      onDone();
    } catch (err) {
      error.textContent = errorText(err);
    }
  });
  preview();
}

async function templatesSection(el) {
  let list;
  try {
    list = await api("/v1/admin/templates");
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return notAvailable(el);
    throw err;
  }
  const reload = () => templatesSection(el);
  clear(el, table([t("rules.event"), t("deliveries.channel"), t("prefs.language"), t("common.status"), t("common.actions")],
    list.map((x) => h("tr", {}, h("td", { class: "mono" }, x.event_type), h("td", {}, t(`chan.${x.channel}`)), h("td", {}, x.locale),
      h("td", {}, h("span", { class: `chip ${x.last_error ? "chip-off" : x.origin === "override" ? "chip-ok" : ""}` }, x.last_error ? "error" : x.origin)),
      h("td", {}, h("button", { class: "btn btn-small", type: "button", onclick: () => templateEditor(x, reload) }, t("common.edit"))))),
    { caption: t("templates.title") }));
}

export async function renderRules(main) {
  const rules = h("div", {}, t("common.loading"));
  const templates = h("div", {}, t("common.loading"));
  clear(main, h("section", { class: "page" }, h("h1", {}, t("rules.title")), rules, h("h2", {}, t("templates.title")), templates));
  await Promise.all([
    rulesSection(rules).catch((err) => clear(rules, h("p", { class: "form-error" }, errorText(err)))),
    templatesSection(templates).catch((err) => clear(templates, h("p", { class: "form-error" }, errorText(err)))),
  ]);
}
