"""JSON logs with correlation ids.

Every record is one JSON object per line carrying ``service`` and, when known,
``request_id``, ``connection_id``, ``queue``, ``message_id`` and ``user_id``. The ids live in
context variables so that they follow a request through ``await`` points; use
:func:`bind` to set them for a block::

    with bind(request_id=rid, queue="avisos.dispatch.email.normal"):
        log.info("sent", extra={"notification_id": nid})

``X-Request-ID`` (HTTP) and the ``x-request-id`` AMQP header carry the request id between
services, so a notification can be followed from the event to the socket and the email.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import sys
import uuid
from collections.abc import Iterator
from typing import Any

REQUEST_ID_HEADER = "X-Request-ID"
AMQP_REQUEST_ID_HEADER = "x-request-id"

_CONTEXT_FIELDS = ("request_id", "connection_id", "queue", "message_id", "user_id")
_context: dict[str, contextvars.ContextVar[str | None]] = {
    name: contextvars.ContextVar(name, default=None) for name in _CONTEXT_FIELDS
}

# Attributes every LogRecord has; anything else passed through ``extra`` is logged.
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def new_request_id() -> str:
    return uuid.uuid4().hex


def current(name: str) -> str | None:
    """The value bound for ``name`` in this context, if any."""
    return _context[name].get()


def current_request_id() -> str | None:
    return _context["request_id"].get()


@contextlib.contextmanager
def bind(**fields: str | None) -> Iterator[None]:
    """Bind correlation fields for the duration of the block (async-safe)."""
    tokens = []
    for name, value in fields.items():
        if name not in _context:
            raise KeyError(f"unknown log context field {name!r}")
        tokens.append((_context[name], _context[name].set(value)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def set_context(**fields: str | None) -> None:
    """Set correlation fields for the rest of the current task (no reset)."""
    for name, value in fields.items():
        _context[name].set(value)


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in _CONTEXT_FIELDS:
            value = _context[name].get()
            if value is not None:
                out[name] = value
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send every logger's records to stderr as JSON lines. Idempotent."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiormq", "aio_pika", "websockets.server", "httpx", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # uvicorn installs its own handlers; route them through ours.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
