"""The wire protocol between the gateway and browsers (docs/realtime-protocol.md).

Every frame is a UTF-8 JSON text frame ``{"v": 1, "type": ..., ...}``. Frames are
encoded once per bus message and written to every connection of the user as bytes.

Close codes are split so that a client can decide without a table of special cases:
1001/1011/1012/1013 and 4000-4499 mean "reconnect (with backoff) and resume";
4500-4999 and the protocol-error codes (1002, 1003, 1007, 1008, 1009, 1010) mean
"do not reconnect" until the user does something (log in again, reload).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from avisos_common.messages import (
    NotificationContent,
    NotificationPayload,
    ReadStateChanged,
    Recipient,
    ReportStatusChanged,
    UnreadCount,
)

PROTOCOL_VERSION = 1

# --- close codes: reconnect ------------------------------------------------------------
CLOSE_GOING_AWAY = 1001  # instance draining (deploy, scale-in): reconnect elsewhere
CLOSE_INTERNAL_ERROR = 1011
CLOSE_IDLE_TIMEOUT = 4000  # nothing received for idle_timeout_secs
CLOSE_SLOW_CONSUMER = 4001  # send buffer over its limit
CLOSE_RATE_LIMITED = 4029  # too many client messages; reconnect after backoff
# --- close codes: do not reconnect -----------------------------------------------------
CLOSE_SESSION_REVOKED = 4500  # logout of this session
CLOSE_USER_REVOKED = 4501  # all sessions revoked or user deactivated
CLOSE_UNSUPPORTED_VERSION = 4502  # client speaks a protocol version we do not
CLOSE_POLICY = 4503  # binary frames or other misuse

RECONNECT_CODES = frozenset({1001, 1006, 1011, 1012, 1013})


def should_reconnect(code: int) -> bool:
    """The client-side rule, kept here so tests and the JS client agree."""
    return code in RECONNECT_CODES or 4000 <= code < 4500 or code == 1000


def encode(frame: Mapping[str, Any]) -> bytes:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False).encode()


def unread_dict(unread: UnreadCount) -> dict[str, Any]:
    return {"total": unread.total, "by_priority": dict(unread.by_priority)}


def notification_dict(payload: NotificationPayload) -> dict[str, Any]:
    """The notification as the recipient sees it (the recipient id is implied)."""
    return payload.model_dump(mode="json", exclude={"recipient_id"})


_NOTIFICATION_HEAD = b'{"v":1,"type":"notification","cursor":'
_UPDATED_HEAD = b'{"v":1,"type":"notification_updated","cursor":'


def notification_frame(
    payload: NotificationPayload,
    *,
    updated: bool,
    unread: UnreadCount | None = None,
    replayed: bool = False,
) -> bytes:
    """``{"v":1,"type":"notification","cursor":seq,"notification":{...},"unread":{...}}``.

    Assembled from pydantic's (compiled) JSON serialisation: this runs for every
    notification pushed, so it avoids building and re-encoding dictionaries."""
    parts = [
        _UPDATED_HEAD if updated else _NOTIFICATION_HEAD,
        str(payload.seq).encode(),
        b',"notification":',
        payload.model_dump_json(exclude=_EXCLUDE_RECIPIENT).encode(),
    ]
    if unread is not None:
        parts += [b',"unread":', unread.model_dump_json().encode()]
    if replayed:
        parts.append(b',"replayed":true')
    parts.append(b"}")
    return b"".join(parts)


_EXCLUDE_RECIPIENT = {"recipient_id"}


class SharedNotificationFrames:
    """The ``notification`` frames of one notification sent to many users.

    The shared content is encoded once; :meth:`frame` splices in what differs per
    recipient (id, seq, unread count). The result parses to exactly what
    :func:`notification_frame` gives for that recipient's payload, at a fraction of the
    cost: a fan-out to thousands of users encodes the subject and data once, not once per
    user."""

    def __init__(self, content: NotificationContent) -> None:
        encoded = content.model_dump_json().encode()
        # '{"type":...}' -> '"type":...}': the object's fields after ours, and its brace.
        self._tail = encoded[1:]
        # Many recipients share an unread count (a role's staff mostly do): encode each
        # distinct one once.
        self._unread: dict[tuple[int, tuple[tuple[str, int], ...]], bytes] = {}

    def frame(self, recipient: Recipient) -> bytes:
        unread = recipient.unread
        key = (unread.total, tuple(unread.by_priority.items()))
        unread_json = self._unread.get(key)
        if unread_json is None:
            unread_json = self._unread[key] = unread.model_dump_json().encode()
        seq = str(recipient.seq).encode()
        return b"".join(
            (
                _NOTIFICATION_HEAD,
                seq,
                b',"notification":{"id":"',
                str(recipient.notification_id).encode(),
                b'","seq":',
                seq,
                b",",
                self._tail,
                b',"unread":',
                unread_json,
                b"}",
            )
        )


def unread_frame(unread: UnreadCount, ref: Any = None) -> bytes:
    frame: dict[str, Any] = {"v": PROTOCOL_VERSION, "type": "unread_count", **unread_dict(unread)}
    if ref is not None:
        frame["ref"] = ref
    return encode(frame)


def read_confirmation_frame(msg: ReadStateChanged) -> bytes:
    return encode(
        {
            "v": PROTOCOL_VERSION,
            "type": "notification_read_confirmation",
            "ids": [str(i) for i in msg.notification_ids],
            "all": msg.all,
            "read": msg.read,
            "unread": unread_dict(msg.unread),
        }
    )


def report_status_frame(msg: ReportStatusChanged) -> bytes:
    return encode(
        {
            "v": PROTOCOL_VERSION,
            "type": "report_status",
            "job_id": str(msg.job_id),
            "status": msg.status,
            "progress": msg.progress,
            "error": msg.error,
        }
    )


PING_FRAME = encode({"v": PROTOCOL_VERSION, "type": "ping"})


def error_frame(code: str, detail: str, ref: Any = None) -> bytes:
    frame: dict[str, Any] = {"v": PROTOCOL_VERSION, "type": "error", "code": code, "detail": detail}
    if ref is not None:
        frame["ref"] = ref
    return encode(frame)


class ClientMessageError(ValueError):
    """A client frame the gateway cannot act on; ``code`` goes back in an error frame."""

    def __init__(self, code: str, detail: str, ref: Any = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.ref = ref


MAX_MARK_READ_IDS = 500
MAX_REF_LENGTH = 64


@dataclass(frozen=True, slots=True)
class ClientMessage:
    """A parsed client frame: ``type`` plus what that type carries."""

    type: str
    ref: str | int | None = None
    ids: tuple[uuid.UUID, ...] = ()
    all: bool = False


CLIENT_TYPES = frozenset({"pong", "mark_read", "get_unread_count"})


def parse_client_message(raw: str) -> ClientMessage:
    """Parse and validate one client frame; raise :class:`ClientMessageError`."""
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ClientMessageError("bad_json", "frame is not JSON") from exc
    if not isinstance(data, dict):
        raise ClientMessageError("bad_frame", "frame must be a JSON object")
    ref = data.get("ref")
    if ref is not None and not (
        (isinstance(ref, str) and len(ref) <= MAX_REF_LENGTH)
        or (isinstance(ref, int) and not isinstance(ref, bool))
    ):
        raise ClientMessageError("bad_ref", "ref must be a short string or an integer")
    version = data.get("v", PROTOCOL_VERSION)
    if version != PROTOCOL_VERSION:
        raise ClientMessageError("unsupported_version", f"protocol version {version!r}", ref)
    kind = data.get("type")
    if kind not in CLIENT_TYPES:
        raise ClientMessageError("unknown_type", f"unknown type {kind!r}", ref)
    if kind != "mark_read":
        return ClientMessage(type=kind, ref=ref)
    if data.get("all") is True:
        return ClientMessage(type=kind, ref=ref, all=True)
    ids = data.get("ids")
    if not isinstance(ids, list) or not ids or len(ids) > MAX_MARK_READ_IDS:
        raise ClientMessageError(
            "bad_ids", f"mark_read needs 'all': true or 1..{MAX_MARK_READ_IDS} ids", ref
        )
    try:
        parsed = tuple(uuid.UUID(str(i)) for i in ids)
    except ValueError as exc:
        raise ClientMessageError("bad_ids", "ids must be UUIDs", ref) from exc
    return ClientMessage(type=kind, ref=ref, ids=parsed)
