// api.js: calls to the notification API through this origin's /api proxy.
// The session is an HttpOnly cookie; state-changing calls carry the CSRF token
// (double submit: the avisos_csrf cookie, readable by the page) in X-CSRF-Token.

export const API_BASE = "/api";

export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

/** The request never reached the server (offline, proxy down). */
export class NetworkError extends Error {}

export function csrfToken() {
  const m = document.cookie.match(/(?:^|;\s*)avisos_csrf=([^;]+)/);
  return m ? decodeURIComponent(m[1]) : "";
}

export function newKey() {
  return crypto.randomUUID();
}

/**
 * Call the API. `path` starts with /v1/. Resolves with the parsed JSON (or null for
 * 204), rejects with ApiError (HTTP error; 401 also fires "avisos:unauthenticated") or
 * NetworkError (no answer).
 */
export async function api(path, { method = "GET", body, query, idempotencyKey, signal } = {}) {
  const url = new URL(API_BASE + path, location.origin);
  if (query) {
    for (const [k, v] of Object.entries(query)) {
      if (v === undefined || v === null || v === "") continue;
      if (Array.isArray(v)) v.forEach((x) => url.searchParams.append(k, x));
      else url.searchParams.set(k, String(v));
    }
  }
  const headers = { Accept: "application/json" };
  if (method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = csrfToken();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (idempotencyKey) headers["Idempotency-Key"] = idempotencyKey;
  let res;
  try {
    res = await fetch(url, {
      method, headers, signal, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw new NetworkError(String(err && err.message));
  }
  if (res.status === 502 || res.status === 503 || res.status === 504) {
    // The front answered but the API did not: behave as offline for queueing purposes.
    if (res.headers.get("content-type")?.includes("json")) {
      const problem = await res.json().catch(() => null);
      if (problem && problem.title === "API unavailable") throw new NetworkError("api unavailable");
      throw new ApiError(res.status, problem);
    }
    throw new NetworkError(`HTTP ${res.status}`);
  }
  if (res.status === 204) return null;
  const isJson = (res.headers.get("content-type") || "").includes("json");
  const data = isJson ? await res.json().catch(() => null) : null;
  if (!res.ok) {
    if (res.status === 401 && !path.startsWith("/v1/auth/login")) {
      window.dispatchEvent(new CustomEvent("avisos:unauthenticated"));
    }
    const err = new ApiError(res.status, data);
    err.retryAfter = Number(res.headers.get("retry-after")) || null;
    throw err;
  }
  return data;
}

/** Probe an optional endpoint: true unless it answers 404/405 (not deployed yet). */
export async function available(path) {
  try {
    await api(path, { query: { limit: 1 } });
    return true;
  } catch (err) {
    if (err instanceof ApiError && (err.status === 404 || err.status === 405)) return false;
    if (err instanceof ApiError && err.status === 422) return true; // exists, wants params
    throw err;
  }
}
