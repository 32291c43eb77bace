// The login page. POST /v1/auth/login sets the session cookie (HttpOnly) and the CSRF cookie.

import { api, ApiError, NetworkError } from "../api.js";
import { t, setLocale, getLocale, LOCALES } from "../i18n.js";
import { h, clear } from "../ui.js";

export function renderLogin(main, { onLoggedIn, message } = {}) {
  const email = h("input", { id: "login-email", name: "email", type: "email", autocomplete: "username", required: true, autofocus: true });
  const password = h("input", { id: "login-password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const error = h("p", { class: "form-error", role: "alert", id: "login-error" }, message || "");
  const submit = h("button", { class: "btn btn-primary btn-block", type: "submit" }, t("auth.submit"));
  const langs = h("div", { class: "lang-switch", role: "group", "aria-label": t("prefs.language") },
    LOCALES.map((l) => h("button", {
      type: "button", class: `btn btn-small${l === getLocale() ? " btn-primary" : " btn-ghost"}`,
      "aria-pressed": String(l === getLocale()), lang: l,
      onclick: () => { setLocale(l); renderLogin(main, { onLoggedIn, message }); },
    }, l === "es" ? "Español" : "English")));
  const form = h("form", { class: "login-form", novalidate: false },
    h("div", { class: "field" }, h("label", { for: "login-email" }, t("auth.email")), email),
    h("div", { class: "field" }, h("label", { for: "login-password" }, t("auth.password")), password),
    error, submit);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    submit.disabled = true;
    try {
      const res = await api("/v1/auth/login", { method: "POST", body: { email: email.value.trim(), password: password.value } });
      await onLoggedIn(res.user);
    } catch (err) {
      if (err instanceof ApiError && err.status === 429) error.textContent = t("auth.throttled", { secs: err.retryAfter || 60 });
      else if (err instanceof ApiError && (err.status === 401 || err.status === 422)) error.textContent = t("auth.failed");
      else if (err instanceof NetworkError) error.textContent = t("conn.offline");
      else error.textContent = t("app.error", { detail: err.message });
      password.select();
    } finally {
      submit.disabled = false;
    }
  });
  clear(main, h("section", { class: "login-page" },
    h("div", { class: "login-card" },
      h("div", { class: "login-brand" }, h("img", { src: "/static/icons/icon-192.png", alt: "", width: 56, height: 56 }), h("span", {}, "Avisos")),
      h("h1", {}, t("auth.title")),
      h("p", { class: "muted" }, t("auth.tagline")),
      form, langs)));
  requestAnimationFrame(() => email.focus());
}
