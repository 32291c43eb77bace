// The preferences modal: per category x channel switches (mandatory ones locked),
// quiet hours and time zone, language, phone (email shown), and "notify me on this
// device" (Web Push). Saves the profile (PATCH /v1/me) and the preferences
// (PUT /v1/me/preferences) together.

import { api, ApiError } from "../api.js";
import { t, setLocale, LOCALES, catLabel } from "../i18n.js";
import { h, openModal, notify, errorText, field } from "../ui.js";
import { state, setUser } from "../state.js";
import { pushSupported, currentSubscription, subscribePush, unsubscribePush } from "../push.js";

const CHANNELS = ["in_app", "email", "sms", "push"];

function timezones(current) {
  let zones = [];
  try {
    zones = Intl.supportedValuesOf("timeZone");
  } catch {
    zones = ["Europe/Madrid", "Atlantic/Canary", "Europe/Lisbon", "Europe/London", "UTC"];
  }
  if (current && !zones.includes(current)) zones = [current, ...zones];
  return zones;
}

function hhmm(v) {
  return v ? String(v).slice(0, 5) : "";
}

export async function openPreferences() {
  const user = state.user;
  const form = h("form", { class: "prefs-form", novalidate: true });
  const m = openModal(t("prefs.title"), form, { wide: true, id: "prefs-modal" });
  form.append(h("p", {}, t("common.loading")));

  let prefs = null;
  try {
    prefs = await api("/v1/me/preferences");
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 404)) {
      notify(t("app.error", { detail: errorText(err) }), "error");
    }
  }

  const name = h("input", { name: "display_name", value: user.display_name, required: true, autocomplete: "name" });
  const email = h("input", { name: "email", value: user.email, readonly: true, type: "email" });
  const phone = h("input", { name: "phone", value: user.phone || "", type: "tel", placeholder: "+34600111222", autocomplete: "tel" });
  const lang = h("select", { name: "locale" }, LOCALES.map((l) => h("option", { value: l, selected: l === user.locale }, l === "es" ? "Español" : "English")));
  const tz = h("select", { name: "timezone" }, timezones(user.timezone).map((z) => h("option", { value: z, selected: z === user.timezone }, z)));

  const profile = h("fieldset", {}, h("legend", {}, t("prefs.title")),
    h("div", { class: "grid-2" }, field(t("prefs.name"), name), field(t("prefs.email"), email),
      field(t("prefs.phone"), phone), field(t("prefs.language"), lang), field(t("prefs.timezone"), tz)));

  // Channels matrix.
  const switches = new Map(); // "cat|chan" -> checkbox
  let channels;
  if (prefs) {
    const rows = prefs.categories.map((c) => h("tr", {},
      h("th", { scope: "row" }, catLabel(c.category), c.mandatory ? h("span", { class: "chip chip-lock" }, t("prefs.mandatory")) : null),
      CHANNELS.map((ch) => {
        const st = c.channels[ch] || { enabled: false, locked: false };
        const box = h("input", {
          type: "checkbox", checked: st.enabled, disabled: st.locked,
          "aria-label": `${catLabel(c.category)} – ${t(`chan.${ch}`)}${st.locked ? ` (${t("prefs.mandatory")})` : ""}`,
          dataset: { category: c.category, channel: ch },
        });
        switches.set(`${c.category}|${ch}`, { box, initial: st.enabled, locked: st.locked });
        return h("td", { class: st.locked ? "locked" : "" }, box);
      })));
    channels = h("fieldset", {}, h("legend", {}, t("prefs.channels")),
      h("div", { class: "table-wrap" }, h("table", { class: "prefs-table" },
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, t("center.category")), CHANNELS.map((ch) => h("th", { scope: "col" }, t(`chan.${ch}`))))),
        h("tbody", {}, rows))));
  } else {
    channels = h("p", { class: "muted" }, t("prefs.not_available"));
  }

  const quietOn = h("input", { type: "checkbox", id: "quiet-on", checked: Boolean(prefs && prefs.quiet_hours) });
  const qStart = h("input", { type: "time", name: "quiet_start", value: hhmm(prefs?.quiet_hours?.start) || "22:00" });
  const qEnd = h("input", { type: "time", name: "quiet_end", value: hhmm(prefs?.quiet_hours?.end) || "07:00" });
  const digest = h("select", { name: "digest" }, ["off", "hourly", "daily"].map((d) =>
    h("option", { value: d, selected: prefs?.digest === d }, t(`prefs.digest_${d}`))));
  const syncQuiet = () => { qStart.disabled = qEnd.disabled = !quietOn.checked; };
  quietOn.addEventListener("change", syncQuiet);
  syncQuiet();
  const quiet = prefs ? h("fieldset", {}, h("legend", {}, t("prefs.quiet")),
    h("div", { class: "check" }, quietOn, h("label", { for: "quiet-on" }, t("prefs.quiet_enable"))),
    h("div", { class: "grid-3" }, field(t("prefs.quiet_from"), qStart), field(t("prefs.quiet_to"), qEnd), field(t("prefs.digest"), digest))) : null;

  // This device.
  const device = h("input", { type: "checkbox", id: "push-device", disabled: !pushSupported() });
  const deviceNote = h("small", { class: "hint" });
  if (!pushSupported()) deviceNote.textContent = t("prefs.device_unsupported");
  else if (Notification.permission === "denied") deviceNote.textContent = t("prefs.device_denied");
  // The browser's answer can come after the user has already ticked the box (it waits for
  // the service worker to be active): it must not undo what the user just did.
  let touched = false;
  currentSubscription().then((s) => { if (!touched) device.checked = Boolean(s); }).catch(() => {});
  device.addEventListener("change", async () => {
    touched = true;
    device.disabled = true;
    try {
      if (device.checked) await subscribePush();
      else await unsubscribePush();
      notify(t("common.saved"));
    } catch (err) {
      device.checked = !device.checked;
      deviceNote.textContent = err.code === "denied" ? t("prefs.device_denied") : t("app.error", { detail: errorText(err) });
    } finally {
      device.disabled = false;
    }
  });
  const deviceSet = h("fieldset", {}, h("legend", {}, t("prefs.device_title")),
    h("div", { class: "check" }, device, h("label", { for: "push-device" }, t("prefs.device"))), deviceNote);

  const error = h("p", { class: "form-error", role: "alert" });
  const save = h("button", { class: "btn btn-primary", type: "submit" }, t("prefs.save"));
  const cancel = h("button", { class: "btn", type: "button", onclick: () => m.close() }, t("prefs.cancel"));
  form.replaceChildren(profile, channels, quiet || "", deviceSet, error, h("div", { class: "form-actions" }, cancel, save));

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    save.disabled = true;
    try {
      const patch = {};
      if (name.value.trim() !== user.display_name) patch.display_name = name.value.trim();
      if ((phone.value.trim() || null) !== (user.phone || null)) patch.phone = phone.value.trim() || null;
      if (lang.value !== user.locale) patch.locale = lang.value;
      if (tz.value !== user.timezone) patch.timezone = tz.value;
      let updated = user;
      if (Object.keys(patch).length) updated = await api("/v1/me", { method: "PATCH", body: patch });
      if (prefs) {
        const chosen = {};
        for (const [k, { box, initial, locked }] of switches) {
          if (locked || box.checked === initial) continue;
          const [cat, ch] = k.split("|");
          (chosen[cat] ||= {})[ch] = box.checked;
        }
        const body = { channels: chosen, digest: digest.value };
        body.quiet_hours = quietOn.checked ? { start: qStart.value, end: qEnd.value } : null;
        await api("/v1/me/preferences", { method: "PUT", body });
      }
      setUser(updated);
      if (updated.locale !== document.documentElement.lang) setLocale(updated.locale);
      m.close();
      notify(t("prefs.saved"));
    } catch (err) {
      error.textContent = errorText(err);
    } finally {
      save.disabled = false;
    }
  });
}
