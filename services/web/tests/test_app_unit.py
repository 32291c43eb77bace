"""The web front's HTTP behaviour in process (Starlette's test client, no proxy): headers,
SPA fallback, cache policy, health."""

from __future__ import annotations

from starlette.testclient import TestClient

from avisos_web.app import create_app
from avisos_web.settings import WebSettings


def client() -> TestClient:
    return TestClient(create_app(WebSettings(web_proxy=False)))


def test_every_answer_has_the_security_headers() -> None:
    with client() as c:
        for path in ("/", "/static/js/app.js", "/nope.png", "/healthz", "/sw.js"):
            r = c.get(path)
            csp = r.headers["content-security-policy"]
            assert "default-src 'self'" in csp and "'unsafe-inline'" not in csp, path
            assert "frame-ancestors 'none'" in csp
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.headers["x-frame-options"] == "DENY"
            assert r.headers["referrer-policy"] == "strict-origin-when-cross-origin"


def test_spa_fallback_and_404s() -> None:
    with client() as c:
        index = c.get("/").text
        for path in ("/notifications", "/notifications/123", "/admin/users", "/login"):
            r = c.get(path)
            assert r.status_code == 200 and r.text == index, path
            assert r.headers["cache-control"] == "no-cache"
        for path in ("/static/missing.js", "/favicon.ico", "/api/v1/me", "/ws"):
            assert c.get(path).status_code == 404, path


def test_cache_policy() -> None:
    with client() as c:
        sw = c.get("/sw.js")
        assert sw.headers["cache-control"] == "no-cache"
        assert sw.headers["service-worker-allowed"] == "/"
        assert c.get("/static/js/app.js").headers["cache-control"] == "no-cache"
        assert "etag" in c.get("/static/js/app.js").headers
        assert c.get("/static/icons/icon-192.png").headers["cache-control"].startswith("public")
        m = c.get("/manifest.webmanifest")
        assert m.headers["content-type"].startswith("application/manifest+json")


def test_health() -> None:
    with client() as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/readyz").json() == {"status": "ok", "checks": {"static": "ok"}}


def test_hsts_only_over_https() -> None:
    app = create_app(WebSettings(web_proxy=False))
    with TestClient(app, base_url="https://avisos.example") as c:
        assert c.get("/").headers["strict-transport-security"].startswith("max-age=")
    with client() as c:
        assert "strict-transport-security" not in c.get("/").headers
