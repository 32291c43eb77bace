// router.js: a tiny history router. Routes are patterns like "/notifications/:id";
// same-origin links marked data-link navigate without a reload.

const routes = [];
let notFound = null;
let current = null;

export function route(pattern, render) {
  const names = [];
  const re = new RegExp(
    "^" + pattern.replace(/\/:(\w+)/g, (_, n) => { names.push(n); return "/([^/]+)"; }) + "/?$",
  );
  routes.push({ re, names, render, pattern });
}

export function fallback(render) {
  notFound = render;
}

export function currentPath() {
  return location.pathname;
}

/** Go to `path` (pushes history unless replace) and render its route. */
export function navigate(path, { replace = false } = {}) {
  if (path !== location.pathname + location.search) {
    if (replace) history.replaceState({}, "", path);
    else history.pushState({}, "", path);
  }
  return render();
}

export async function render() {
  const path = location.pathname;
  for (const r of routes) {
    const m = path.match(r.re);
    if (m) {
      const params = {};
      r.names.forEach((n, i) => { params[n] = decodeURIComponent(m[i + 1]); });
      const query = Object.fromEntries(new URLSearchParams(location.search));
      current = r.pattern;
      await r.render(params, query);
      document.dispatchEvent(new CustomEvent("avisos:routed", { detail: { path, pattern: r.pattern } }));
      return;
    }
  }
  current = null;
  if (notFound) await notFound();
}

export function currentPattern() {
  return current;
}

export function startRouter() {
  window.addEventListener("popstate", () => render());
  document.addEventListener("click", (ev) => {
    const a = ev.target.closest && ev.target.closest("a[data-link]");
    if (!a || ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey) return;
    const url = new URL(a.href, location.href);
    if (url.origin !== location.origin) return;
    ev.preventDefault();
    navigate(url.pathname + url.search);
  });
}
