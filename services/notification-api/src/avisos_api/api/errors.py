"""The edge where errors become RFC 9457 problem+json responses.

Domain errors (:mod:`avisos_api.exceptions`), request validation errors and Starlette's
HTTP errors all leave the API in one shape::

    {"type": "https://avisos.dev/problems/not-found", "title": "Not found", "status": 404,
     "detail": "notification not found", "instance": "/v1/notifications/…",
     "request_id": "…"}
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from avisos_api.exceptions import AvisosError, RateLimited
from avisos_common import logging as avisos_logging

log = logging.getLogger(__name__)

PROBLEM_BASE = "https://avisos.dev/problems/"
PROBLEM_CONTENT_TYPE = "application/problem+json"

_HTTP_SLUGS = {
    400: ("bad-request", "Bad request"),
    401: ("unauthenticated", "Authentication required"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    409: ("conflict", "Conflict"),
    413: ("too-large", "Request too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("invalid-input", "Invalid input"),
    429: ("rate-limited", "Too many requests"),
}


def problem(
    request: Request,
    status: int,
    slug: str,
    title: str,
    detail: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail or title,
        "instance": request.url.path,
    }
    rid = avisos_logging.current_request_id()
    if rid:
        body["request_id"] = rid
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_CONTENT_TYPE, headers=headers)


async def _domain(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AvisosError)
    headers = None
    if isinstance(exc, RateLimited):
        headers = {"Retry-After": str(exc.retry_after_secs)}
    return problem(request, exc.status, exc.slug, exc.title, exc.detail, headers)


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "loc": list(e.get("loc", ())),
            "msg": e.get("msg", ""),
            "type": e.get("type", ""),
        }
        for e in exc.errors()
    ]
    first = errors[0] if errors else {"loc": [], "msg": "invalid"}
    where = ".".join(str(p) for p in first["loc"] if p != "body")
    detail = f"{where}: {first['msg']}" if where else str(first["msg"])
    return problem(request, 422, "invalid-input", "Invalid input", detail, errors=errors)


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    slug, title = _HTTP_SLUGS.get(exc.status_code, ("error", "Error"))
    detail = exc.detail if isinstance(exc.detail, str) else title
    return problem(request, exc.status_code, slug, title, detail, dict(exc.headers or {}))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", extra={"path": request.url.path})
    return problem(request, 500, "internal", "Internal error", "something went wrong; see the logs")


def install(app: FastAPI) -> None:
    app.add_exception_handler(AvisosError, _domain)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _unexpected)
