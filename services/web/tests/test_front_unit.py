"""Fast checks of the web front's pure parts: proxy routing rules, the cookie-free proxy
client, the icons, and that the service worker precaches every module of the app."""

from __future__ import annotations

import re

import httpx
import pytest

from avisos_web.icons import ICONS, draw, png_bytes
from avisos_web.proxy import ApiProxy, api_target
from avisos_web.settings import STATIC_DIR


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("/api/v1/me", "/v1/me"),
        ("/api/v1/notifications/abc/read", "/v1/notifications/abc/read"),
        ("/api/healthz", "/healthz"),
        ("/api/internal/v1/x", None),
        ("/api/%69nternal/v1/x", None),
        ("/api/v1/../internal/v1/x", None),
        ("/api//internal/v1/x", None),
        ("/api/./internal", None),
        ("/apix/v1/me", None),
        ("/static/x.js", None),
    ],
)
def test_api_target(path: str, target: str | None) -> None:
    assert api_target(path) == target


async def test_proxy_client_keeps_no_cookies() -> None:
    """A shared cookie jar would hand one browser's session to every other browser."""
    proxy = ApiProxy("http://127.0.0.1:9", 1.0, 1024)
    try:
        req = httpx.Request("POST", "http://127.0.0.1:9/v1/auth/login")
        resp = httpx.Response(
            200, headers=[("set-cookie", "avisos_session=s; Path=/; HttpOnly")], request=req
        )
        proxy.client.cookies.extract_cookies(resp)
        assert list(proxy.client.cookies.jar) == []
    finally:
        await proxy.close()


def test_png_writer_and_icons_on_disk() -> None:
    png = png_bytes(8, 8, draw(8, maskable=True))
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and png.endswith(b"IEND\xaeB`\x82")
    for name, (size, _) in ICONS.items():
        data = (STATIC_DIR / "icons" / name).read_bytes()
        assert int.from_bytes(data[16:20], "big") == size, name


def test_service_worker_precaches_every_module() -> None:
    sw = (STATIC_DIR / "sw.js").read_text()
    listed = set(re.findall(r'"(/static/[^"]+)"', sw))
    modules = {
        "/static/" + str(p.relative_to(STATIC_DIR)) for p in (STATIC_DIR / "js").rglob("*.js")
    }
    assert modules <= listed, f"add to SHELL in sw.js: {sorted(modules - listed)}"
    assert "/static/css/app.css" in listed


def test_no_inline_script_or_style_in_the_page() -> None:
    html = (STATIC_DIR / "index.html").read_text()
    assert re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html) is None
    assert " style=" not in html and "<style" not in html
    for js in (STATIC_DIR / "js").rglob("*.js"):
        text = js.read_text()
        assert "innerHTML" not in text, js  # DOM is built with textContent only
        assert 'setAttribute("style"' not in text and "eval(" not in text, js


def _dicts() -> dict[str, set[str]]:
    text = (STATIC_DIR / "js" / "i18n.js").read_text()
    out = {}
    for name in ("es", "en"):
        body = text.split(f"const {name} = {{", 1)[1].split("\n};", 1)[0]
        out[name] = set(re.findall(r'^\s+"([\w.]+)":', body, re.M))
    return out


def test_spanish_and_english_have_the_same_strings() -> None:
    d = _dicts()
    assert d["es"] - d["en"] == set(), "missing in English"
    assert d["en"] - d["es"] == set(), "missing in Spanish"


def test_every_literal_key_used_exists() -> None:
    keys = _dicts()["es"]
    used: set[str] = set()
    for js in (STATIC_DIR / "js").rglob("*.js"):
        if js.name == "i18n.js":
            continue
        text = js.read_text()
        used |= set(re.findall(r'\bt\("([\w.]+)"', text))
        used |= set(re.findall(r'data-i18n(?:-label)?="([\w.]+)"', text))
    html = (STATIC_DIR / "index.html").read_text()
    used |= set(re.findall(r'data-i18n(?:-label)?="([\w.]+)"', html))
    assert used - keys == set()


def test_gateway_status_helpers() -> None:
    from avisos_web.system import gateway_http_url, parse_gateway_metrics

    assert gateway_http_url("ws://127.0.0.1:8090") == "http://127.0.0.1:8090"
    assert gateway_http_url("wss://gw.example/ws") == "https://gw.example"
    text = (
        "# HELP avisos_gateway_users Users\n# TYPE avisos_gateway_users gauge\n"
        "avisos_gateway_users 3.0\navisos_gateway_connections 5.0\n"
        'avisos_gateway_handshakes_total{result="ok"} 9.0\n'
    )
    assert parse_gateway_metrics(text) == {"users": 3.0, "connections": 5.0}
